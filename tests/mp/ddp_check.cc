// A rank program for the DDP tests: drives lockstep::ddp::GradientSync with known gradients and
// checks every result against the exact average, in real processes under lockstep-run.
//
//   lockstep-run -n N ddp_check
//
// Checks: averages with buckets completed in a different order on every rank; parameters unused
// on one rank or on all (zero contribution, one warning each, no hang; with findUnusedParameters,
// those no rank used keep their gradients); re-bucketing to rank 0's
// observed order; noSync accumulation; bf16/fp16 compression and native bf16 gradients; ZeRO-1
// shards and the parameter all-gather; broadcastParameters; and the errors for bad use, including
// ranks that registered different parameters; the program's own collectives between markReady
// and finish. Results must also be bit-identical on every rank.
// Prints "ddp_check: all N checks passed" or each failure, exiting 1.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "lockstep/ddp.hpp"

using lockstep::Exception;
using namespace lockstep::ddp;

namespace {

int rank = 0, nranks = 1;
size_t checks = 0, failures = 0;

void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "ddp_check rank %d: FAILED: %s\n", rank, what.c_str());
  }
}

void expectError(lockstepResult_t code, const std::string& phrase, const std::function<void()>& fn,
                 const std::string& what) {
  try {
    fn();
    expect(false, what + ": no error (expected '" + phrase + "')");
  } catch (const Exception& e) {
    expect(e.code() == code && std::string(e.what()).find(phrase) != std::string::npos,
           what + ": got [" + lockstepGetErrorString(e.code()) + "] " + e.what());
  }
}

// Every rank holds the same bits: max(h) == ~max(~h) exactly when all hashes are equal.
bool sameOnAllRanks(lockstep::Comm& comm, const void* data, size_t bytes) {
  uint64_t h = 1469598103934665603ull;
  const auto* c = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ c[i]) * 1099511628211ull;
  uint64_t both[2] = {h, ~h};
  comm.allReduce(both, both, 2, lockstepUint64, lockstep::Op::kMax);
  return both[0] == ~both[1];
}

// A gradient element as rank r computes it in iteration `it`: small multiples of 1/8, exact in
// every format used here.
double gradValue(int r, size_t p, size_t i, size_t it) {
  return (r + 1) * static_cast<double>(i % 5 + 1) * 0.125 - static_cast<double>(p % 3) + static_cast<double>(it % 2);
}

struct Model {
  std::vector<size_t> counts;
  std::vector<lockstepDataType_t> types;
  std::vector<std::vector<unsigned char>> data, grad;
  std::vector<std::string> names;

  void add(const std::string& name, size_t count, lockstepDataType_t t) {
    names.push_back(name);
    counts.push_back(count);
    types.push_back(t);
    data.emplace_back(count * elementSize(t), 0);
    grad.emplace_back(count * elementSize(t), 0);
  }
  void registerAll(GradientSync& sync) {
    for (size_t p = 0; p < counts.size(); ++p) {
      sync.registerParameter(names[p], data[p].data(), grad[p].data(), counts[p], types[p]);
    }
  }
  double get(const std::vector<unsigned char>& buf, size_t p, size_t i) const {
    switch (types[p]) {
      case lockstepFloat32:
        return reinterpret_cast<const float*>(buf.data())[i];
      case lockstepFloat64:
        return reinterpret_cast<const double*>(buf.data())[i];
      default:
        return fromNarrow(reinterpret_cast<const uint16_t*>(buf.data())[i], types[p]);
    }
  }
  void set(std::vector<unsigned char>& buf, size_t p, size_t i, double v) {
    switch (types[p]) {
      case lockstepFloat32:
        reinterpret_cast<float*>(buf.data())[i] = static_cast<float>(v);
        break;
      case lockstepFloat64:
        reinterpret_cast<double*>(buf.data())[i] = v;
        break;
      default:
        reinterpret_cast<uint16_t*>(buf.data())[i] = toNarrow(static_cast<float>(v), types[p]);
    }
  }
  bool gradsSame(lockstep::Comm& comm) const {
    bool ok = true;
    for (const auto& g : grad) ok = sameOnAllRanks(comm, g.data(), g.size()) && ok;
    return ok;
  }
};

Model mixedModel() {
  Model m;
  m.add("embed", 1000, lockstepFloat32);
  m.add("scale", 1, lockstepFloat32);
  m.add("unused_on_rank1", 300, lockstepFloat32);
  m.add("empty", 0, lockstepFloat32);
  m.add("big", 2500, lockstepFloat32);
  m.add("head.bias", 17, lockstepFloat32);
  m.add("double", 333, lockstepFloat64);
  m.add("native_bf16", 100, lockstepBfloat16);
  m.add("head.weight", 64, lockstepFloat32);
  return m;
}

