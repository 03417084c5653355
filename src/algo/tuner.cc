#include "src/algo/tuner.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <sstream>

#include "src/algo/registry.h"
#include "src/core/errors.h"

namespace lockstep {

namespace {

// Fitted on the 2-vCPU development VM from perf/tuner_check.sh (8 B - 256 MiB, 2 and 4 ranks over
// shm; docs/design-notes.md): the share of the model's bandwidth that these schedules reach.
// Rabenseifner's rounds are phases (a round starts when the previous one is complete), so
// transfers and reductions of different rounds never overlap; a double tree whose lanes had to
// be merged couples its two trees.
constexpr double kHalvingEfficiency = 0.5;
constexpr double kMergedTreeEfficiency = 0.6;

// secondTree() removes every link the two trees share for n >= 7 and for n = 4 (the unit tests
// check it); for the other small n some lanes are merged.
bool treeLanesShareLinks(int n) { return n == 2 || n == 3 || n == 5 || n == 6; }

}  // namespace

LinkCost defaultLinkCost(const std::string& transport) {
  // Fitted on the 2-vCPU development VM (perf/tuner_check.sh): alpha is the cost of one
  // dependent step of a schedule (wake-up, slot hand-over), not just the wire latency; gbps is
  // what one rank's sends move (a copy into and out of the FIFO); the reduction runs at
  // reduceGBps.
  // shm: refitted after the reduction rate reached the model (perf/tuner_check.sh, 2 and 4 ranks,
  // docs/design-notes.md). A spinning peer takes a hand-over in well under a microsecond, so at 2
  // ranks what separates the algorithms is mostly bytes moved and reduced.
  // socket: 2 GB/s until the transport set reno on loopback (src/net/socket.cc), which made the
  // bare loopback exchange 1.6x faster (3.3 -> 5.3 GB/s, perf/tcp_ceiling); scaled by as much, so
  // that 2 MiB on 2 ranks comes within the measured tuner's trials, where the one-shot beat the
  // ring (paired, 26 runs: 0.92x the time).
  if (transport == "socket") return LinkCost{8.0, 3.2, 1.0, 17.6};
  return LinkCost{0.05, 16.0, 0.1, 10.0};  // shm, inproc
}

LinkCost slowerOf(const LinkCost& a, const LinkCost& b) {
  return LinkCost{std::max(a.alphaUs, b.alphaUs), std::min(a.gbps, b.gbps), std::max(a.gapUs, b.gapUs),
                  std::min(a.reduceGBps, b.reduceGBps), std::max(a.sliceBytes, b.sliceBytes)};
}

namespace {

std::string collectiveNames() {
  std::string out;
  for (int k = 0; k < kOpKinds; ++k) out += std::string(k ? ", " : "") + opKindName(static_cast<OpKind>(k));
  return out;
}

}  // namespace

TunerSettings parseTunerSettings(const std::string& algo, bool deterministic) {
  TunerSettings s;
  s.deterministic = deterministic;
  std::stringstream ss(algo);
  bool named = false;
  // A "<collective>=" item's choice wins over a bare name's, whatever their order; two of either
  // kind that name different algorithms for one collective contradict each other ("ring,tree"
  // used to run the tree for all-reduce, the last one named, silently).
  std::optional<Algorithm> byKind[kOpKinds], bare[kOpKinds];
  std::string clash[kOpKinds];  // "ring and tree": two bare names for a collective (refused unless it has its own item)
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) continue;
    named = true;
    std::string kindName, name = item;
    const size_t eq = item.find('=');
    const bool perKind = eq != std::string::npos;
    if (perKind) {
      kindName = item.substr(0, eq);
      name = item.substr(eq + 1);
    }
    Algorithm a;
    if (!parseAlgorithm(name, &a)) {
      throw InvalidArgument("LOCKSTEP_ALGO names unknown algorithm \"" + name +
                            "\" (known: ring, tree, recursive_doubling (or rd), rabenseifner, direct, chain, ordered)");
    }
    bool matched = false;
    for (int k = 0; k < kOpKinds; ++k) {
      auto kind = static_cast<OpKind>(k);
      if (perKind) {
        if (kindName != opKindName(kind)) continue;
        if (!implements(a, kind)) {
          throw InvalidArgument(std::string("LOCKSTEP_ALGO: ") + name + " does not implement " + kindName);
        }
        if (byKind[k] && *byKind[k] != a) {
          throw InvalidArgument("LOCKSTEP_ALGO=\"" + algo + "\" forces " + kindName +
                                " twice, to different algorithms");
        }
        byKind[k] = a;
        matched = true;
      } else if (implements(a, kind)) {
        if (bare[k] && *bare[k] != a && clash[k].empty()) {
          clash[k] = std::string(algorithmName(*bare[k])) + " and " + algorithmName(a);
        }
        bare[k] = a;
        matched = true;
      }
    }
    if (!matched) {
      throw InvalidArgument("LOCKSTEP_ALGO names unknown collective \"" + kindName + "\" in \"" + item +
                            "\" (known: " + collectiveNames() + ")");
    }
  }
  if (!named && !algo.empty()) throw InvalidArgument("LOCKSTEP_ALGO=\"" + algo + "\" names no algorithm");
  // A clash matters only where no item of the collective's own settles it (helper-85: refused at
  // once, "tree,chain,broadcast=chain,reduce=chain" was refused with advice it already followed).
  std::string clashes, items;
  for (int k = 0; k < kOpKinds; ++k) {
    if (clash[k].empty() || byKind[k]) continue;
    const std::string kind = opKindName(static_cast<OpKind>(k));
    clashes += (clashes.empty() ? "" : "; ") + clash[k] + " for " + kind;
    items += (items.empty() ? "" : ",") + kind + "=<name>";
  }
  if (!clashes.empty()) {
    throw InvalidArgument("LOCKSTEP_ALGO=\"" + algo + "\" names two algorithms for one collective (" + clashes +
                          "): add " + items + ", or name one of them only");
  }
  for (int k = 0; k < kOpKinds; ++k) s.forced[k] = byKind[k] ? byKind[k] : bare[k];
  return s;
}

