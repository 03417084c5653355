// lockstep-sim: predicted all-reduce bus bandwidth against the rank count, for every algorithm,
// and the tuner's pick, from the simulator's network model. How we plan past the machines we have.
//
//   lockstep-sim [-n 8,16,...,4096] [-s 8,64K,1M,16M,256M] [--node 8] [--intra-us 2] [--intra-gbps 150]
//                [--inter-us 5] [--inter-gbps 25] [--gap-us G] [--slice 1M] [--slots 4] [--reduce-gbps 0]
//                [--budget 200000000]       (--gap-us sets both gaps: by default 0.2 in a node, 0.5 across)
//
// Every algorithm's real schedules (the ones the library runs) execute for all N ranks, without
// data: each message costs its link's alpha plus bytes over bandwidth, queued behind the rank's
// other messages on the same port, under the same slicing and credit flow as the executor.
// Ranks [k*node, (k+1)*node) share a node. busbw = size / time * 2(N-1)/N, as nccl-tests. A run
// whose message count exceeds --budget is skipped ("-"), counted rank by rank before anything is
// built, as is an algorithm past its rank limit (the one-shot's 64). The simulator keeps every
// rank's schedule and a queue per link: the rank-ordered algorithm's N(N-1) links take several GB
// at 4096 ranks, so -n stops there, and a cell that runs out of memory is skipped ("-", said on
// stderr). The tuner sees one link cost, the
// slowest of each figure over the links the job uses, as the library's tuner does, and the
// reduction speed given here. The defaults describe a GPU cluster (8 per
// node, NVLink-class intra-node links, one 200 Gb/s NIC per GPU); they are assumptions, not
// measurements: pass this machine's figures (README) to model it.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "src/algo/registry.h"
#include "src/algo/simulator.h"
#include "src/algo/tuner.h"
#include "src/core/config.h"
#include "src/core/errors.h"

using namespace lockstep;

namespace {

// Flag values, strictly (a bad one is an InvalidArgument naming the flag): "-n -4" once ended in
// an uncaught length_error, "-n abc" printed a row of zeros.
size_t parseSize(const std::string& s, const std::string& flag, size_t lo) {
  size_t v = 0;
  try {
    std::string upper = s;  // "1m", "1g" as the perf drivers take them
    if (!upper.empty() && (upper.back() == 'm' || upper.back() == 'g')) upper.back() = upper.back() == 'm' ? 'M' : 'G';
    v = parseBytes(upper, flag);  // 4096, 64K, 1M, 2G
  } catch (const InvalidArgument&) {
    throw InvalidArgument(flag + " " + s + ": not a count (e.g. 8, 64K, 1M)");
  }
  if (v < lo) throw InvalidArgument(flag + " " + s + ": below " + std::to_string(lo));
  return v;
}

// A count for an int, checked before it is narrowed (2^31 once became -2^31 ranks per node).
size_t parseCount(const std::string& s, const std::string& flag, size_t hi) {
  const size_t v = parseSize(s, flag, 1);
  if (v > hi) throw InvalidArgument(flag + " " + s + ": above " + std::to_string(hi));
  return v;
}

std::vector<size_t> parseList(const std::string& s, const std::string& flag, size_t lo, size_t hi) {
  std::vector<size_t> out;
  size_t at = 0;
  while (at <= s.size()) {
    size_t comma = s.find(',', at);
    if (comma == std::string::npos) comma = s.size();
    if (comma > at) out.push_back(parseSize(s.substr(at, comma - at), flag, lo));
    if (!out.empty() && out.back() > hi) throw InvalidArgument(flag + " " + s + ": above " + std::to_string(hi));
    at = comma + 1;
  }
  if (out.empty()) throw InvalidArgument(flag + " " + s + ": lists nothing");
  return out;
}

// A number from lo (included unless open) up to 1e9.
double parseNumber(const std::string& s, const std::string& flag, double lo, bool open) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || !(std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '.') || *end != '\0' ||
      !(open ? v > lo : v >= lo) || !(v <= 1e9)) {
    throw InvalidArgument(flag + " " + s + ": not a number " + (open ? "above " : "from ") + std::to_string(lo) +
                          " to 1e9");
  }
  return v;
}