// The order rank r marks parameters ready: a rotation by r, reversed on odd ranks.
std::vector<size_t> readyOrder(int r, size_t n) {
  std::vector<size_t> order;
  for (size_t k = 0; k < n; ++k) order.push_back((k + static_cast<size_t>(r) * 3) % n);
  if (r % 2) std::reverse(order.begin(), order.end());
  return order;
}

// Averages, out-of-order readiness, unused parameters, re-bucketing, launch statistics.
void checkAveraging(lockstep::Comm& comm, Compression compression, double tolerance) {
  const std::string tag = std::string("averaging (") + compressionName(compression) + ")";
  Model m = mixedModel();
  const size_t n = m.counts.size(), unusedOnRank1 = 2, unusedIn2 = 5;
  std::vector<std::string> warnings;
  Options o;
  o.bucketBytes = 2048;
  o.compression = compression;
  o.warn = [&](const std::string& w) { warnings.push_back(w); };
  GradientSync sync(comm, o);
  m.registerAll(sync);
  for (size_t it = 0; it < 4; ++it) {
    for (size_t p = 0; p < n; ++p) {
      for (size_t i = 0; i < m.counts[p]; ++i) m.set(m.grad[p], p, i, gradValue(rank, p, i, it));
    }
    const std::vector<size_t> order = readyOrder(rank, n);
    for (size_t p : order) {
      if ((rank == 1 && p == unusedOnRank1) || (it == 2 && p == unusedIn2)) continue;
      // By pointer, except the empty parameter, which has no memory to name it by: by index in
      // even iterations, and not at all in odd ones (it has nothing to wait for).
      if (m.counts[p] > 0) {
        sync.markReady(static_cast<const void*>(m.data[p].data()));
      } else if (it % 2 == 0) {
        sync.markReady(p);
      }
    }
    sync.finish();
    for (size_t p = 0; p < n; ++p) {
      double worst = 0, scale = 0;
      for (size_t i = 0; i < m.counts[p]; ++i) {
        double sum = 0;
        for (int r = 0; r < nranks; ++r) {
          if ((r == 1 && p == unusedOnRank1) || (it == 2 && p == unusedIn2)) continue;
          sum += gradValue(r, p, i, it);
        }
        const double want = sum / nranks;
        worst = std::max(worst, std::fabs(m.get(m.grad[p], p, i) - want));
        scale = std::max(scale, std::fabs(want));
      }
      // float64 is never compressed; native bf16 is narrow whatever the compression.
      const double tol = m.types[p] == lockstepFloat64       ? 1e-12
                         : m.types[p] == lockstepBfloat16    ? 1.0 / 32
                         : compression != Compression::kNone ? tolerance
                                                             : 1e-6;
      expect(worst <= tol * std::max(scale, 1.0), tag + ": iteration " + std::to_string(it) + " parameter " +
                                                      m.names[p] + " off by " + std::to_string(worst));
    }
    expect(m.gradsSame(comm), tag + ": gradients differ between ranks in iteration " + std::to_string(it));
    const size_t unready = (rank == 1 ? 1 : 0) + (it == 2 ? 1 : 0);
    expect(sync.lastStats().unready == unready, tag + ": unready count " + std::to_string(sync.lastStats().unready));
    if (it == 0) {
      // Re-planned by rank 0's order (it marks everything but nothing in iteration 0 is unused
      // on rank 0), whatever this rank observed.
      expect(sync.rebucketed(), tag + ": not re-bucketed after the first iteration");
      std::vector<ParamShape> shapes;
      for (size_t p = 0; p < n; ++p) shapes.push_back({m.counts[p], m.types[p]});
      BucketPlan want = planBuckets(shapes, completeOrder(readyOrder(0, n), n), o.bucketBytes);
      expect(samePlan(want, sync.plan()), tag + ": plan after re-bucketing is not rank 0's order");
    }
    if (it == 1 && rank != 1) {
      // Every parameter with elements was marked before finish(), so every bucket started inside
      // markReady...
      expect(sync.lastStats().launchedEarly == sync.lastStats().buckets,
             tag + ": " + std::to_string(sync.lastStats().launchedEarly) + " of " +
                 std::to_string(sync.lastStats().buckets) + " buckets launched early");
    }
    if (it == 1 && rank == 1 && nranks > 1) {
      // ...except, on rank 1, the one holding its unused parameter and those after it.
      expect(sync.lastStats().launchedEarly < sync.lastStats().buckets, tag + ": rank 1 launched every bucket early");
    }
  }
  size_t mine = 0, shared = 0;
  for (const std::string& w : warnings) {
    mine += w.find("'unused_on_rank1'") != std::string::npos;
    shared += w.find("'head.bias'") != std::string::npos;
  }
  expect(mine == (rank == 1 ? 1u : 0u) && shared == 1 && warnings.size() == mine + shared,
         tag + ": " + std::to_string(warnings.size()) + " warnings (want one per unused parameter)");
}