double predictUs(Algorithm a, OpKind kind, int n, size_t bytes, const LinkCost& link) {
  const double N = n, B = static_cast<double>(bytes), alpha = link.alphaUs, beta = 1.0 / (link.gbps * 1000.0),
               gamma = 1.0 / (link.reduceGBps * 1000.0);
  if (n == 1) return alpha * 0.1 + B * beta * 0.5;  // a local copy
  int p = 1, lp = 0;
  while (p * 2 <= n) p *= 2, ++lp;
  const double fold = p == n ? 0.0 : 1.0;
  const double L = lp + (p == n ? 0 : 1);  // ceil(log2(n)), exactly (std::log2 rounds with the mode)
  // Pipeline fill: what the first slice pays crossing `hops` forwarding ranks before the last
  // one's pipeline is full: at each hop but the last, `perHop` slices sent (a tree node serves
  // two children in turn), and at `reducedHops` of them the slice is reduced. `piece` is what one
  // slice can be at most (a tree's half). The simulator runs the same (helper-79 compared them:
  // a chain exactly, a tree within ~15 %, but helper-100 found the tree priced up to 2.2x too
  // high at 4 ranks, 1.75x at 8 and 1.5x at 16 where one slice holds its half buffer, and 1.2-1.5x
  // too low at 2, 3, 5 and 6 ranks: within 2 % from 7 ranks up otherwise, and measured tuning
  // settles blocking calls on this machine).
  auto fill = [&](double hops, double piece, double perHop, double reducedHops) {
    const double slice = link.sliceBytes > 0 ? std::min(link.sliceBytes, piece) : 0.0;
    return std::max(hops - 1, 0.0) * perHop * slice * beta + reducedHops * slice * gamma;
  };
  const double children = n > 3 ? 2.0 : 1.0;  // a tree's interior nodes, as heapTreeNode builds them
  switch (kind) {
    case OpKind::kAllReduce:
    case OpKind::kBarrier:
      switch (a) {
        // Steps x alpha + bytes a rank sends x beta + bytes it reduces x gamma.
        case Algorithm::kRing:
          return 2 * (N - 1) * alpha + (2 * (N - 1) / N * beta + (N - 1) / N * gamma) * B;
        case Algorithm::kTree: {
          // A rank is interior in one tree (half up, a half to each child) and a leaf in the other.
          const double sent = n > 4 ? 2.0 : n > 2 ? 1.5 : 1.0;
          // Up the heap (reducing) and down it: 2 x floor(log2 n) hops, a half buffer per tree.
          const double us = 2 * L * alpha + (sent * beta + gamma) * B + fill(2 * lp, B / 2, children, lp);
          return treeLanesShareLinks(n) ? us / kMergedTreeEfficiency : us;
        }
        case Algorithm::kRecursiveDoubling:
          return (lp + 2 * fold) * (alpha + B * beta + B * gamma);
        case Algorithm::kRabenseifner: {
          const double us =
              (2 * lp + 2 * fold) * alpha + ((2 * (p - 1.0) / p + 2 * fold) * beta + (p - 1.0) / p * gamma) * B;
          return p >= 4 ? us / kHalvingEfficiency : us;
        }
        case Algorithm::kDirect:
          return alpha + (N - 1) * (link.gapUs + B * beta + B * gamma);
        case Algorithm::kOrdered:
          return N * alpha + (N - 1) * link.gapUs + (2 * (N - 1) / N * beta + (N - 1) / N * gamma) * B;
        default:
          break;
      }
      break;
    case OpKind::kReduceScatter:
    case OpKind::kAllGather:
      return (a == Algorithm::kOrdered ? alpha : (N - 1) * alpha) + (N - 1) / N * B * beta;
    case OpKind::kBroadcast:
    case OpKind::kReduce:
      if (a == Algorithm::kChain) {
        return (N - 1) * alpha + B * beta + fill(N - 1, B, 1, kind == OpKind::kReduce ? N - 2 : 0);
      }
      if (a == Algorithm::kTree) {
        return L * alpha + 2 * B * beta + fill(lp, B, children, kind == OpKind::kReduce ? lp - 1 : 0);
      }
      if (a == Algorithm::kOrdered) return alpha + (N - 1) * B * beta;
      break;
    case OpKind::kAllToAll:
    case OpKind::kSend:
    case OpKind::kRecv:
      return alpha + (N - 1) / N * B * beta;
    case OpKind::kSplit:
      break;
  }
  return std::numeric_limits<double>::infinity();
}