std::string human(size_t bytes) {
  char buf[32];
  if (bytes >= (1u << 30) && bytes % (1u << 30) == 0) return std::snprintf(buf, sizeof buf, "%zuG", bytes >> 30), buf;
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return std::snprintf(buf, sizeof buf, "%zuM", bytes >> 20), buf;
  if (bytes >= (1u << 10) && bytes % (1u << 10) == 0) return std::snprintf(buf, sizeof buf, "%zuK", bytes >> 10), buf;
  return std::snprintf(buf, sizeof buf, "%zu", bytes), buf;
}

constexpr Algorithm kAlgorithms[] = {Algorithm::kRing,         Algorithm::kTree,   Algorithm::kRecursiveDoubling,
                                     Algorithm::kRabenseifner, Algorithm::kDirect, Algorithm::kOrdered};

// Whether the messages all ranks send for one run (what the simulation would cost) stay within
// `budget`: each rank's schedule is built, counted and dropped in turn, stopping once over, so a
// run far past the budget costs neither the memory of its schedules nor the time to make them.
bool withinBudget(Algorithm a, int n, size_t count, size_t sliceElems, uint64_t budget) {
  uint64_t total = 0;
  for (int r = 0; r < n && total <= budget; ++r) {
    Schedule s;
    buildSchedule(a, OpKind::kAllReduce, r, n, count, -1, &s);
    for (const Step& step : s.steps) {
      if (primSends(step.prim) && step.count) total += (step.count + sliceElems - 1) / sliceElems;
    }
  }
  return total <= budget;
}

// A byte count that is whole float32 elements.
size_t parseFloats(const std::string& s, const std::string& flag) {
  const size_t v = parseSize(s, flag, 4);
  if (v % 4 != 0) throw InvalidArgument(flag + " " + s + ": not a multiple of 4 bytes (float32 elements)");
  return v;
}