void checkNoSync(lockstep::Comm& comm) {
  Model m;
  m.add("a", 50, lockstepFloat32);
  m.add("b", 7, lockstepFloat32);
  Options o;
  o.warn = [](const std::string&) {};  // the last iteration leaves "b" unready on purpose
  GradientSync sync(comm, o);
  m.registerAll(sync);
  auto* a = reinterpret_cast<float*>(m.grad[0].data());
  auto* b = reinterpret_cast<float*>(m.grad[1].data());
  for (int micro = 0; micro < 3; ++micro) {
    std::optional<GradientSync::NoSync> local;
    if (micro < 2) local.emplace(sync.noSync());
    for (size_t i = 0; i < 50; ++i) a[i] += static_cast<float>(rank + 1);
    for (size_t i = 0; i < 7; ++i) b[i] += static_cast<float>(i);
    sync.markReady(size_t{1});
    sync.markReady(size_t{0});
    if (micro < 2) {
      expect(a[0] == static_cast<float>((micro + 1) * (rank + 1)), "noSync: a gradient changed inside noSync");
      expectError(
          lockstepInvalidUsage, "inside a noSync", [&] { sync.finish(); }, "finish() inside noSync");
    }
  }
  sync.finish();
  double want = 0;
  for (int r = 0; r < nranks; ++r) want += 3.0 * (r + 1);
  want /= nranks;
  expect(std::fabs(a[0] - want) <= 1e-6 * want && std::fabs(b[6] - 18.0f) <= 1e-5,
         "noSync: accumulated average " + std::to_string(a[0]) + ", want " + std::to_string(want));
  sync.markReady(size_t{0});
  expectError(
      lockstepInvalidUsage, "noSync() after markReady", [&] { auto s = sync.noSync(); }, "noSync in mid-iteration");
  sync.finish();
}

// Ranks that accumulate different micro-batches before a finish() (the last rank one more, in a
// noSync() scope of its own): every rank fails that finish() with lockstepMismatch naming the
// ranks and noSync, before any average of unlike steps reaches a gradient. It was averaged
// silently, then timed out on a later step naming nothing. Ranks whose micro-batches mark
// different parameters (a mixture of experts: rank 0's go to experts a and b, the others' both
// to a) accumulate alike, and pass (a first version of the check failed them, helper-76).
void checkNoSyncDisagreement(lockstep::Comm& comm) {
  if (nranks < 2) return;
  const bool odd = rank == nranks - 1;
  const std::string last = std::to_string(nranks - 1);
  const std::string others = nranks == 2 ? "rank 0" : "ranks 0-" + std::to_string(nranks - 2);
  {
    std::vector<float> w(10), dw(10, 1.0f);
    GradientSync sync(comm);
    sync.registerParameter("w", w.data(), dw.data(), w.size());
    for (int k = 0; k < (odd ? 2 : 1); ++k) {  // the last rank accumulates one micro-batch more
      auto local = sync.noSync();
      sync.markReady(w.data());
    }
    sync.markReady(w.data());
    expectError(
        lockstepMismatch,
        "ranks accumulated different numbers of micro-batches since the last finish(): 1 noSync() scope(s) on " +
            others + ", 2 noSync() scope(s) on rank " + last,
        [&] { sync.finish(); }, "noSync disagreement");
    expect(dw[0] == 1.0f, "noSync disagreement: the gradient is left as it was");
  }
  Model m;
  m.add("a", 10, lockstepFloat32);
  m.add("b", 10, lockstepFloat32);
  GradientSync sync(comm);
  m.registerAll(sync);
  for (int k = 0; k < 2; ++k) {
    auto local = sync.noSync();
    sync.markReady(size_t{rank == 0 ? static_cast<size_t>(k) : 0});
  }
  sync.markReady(size_t{0});
  sync.markReady(size_t{1});
  bool ok = true;
  try {
    sync.finish();
  } catch (const Exception& e) {
    ok = false;
    expect(false, std::string("noSync with experts routed apart: ") + e.what());
  }
  if (ok) expect(true, "noSync with experts routed apart");
}