namespace {

// The rank-ordered counterpart of a reduction algorithm (deterministic mode). The small-message
// ones map to the one-shot within its rank limit: past it, each rank would send N-1 whole copies
// that nobody asked for.
Algorithm ordered(Algorithm a, OpKind kind, int n) {
  if (kind == OpKind::kAllReduce || kind == OpKind::kBarrier) {
    const bool small = a == Algorithm::kDirect || a == Algorithm::kRecursiveDoubling;
    return small && n <= maxRanks(Algorithm::kDirect, kind) ? Algorithm::kDirect : Algorithm::kOrdered;
  }
  if (kind == OpKind::kReduceScatter || kind == OpKind::kReduce) return Algorithm::kOrdered;
  return a;  // nothing to reduce: any algorithm is deterministic
}

}  // namespace

Algorithm chooseAlgorithm(OpKind kind, int n, size_t bytes, const LinkCost& link, const TunerSettings& s) {
  const auto& forced = s.forced[static_cast<int>(kind)];
  if (forced) return s.deterministic ? ordered(*forced, kind, n) : *forced;
  Algorithm best = Algorithm::kRing;
  double bestUs = std::numeric_limits<double>::infinity();
  for (int i = 0; i < static_cast<int>(Algorithm::kCount); ++i) {
    auto a = static_cast<Algorithm>(i);
    if (!implements(a, kind) || n > maxRanks(a, kind)) continue;
    if (s.deterministic && ordered(a, kind, n) != a) continue;
    // Rank-ordered algorithms are only worth their extra cost when asked for.
    if (!s.deterministic && a == Algorithm::kOrdered) continue;
    double us = predictUs(a, kind, n, bytes, link);
    if (us < bestUs) best = a, bestUs = us;
  }
  return best;
}

}  // namespace lockstep
