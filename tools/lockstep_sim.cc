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
// whose message count exceeds --budget is skipped ("-"). The tuner sees one link cost, the
// slowest the job uses, as the library's tuner does. The defaults describe a GPU cluster (8 per
// node, NVLink-class intra-node links, one 200 Gb/s NIC per GPU); they are assumptions, not
// measurements: pass this machine's figures (README) to model it.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

// Messages all ranks send for one run, from the schedules (what the simulation would cost).
uint64_t messageCount(const std::vector<Schedule>& schedules, size_t sliceElems) {
  uint64_t total = 0;
  for (const Schedule& s : schedules) {
    for (const Step& step : s.steps) {
      if (primSends(step.prim) && step.count) total += (step.count + sliceElems - 1) / sliceElems;
    }
  }
  return total;
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
        ranks = parseList(v, k, 1, size_t{1} << 20);
      else if (k == "-s")
        sizes = parseList(v, k, 1, size_t{1} << 40);
      else if (k == "--node")
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
        options.sliceBytes = parseSize(v, k, 4);
      else if (k == "--slots")
        options.slots = static_cast<int>(parseCount(v, k, 1024));
      else if (k == "--reduce-gbps")
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
  std::printf(
      "# lockstep-sim: predicted all-reduce busbw (GB/s), float32; %d ranks/node; intra %.2f us %.1f GB/s; "
      "inter %.2f us %.1f GB/s; gap %.2f/%.2f us; slice %s, %d slots\n",
      net.ranksPerNode, net.intra.alphaUs, net.intra.gbps, net.inter.alphaUs, net.inter.gbps, net.intra.gapUs,
      net.inter.gapUs, human(options.sliceBytes).c_str(), options.slots);
  std::printf("# %6s %6s", "ranks", "size");
  for (Algorithm a : kAlgorithms) std::printf(" %12.12s", algorithmName(a));
  std::printf(" %18s %18s %6s\n", "best", "tuner", "ratio");
  for (size_t size : sizes) {
    for (size_t nr : ranks) {
      const int n = static_cast<int>(nr);
      const size_t count = size / elem;
      std::printf("  %6d %6s", n, human(size).c_str());
      double best = 0, picked = 0;
      Algorithm bestAlg = Algorithm::kRing;
      const bool multiNode = net.ranksPerNode > 0 && n > net.ranksPerNode;
      const Algorithm tuned = chooseAlgorithm(OpKind::kAllReduce, n, size, multiNode ? net.inter : net.intra, {});
      for (Algorithm a : kAlgorithms) {
        std::vector<Schedule> schedules(nr);
        for (int r = 0; r < n; ++r) buildSchedule(a, OpKind::kAllReduce, r, n, count, -1, &schedules[r]);
        if (messageCount(schedules, options.sliceBytes / elem) > budget) {
          std::printf(" %12s", "-");
          std::fflush(stdout);
          continue;
        }
        SimStats st = simulate(schedules, {}, lockstepFloat32, lockstepSum, options);
        double busbw = st.timeUs > 0 ? static_cast<double>(size) / (st.timeUs * 1e3) * 2.0 * (n - 1) / n : 0;
        std::printf(" %12.4g", busbw);
        std::fflush(stdout);
        if (busbw > best) best = busbw, bestAlg = a;
        if (a == tuned) picked = busbw;
      }
      std::printf(" %18s %18s %6.2f\n", algorithmName(bestAlg), algorithmName(tuned), best > 0 ? picked / best : 0.0);
    }
  }
  return 0;
}