// A parameter used only in micro-batches inside noSync() (a branch the last micro-batch did not
// take: a mixture-of-experts layer, a conditional head) still contributes what it accumulated, as
// in PyTorch DDP, where a parameter used in any micro-batch of the window counts as used; it was
// once zeroed, and warned about once for the whole run, so later steps lost it silently. One
// used in no micro-batch counts as zero, with a warning. The memory ends with its window.
void checkNoSyncRemembersEarlierUse(lockstep::Comm& comm) {
  Model m;
  m.add("a", 10, lockstepFloat32);
  m.add("c", 5, lockstepFloat32);
  m.add("never", 3, lockstepFloat32);
  std::vector<std::string> warnings;
  Options o;
  o.warn = [&](const std::string& w) { warnings.push_back(w); };
  GradientSync sync(comm, o);
  m.registerAll(sync);
  auto* a = reinterpret_cast<float*>(m.grad[0].data());
  auto* c = reinterpret_cast<float*>(m.grad[1].data());
  auto* never = reinterpret_cast<float*>(m.grad[2].data());
  for (int step = 0; step < 2; ++step) {
    for (auto& g : m.grad) std::fill(g.begin(), g.end(), 0);
    for (int micro = 0; micro < 3; ++micro) {
      std::optional<GradientSync::NoSync> local;
      if (micro < 2) local.emplace(sync.noSync());
      for (size_t i = 0; i < 10; ++i) a[i] += 1.0f;
      sync.markReady(size_t{0});
      // "c": only in micro-batch 0 of the first step, only on even ranks.
      if (step == 0 && micro == 0 && rank % 2 == 0) {
        for (size_t i = 0; i < 5; ++i) c[i] += static_cast<float>(rank + 1);
        sync.markReady(size_t{1});
      }
    }
    sync.finish();
    double want = 0;
    for (int r = 0; step == 0 && r < nranks; r += 2) want += r + 1;
    want /= nranks;
    expect(a[0] == 3.0f && std::fabs(c[4] - want) <= 1e-6 * std::max(1.0, want) && never[0] == 0.0f,
           "noSync: step " + std::to_string(step) + ": a " + std::to_string(a[0]) + " (want 3), c " +
               std::to_string(c[4]) + " (want " + std::to_string(want) + "), never " + std::to_string(never[0]));
  }
  size_t aboutC = 0, aboutNever = 0;
  for (const std::string& w : warnings) {
    aboutC += w.find("'c'") != std::string::npos;
    aboutNever += w.find("'never'") != std::string::npos;
  }
  expect(aboutC == 1 && aboutNever == 1 && warnings.size() == 2,
         "noSync: " + std::to_string(warnings.size()) +
             " warnings (want one for 'c', in the step where this rank "
             "used it in no micro-batch, and one for 'never')");
}

void checkZero1(lockstep::Comm& comm, Compression compression) {
  const std::string tag = std::string("zero1 (") + compressionName(compression) + ")";
  Model m;
  for (size_t p = 0; p < 6; ++p) m.add("p" + std::to_string(p), 37 + 91 * p, lockstepFloat32);
  Options o;
  o.bucketBytes = 1024;
  o.zero1 = true;
  o.compression = compression;
  GradientSync sync(comm, o);
  m.registerAll(sync);
  size_t total = 0;
  for (size_t c : m.counts) total += c;
  for (size_t it = 0; it < 3; ++it) {
    for (size_t p = 0; p < m.counts.size(); ++p) {
      for (size_t i = 0; i < m.counts[p]; ++i) m.set(m.grad[p], p, i, gradValue(rank, p, i, it));
    }
    for (size_t p = m.counts.size(); p-- > 0;) sync.markReady(p);
    sync.finish();
    double worst = 0;
    for (const ShardPiece& s : sync.shard()) {
      for (size_t i = s.paramOffset; i < s.paramOffset + s.count; ++i) {
        double want = 0;
        for (int r = 0; r < nranks; ++r) want += gradValue(r, s.param, i, it);
        worst = std::max(worst, std::fabs(m.get(m.grad[s.param], s.param, i) - want / nranks));
      }
    }
    expect(worst <= (compression == Compression::kNone ? 1e-5 : 0.05),
           tag + ": shard gradient off by " + std::to_string(worst));
    // Each rank "updates" its shard to a known value; the all-gather must give everyone all of it.
    for (const ShardPiece& s : sync.shard()) {
      for (size_t i = s.paramOffset; i < s.paramOffset + s.count; ++i) {
        m.set(m.data[s.param], s.param, i, static_cast<double>(s.param * 1000 + i + it));
      }
    }
    sync.allGatherParameters();
    size_t wrong = 0;
    for (size_t p = 0; p < m.counts.size(); ++p) {
      for (size_t i = 0; i < m.counts[p]; ++i)
        wrong += m.get(m.data[p], p, i) != static_cast<double>(p * 1000 + i + it);
    }
    expect(wrong == 0, tag + ": " + std::to_string(wrong) + " parameter elements wrong after allGatherParameters");
  }
  uint64_t owned = sync.shardCount();
  comm.allReduce(&owned, &owned, 1, lockstepUint64, lockstep::Op::kSum);
  expect(owned == total, tag + ": shards hold " + std::to_string(owned) + " of " + std::to_string(total));
}