void usage() {
  std::fprintf(stderr,
               "usage: lockstep-sim [-n 8,16,...] [-s 8,64K,1M] [--node R] [--intra-us A] [--intra-gbps B]\n"
               "                    [--inter-us A] [--inter-gbps B] [--gap-us G] [--slice BYTES] [--slots K]\n"
               "                    [--reduce-gbps G] [--budget MESSAGES]\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<size_t> ranks = {8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
  std::vector<size_t> sizes = {8, 64 << 10, 1 << 20, 16 << 20, 256 << 20};
  NetworkModel net;
  net.ranksPerNode = 8;
  net.intra = {2.0, 150.0, 0.2};
  net.inter = {5.0, 25.0, 0.5};
  SimOptions options;
  options.network = &net;
  options.moveData = false;
  uint64_t budget = 200000000;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "-h" || k == "--help") return usage(), 0;
    if (i + 1 >= argc) return usage(), 2;
    std::string v = argv[++i];
    try {
      if (k == "-n")
        ranks = parseList(v, k, 2, 4096);  // one rank moves nothing: busbw is 0 whatever the time
      else if (k == "-s") {
        sizes = parseList(v, k, 4, size_t{1} << 40);
        for (size_t size : sizes) parseFloats(std::to_string(size), k);
      } else if (k == "--node")
        net.ranksPerNode = static_cast<int>(parseCount(v, k, 1 << 20));
      else if (k == "--intra-us")
        net.intra.alphaUs = parseNumber(v, k, 0, false);
      else if (k == "--intra-gbps")
        net.intra.gbps = parseNumber(v, k, 0, true);
      else if (k == "--inter-us")
        net.inter.alphaUs = parseNumber(v, k, 0, false);
      else if (k == "--inter-gbps")
        net.inter.gbps = parseNumber(v, k, 0, true);
      else if (k == "--gap-us")
        net.intra.gapUs = net.inter.gapUs = parseNumber(v, k, 0, false);
      else if (k == "--slice")
        options.sliceBytes = parseFloats(v, k);
      else if (k == "--slots") {  // as LOCKSTEP_SLOTS: one credit deadlocks a fused receive-reduce-send
        options.slots = static_cast<int>(parseCount(v, k, 64));
        if (options.slots < 2) throw InvalidArgument(k + " " + v + ": below 2");
      } else if (k == "--reduce-gbps")
        net.reduceGBps = parseNumber(v, k, 0, false);  // 0: reductions cost nothing
      else if (k == "--budget")
        budget = parseSize(v, k, 1);
      else
        return usage(), 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "lockstep-sim: %s\n", e.what());
      return 2;
    }
  }
  const size_t elem = dataTypeSize(lockstepFloat32);
  // The tuner prices the pipeline's fill in slices, as the simulator runs it, and the reduction
  // at the speed the simulator charges (it was left free: the tuner column then disagreed with
  // the library's pick given the same figures, helper-100).
  net.intra.sliceBytes = net.inter.sliceBytes = static_cast<double>(options.sliceBytes);
  if (net.reduceGBps > 0) net.intra.reduceGBps = net.inter.reduceGBps = net.reduceGBps;
  std::printf(
      "# lockstep-sim: predicted all-reduce busbw (GB/s), float32; %d ranks/node; intra %.2f us %.1f GB/s; "
      "inter %.2f us %.1f GB/s; gap %.2f/%.2f us; slice %s, %d slots\n",
      net.ranksPerNode, net.intra.alphaUs, net.intra.gbps, net.inter.alphaUs, net.inter.gbps, net.intra.gapUs,
      net.inter.gapUs, human(options.sliceBytes).c_str(), options.slots);
  std::printf("# %6s %6s", "ranks", "size");
  for (Algorithm a : kAlgorithms) std::printf(" %12.12s", algorithmName(a));
  std::printf(" %18s %18s %6s\n", "best", "tuner", "ratio");
  int failed = 0;
  for (size_t size : sizes) {
    for (size_t nr : ranks) {
      const int n = static_cast<int>(nr);
      const size_t count = size / elem;
      std::printf("  %6d %6s", n, human(size).c_str());
      double best = 0, picked = -1;  // -1: the tuner's pick was not simulated
      Algorithm bestAlg = Algorithm::kCount;
      const bool multiNode = net.ranksPerNode > 0 && n > net.ranksPerNode;
      // The library's tuner takes the slowest of every figure of the links the job uses.
      const Algorithm tuned =
          chooseAlgorithm(OpKind::kAllReduce, n, size, multiNode ? slowerOf(net.intra, net.inter) : net.intra, {});
      for (Algorithm a : kAlgorithms) {
        // Past its rank limit the library never runs it (the one-shot's is 64).
        if (n > maxRanks(a, OpKind::kAllReduce) || !withinBudget(a, n, count, options.sliceBytes / elem, budget)) {
          std::printf(" %12s", "-");
          std::fflush(stdout);
          continue;
        }
        double busbw = 0;
        try {
          std::vector<Schedule> schedules(nr);
          for (int r = 0; r < n; ++r) buildSchedule(a, OpKind::kAllReduce, r, n, count, -1, &schedules[r]);
          SimStats st = simulate(schedules, {}, lockstepFloat32, lockstepSum, options);
          busbw = st.timeUs > 0 ? static_cast<double>(size) / (st.timeUs * 1e3) * 2.0 * (n - 1) / n : 0;
        } catch (const std::bad_alloc&) {  // the memory, not the schedule: the cell is skipped
          std::printf(" %12s", "-");
          std::fflush(stdout);
          std::fprintf(stderr, "lockstep-sim: %s, %d ranks, %s: out of memory (skipped)\n", algorithmName(a), n,
                       human(size).c_str());
          continue;
        } catch (const std::exception& e) {  // a schedule that deadlocks is a bug: say which, go on
          std::printf(" %12s", "error");
          std::fflush(stdout);
          std::fprintf(stderr, "lockstep-sim: %s, %d ranks, %s: %s\n", algorithmName(a), n, human(size).c_str(),
                       e.what());
          ++failed;
          continue;
        }
        std::printf(" %12.4g", busbw);
        std::fflush(stdout);
        if (busbw > best) best = busbw, bestAlg = a;
        if (a == tuned) picked = busbw;
      }
      // Nothing simulated (all over the budget): no best. The pick not simulated: no ratio.
      std::printf(" %18s %18s", bestAlg == Algorithm::kCount ? "-" : algorithmName(bestAlg), algorithmName(tuned));
      if (bestAlg == Algorithm::kCount || picked < 0) {
        std::printf(" %6s\n", "-");
      } else {
        std::printf(" %6.2f\n", picked / best);
      }
    }
  }
  return failed ? 1 : 0;
}