// Options::findUnusedParameters: a parameter that no rank marked keeps its gradient (PyTorch DDP
// with find_unused_parameters=True), and unusedEverywhere() lists it; one that some rank used is
// averaged as usual, zero counted for the others. Without the option the unused one reads zero.
// Plain and ZeRO-1 (whose second iteration reduce-scatters), the last rank marking its used
// parameter inside noSync only, and a warn callback that throws (dropped: the iteration goes on).
void checkUnusedEverywhere(lockstep::Comm& comm, bool find, bool zero1) {
  const std::string tag =
      std::string("unused everywhere (") + (find ? "findUnusedParameters" : "default") + (zero1 ? ", zero1)" : ")");
  Model m;
  m.add("used", 50, lockstepFloat32);
  m.add("by_rank_0", 40, lockstepFloat32);
  m.add("by_nobody", 30, lockstepFloat32);
  m.add("empty", 0, lockstepFloat32);
  Options o;
  o.bucketBytes = 256;
  o.findUnusedParameters = find;
  o.zero1 = zero1;
  size_t warned = 0;
  o.warn = [&](const std::string&) {
    ++warned;
    throw std::runtime_error("a logger that throws");
  };
  GradientSync sync(comm, o);
  m.registerAll(sync);
  constexpr double kStale = 7;
  for (size_t it = 0; it < 3; ++it) {
    for (size_t p = 0; p < 3; ++p) {
      for (size_t i = 0; i < m.counts[p]; ++i) m.set(m.grad[p], p, i, p == 2 ? kStale : gradValue(rank, p, i, it));
    }
    {
      // Two micro-batches on every rank (ranks must accumulate alike); the last rank marks "used"
      // in the earlier one only: used all the same.
      auto window = sync.noSync();
      sync.markReady(size_t{0});
    }
    if (rank != nranks - 1 || nranks == 1) sync.markReady(size_t{0});
    if (rank == 0) sync.markReady(size_t{1});
    sync.finish();
    // Which elements this rank holds the average of: all, or (ZeRO-1) its shard's.
    std::vector<std::vector<char>> mine(3);
    for (size_t p = 0; p < 3; ++p) mine[p].assign(m.counts[p], zero1 ? 0 : 1);
    if (zero1) {
      for (const ShardPiece& s : sync.shard()) {
        if (s.param < 3) std::fill_n(mine[s.param].begin() + s.paramOffset, s.count, 1);
      }
    }
    size_t wrong = 0;
    for (size_t p = 0; p < 3; ++p) {
      for (size_t i = 0; i < m.counts[p]; ++i) {
        if (!mine[p][i]) continue;  // ZeRO-1: outside the shard, what finish() leaves is not promised
        double want = 0;
        if (p == 2) {
          want = find ? kStale : 0;
        } else {
          for (int r = 0; r < nranks; ++r) want += p == 0 || r == 0 ? gradValue(r, p, i, it) : 0;
          want /= nranks;
        }
        wrong += std::fabs(m.get(m.grad[p], p, i) - want) > 1e-5 * std::max(1.0, std::fabs(want));
      }
    }
    expect(wrong == 0,
           tag + ": " + std::to_string(wrong) + " gradient elements wrong in iteration " + std::to_string(it));
    const std::vector<size_t> want = find ? std::vector<size_t>{2} : std::vector<size_t>{};
    expect(sync.unusedEverywhere() == want,
           tag + ": unusedEverywhere() lists " + std::to_string(sync.unusedEverywhere().size()) + " parameters");
  }
  // One warning per parameter this rank never marked: by_nobody, and by_rank_0 off rank 0.
  expect(warned == (rank == 0 ? 1u : 2u), tag + ": the warn callback ran " + std::to_string(warned) + " times");
}

void checkBroadcast(lockstep::Comm& comm) {
  Model m = mixedModel();
  for (size_t p = 0; p < m.counts.size(); ++p) {
    for (size_t i = 0; i < m.counts[p]; ++i) m.set(m.data[p], p, i, rank * 10.0 + static_cast<double>(i % 9));
  }
  GradientSync sync(comm);
  m.registerAll(sync);
  sync.broadcastParameters();
  size_t wrong = 0;
  for (size_t p = 0; p < m.counts.size(); ++p) {
    for (size_t i = 0; i < m.counts[p]; ++i) wrong += m.get(m.data[p], p, i) != static_cast<double>(i % 9);
  }
  expect(wrong == 0, "broadcastParameters: " + std::to_string(wrong) + " elements are not rank 0's");
}

void checkErrors(lockstep::Comm& comm) {
  std::vector<float> w(10), dw(10), other(4), gother(4);
  std::vector<int32_t> ints(4), gints(4);
  {
    GradientSync sync(comm);
    sync.registerParameter("w", w.data(), dw.data(), w.size());
    expectError(
        lockstepInvalidArgument, "must be float16",
        [&] { sync.registerParameter("ints", ints.data(), gints.data(), 4, lockstepInt32); }, "integer gradients");
    expectError(
        lockstepInvalidUsage, "device memory",
        [&] { sync.registerParameter("gpu", other.data(), gother.data(), 4, Memory::kDevice); }, "device registration");
    expectError(
        lockstepInvalidUsage, "needs zero1", [&] { sync.allGatherParameters(); }, "all-gather without zero1");
    sync.markReady(w.data());
    expectError(
        lockstepInvalidUsage, "twice in one iteration", [&] { sync.markReady(w.data()); }, "markReady twice");
    expectError(
        lockstepInvalidArgument, "not a registered parameter", [&] { sync.markReady(other.data()); },
        "unregistered pointer");
    expectError(
        lockstepInvalidArgument, "only 1 parameters", [&] { sync.markReady(size_t{7}); }, "bad index");
    sync.finish();
    expectError(
        lockstepInvalidUsage, "after training started",
        [&] { sync.registerParameter("late", other.data(), gother.data(), 4); },
        "registration after the first iteration");
  }
  // Ranks that disagree: every rank must get lockstepMismatch, at the first blocking call.
  auto mismatch = [&](const std::string& what, const std::string& phrase, const std::function<void(GradientSync&)>& reg,
                      Options o = {}) {
    GradientSync sync(comm, std::move(o));
    reg(sync);
    expectError(
        lockstepMismatch, phrase, [&] { sync.broadcastParameters(); }, what);
    expectError(
        lockstepMismatch, "unusable after an earlier failure", [&] { sync.markReady(size_t{0}); },
        what + ", then markReady");
  };
  if (nranks < 2) return;
  const bool odd = rank == nranks - 1;
  // Every rank's message names the rank that differs, and what each has.
  const std::string last = std::to_string(nranks - 1);
  const std::string others = nranks == 2 ? "rank 0" : "ranks 0-" + std::to_string(nranks - 2);
  mismatch("different count",
           "parameter #0 ('w' on rank " + std::to_string(rank) +
               ") differs between ranks in count or dtype: 10 x float32 on " + others + ", 9 x float32 on rank " + last,
           [&](GradientSync& s) { s.registerParameter("w", w.data(), dw.data(), odd ? 9 : 10); });
  mismatch("different dtype", "4 x bfloat16 on " + others + ", 4 x float32 on rank " + last, [&](GradientSync& s) {
    s.registerParameter("w", w.data(), dw.data(), 4, odd ? lockstepFloat32 : lockstepBfloat16);
  });
  // Same sizes in another order on one rank: each would be averaged with the other, silently.
  mismatch("different order", "parameter #0 differs between ranks in name: 'a' on " + others + ", 'b' on rank " + last,
           [&](GradientSync& s) {
             s.registerParameter(odd ? "b" : "a", odd ? other.data() : w.data(), odd ? gother.data() : dw.data(), 4);
             s.registerParameter(odd ? "a" : "b", odd ? w.data() : other.data(), odd ? dw.data() : gother.data(), 4);
           });
  // Names that differ past their first 47 bytes (a layer norm's weight and bias) are shown
  // whole: the message once listed one cut name on every rank.
  const std::string stem = "model.decoder.layers.11.encoder_attn_layer_norm.";
  mismatch("long names in another order",
           "differs between ranks in name: '" + stem + "weight' on " + others + ", '" + stem + "bias' on rank " + last,
           [&](GradientSync& s) {
             s.registerParameter(stem + (odd ? "bias" : "weight"), w.data(), dw.data(), 4);
             s.registerParameter(stem + (odd ? "weight" : "bias"), other.data(), gother.data(), 4);
           });
  {
    Options unchecked;
    unchecked.checkNames = false;
    GradientSync sync(comm, unchecked);
    sync.registerParameter(odd ? "v" : "w", w.data(), dw.data(), 4);
    bool ok = true;
    try {
      sync.broadcastParameters();
    } catch (const Exception&) {
      ok = false;
    }
    expect(ok, "checkNames = false: names that differ on purpose pass");
  }
  mismatch("different number", "different numbers of parameters: 1 on " + others + ", 2 on rank " + last,
           [&](GradientSync& s) {
             s.registerParameter("w", w.data(), dw.data(), 10);
             if (odd) s.registerParameter("extra", other.data(), gother.data(), 4);
           });
  Options o;
  o.bucketBytes = odd ? 1000 : 2000;
  mismatch(
      "different options", "different options: bucketBytes is 2000 on " + others + ", 1000 on rank " + last,
      [&](GradientSync& s) { s.registerParameter("w", w.data(), dw.data(), 10); }, o);
  Options f;
  f.findUnusedParameters = odd;
  mismatch(
      "different findUnusedParameters", "findUnusedParameters is 0 on " + others + ", 1 on rank " + last,
      [&](GradientSync& s) { s.registerParameter("w", w.data(), dw.data(), 10); }, f);
  Options c;
  c.compression = odd ? Compression::kFp16 : Compression::kBf16;
  mismatch(
      "different compression", "compression is bf16 on " + others + ", fp16 on rank " + last,
      [&](GradientSync& s) { s.registerParameter("w", w.data(), dw.data(), 10); }, c);
  // Found by finish() after markReady: the marked bucket waited for the check. Started at once,
  // it would have met the other ranks' bucket of another size and failed with the library's
  // mismatch of two all-reduces, not naming the parameter.
  {
    GradientSync sync(comm);
    sync.registerParameter("w", w.data(), dw.data(), odd ? 9 : 10);
    sync.markReady(size_t{0});
    expectError(
        lockstepMismatch, "parameter #0 ('w' on rank " + std::to_string(rank) + ") differs between ranks",
        [&] { sync.finish(); }, "different count, found by finish() after markReady");
  }
}

// A rank's first markReady may come before a collective of the program's own on which another
// rank, not yet marking, waits: the first markReady ran the registration check (a blocking
// collective), so the two ranks waited for each other until LOCKSTEP_TIMEOUT.
void checkFirstMarkBeforeAProgramCollective(lockstep::Comm& comm) {
  if (nranks < 2) return;
  const size_t n = 100;
  std::vector<float> a(n), b(n), da(n), db(n), loss(n);
  GradientSync sync(comm);
  sync.registerParameter("a", a.data(), da.data(), n);
  sync.registerParameter("b", b.data(), db.data(), n);
  for (int it = 0; it < 2; ++it) {
    std::fill(da.begin(), da.end(), 1.0f + rank);
    std::fill(db.begin(), db.end(), 10.0f * (1 + rank));
    std::fill(loss.begin(), loss.end(), 1.0f);
    if (rank == 0) {  // a parameter only rank 0's branch reaches before the loss is logged
      sync.markReady(a.data());
      comm.allReduce(loss.data(), loss.data(), n, lockstepFloat32, lockstep::Op::kSum);
    } else {
      comm.allReduce(loss.data(), loss.data(), n, lockstepFloat32, lockstep::Op::kSum);
      sync.markReady(a.data());
    }
    sync.markReady(b.data());
    sync.finish();
    const float mean = (static_cast<float>(nranks) + 1) / 2;
    const std::string tag = "first markReady before the program's collective, iteration " + std::to_string(it);
    expect(da[7] == mean, tag + ": a's gradient " + std::to_string(da[7]));
    expect(db[7] == 10 * mean, tag + ": b's gradient " + std::to_string(db[7]));
    expect(loss[7] == static_cast<float>(nranks), tag + ": the program's own value " + std::to_string(loss[7]));
  }
}

// The program's own collectives on the communicator it gave GradientSync, between markReady and
// finish, while ranks launch their buckets at different points: rank 0 marks the parameters in
// the other order, and the last rank never marks "c" (its bucket waits for finish() there). On a
// shared communicator the user's all-reduce paired with a bucket, silently: the shapes match.
void checkUserCollectivesDuringBackward(lockstep::Comm& comm) {
  if (nranks < 2) return;
  const size_t n = 100;
  std::vector<float> a(n), b(n), c(n), da(n), db(n), dc(n), loss(n);
  Options o;
  o.bucketBytes = n * sizeof(float);  // one parameter per bucket
  o.warn = [](const std::string&) {};
  GradientSync sync(comm, o);
  sync.registerParameter("a", a.data(), da.data(), n);
  sync.registerParameter("b", b.data(), db.data(), n);
  sync.registerParameter("c", c.data(), dc.data(), n);
  const bool last = rank == nranks - 1;
  for (int it = 0; it < 3; ++it) {  // the first iteration re-buckets; the next ones use that plan
    std::fill(da.begin(), da.end(), 1.0f + rank);
    std::fill(db.begin(), db.end(), 10.0f * (1 + rank));
    std::fill(dc.begin(), dc.end(), 100.0f * (1 + rank));
    std::fill(loss.begin(), loss.end(), 1000.0f * (1 + rank));
    if (rank == 0) {
      sync.markReady(b.data());
      sync.markReady(a.data());
    } else {
      sync.markReady(a.data());
      sync.markReady(b.data());
    }
    comm.allReduce(loss.data(), loss.data(), n, lockstepFloat32, lockstep::Op::kAvg);  // "log the loss"
    if (!last) sync.markReady(c.data());
    comm.allReduce(loss.data(), loss.data(), n, lockstepFloat32, lockstep::Op::kSum);
    sync.finish();
    const float ranks = static_cast<float>(nranks), mean = (ranks + 1) / 2;
    const float cMean = 100.0f * (mean * ranks - ranks) / ranks;  // the last rank's c counts as zero
    const std::string tag = "user collectives during backward, iteration " + std::to_string(it);
    expect(da[7] == mean, tag + ": a's gradient " + std::to_string(da[7]));
    expect(db[7] == 10 * mean, tag + ": b's gradient " + std::to_string(db[7]));
    expect(std::fabs(dc[7] - cMean) <= 1e-3f * cMean, tag + ": c's gradient " + std::to_string(dc[7]));
    expect(loss[7] == 1000 * mean * ranks, tag + ": the program's own value " + std::to_string(loss[7]));
  }
}

// A communication failure sticks: every later call rethrows it, with its code. A second finish()
// once returned normally with this rank's own gradients unaveraged, and markReady blamed "twice
// in one iteration". On a communicator of its own (a split), which the last rank aborts after a
// good iteration, so the main one stays healthy.
void checkStickyFailure(lockstep::Comm& comm) {
  if (nranks < 2) return;
  lockstep::Comm part = comm.split(0, rank);
  std::vector<float> w(1000, 1.0f), dw(1000);
  GradientSync sync(part.get());
  sync.registerParameter("w", w.data(), dw.data(), w.size());
  for (float& g : dw) g = static_cast<float>(rank);
  sync.markReady(w.data());
  sync.finish();
  const float average = static_cast<float>(nranks - 1) / 2;
  expect(dw[0] == average, "sticky: the good iteration's average");
  // Every rank has finished the good iteration before the abort.
  lockstepBarrier(comm.get(), nullptr);
  if (rank == nranks - 1) {
    // The abort reaches GradientSync's own communicator, split from `part`: its next iteration
    // fails at once with lockstepAborted (before, it ran on, and its peers waited for it).
    part.abort();
    expectError(
        lockstepAborted, "aborted",
        [&] {
          sync.markReady(w.data());
          sync.finish();
        },
        "sticky: the aborting rank's own next iteration");
    lockstepBarrier(comm.get(), nullptr);
    return;
  }
  lockstepBarrier(comm.get(), nullptr);
  for (float& g : dw) g = 100.0f + static_cast<float>(rank);
  lockstepResult_t first = lockstepSuccess;
  std::string why;
  try {
    sync.markReady(w.data());
    sync.finish();
  } catch (const Exception& e) {
    first = e.code();
    why = e.what();
  }
  expect(first != lockstepSuccess, "sticky: the iteration after the peer aborted failed");
  // Whose collective failed: the program called no all-reduce of its own here. (The iteration's
  // first is the accumulation check, just before bucket 1.)
  expect(why.find("lockstep ddp: finish(): the iteration's first collective (on GradientSync's own communicator): ") !=
             std::string::npos,
         "sticky: the failure names GradientSync's collective: " + why);
  expectError(
      first, "unusable after an earlier failure", [&] { sync.finish(); }, "sticky: a second finish()");
  expectError(
      first, "unusable after an earlier failure", [&] { sync.markReady(w.data()); }, "sticky: markReady after it");
}

// A failure in GradientSync's first collective (the registration check its first finish()
// runs) says whose collective it is: it once read "allreduce #1 (10 x uint64) ...", a call the
// program never made.
void checkFirstCallFailureIsNamed(lockstep::Comm& comm) {
  if (nranks < 2) return;
  lockstep::Comm part = comm.split(0, rank);
  std::vector<float> w(10, 1.0f), dw(10, 1.0f);
  GradientSync sync(part.get());
  sync.registerParameter("w", w.data(), dw.data(), w.size());
  lockstepBarrier(comm.get(), nullptr);
  if (rank == nranks - 1) {
    part.abort();
    lockstepBarrier(comm.get(), nullptr);
    return;
  }
  lockstepBarrier(comm.get(), nullptr);
  std::string why;
  try {
    sync.markReady(w.data());
    sync.finish();
  } catch (const Exception& e) {
    why = e.what();
  }
  expect(why.find("lockstep ddp: the registration check (at every rank's first broadcastParameters()") !=
                 std::string::npos &&
             why.find("(on GradientSync's own communicator): ") != std::string::npos,
         "first call: the failure names GradientSync's registration check: " + why);
}

}  // namespace

int main() {
  try {
    lockstep::Comm comm = lockstep::Comm::fromEnv();
    rank = comm.rank();
    nranks = comm.size();
    checkAveraging(comm, Compression::kNone, 0);
    checkAveraging(comm, Compression::kBf16, 1.0 / 32);
    checkAveraging(comm, Compression::kFp16, 1.0 / 128);
    checkNoSync(comm);
    checkNoSyncRemembersEarlierUse(comm);
    checkNoSyncDisagreement(comm);
    checkZero1(comm, Compression::kNone);
    checkZero1(comm, Compression::kBf16);
    checkBroadcast(comm);
    for (bool find : {false, true}) {
      for (bool zero1 : {false, true}) checkUnusedEverywhere(comm, find, zero1);
    }
    checkErrors(comm);
    checkUserCollectivesDuringBackward(comm);
    checkFirstMarkBeforeAProgramCollective(comm);
    checkStickyFailure(comm);
    checkFirstCallFailureIsNamed(comm);
    // The communicator is still healthy after all of that.
    lockstepResult_t async = lockstepSuccess;
    lockstepCommGetAsyncError(comm.get(), &async);
    expect(async == lockstepSuccess, std::string("communicator error: ") + lockstepGetErrorString(async));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddp_check rank %d: %s\n", rank, e.what());
    return 2;
  }
  if (failures) {
    std::printf("ddp_check: %zu of %zu checks FAILED on rank %d\n", failures, checks, rank);
    return 1;
  }
  std::printf("ddp_check: all %zu checks passed on rank %d of %d\n", checks, rank, nranks);
  return 0;
}
