// Reduction kernels against memcpy, in one binary (Google Benchmark).
//
// Each kernel computes c = a (op) b over three buffers of the given size; memcpy copies a to c.
// The fair comparison is memory traffic: a reduction reads two bytes and writes one per byte of
// output, memcpy reads one and writes one, so "traffic GB/s" = (reads + writes) / time for both
// (the anchors' membw probe defines it the same way). The table printed at the end gives each
// kernel's traffic as a fraction of memcpy's at the same size.
//
//   build/perf/kernels_bench                         every dtype x op at 1 MiB and 64 MiB
//   build/perf/kernels_bench --benchmark_filter="memcpy|float32/sum"
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "kernels/cpu_reduce.h"
#include "kernels/dtype.h"

namespace {

using lockstep::dataTypeName;
using lockstep::dataTypeSize;
using lockstep::redOpName;

// Buffers are allocated once per size and touched first, so no page fault is timed.
struct Buffers {
  std::vector<unsigned char> a, b, c;
  explicit Buffers(size_t bytes) : a(bytes, 1), b(bytes, 2), c(bytes, 0) {}
};

Buffers& buffersFor(size_t bytes) {
  static std::map<size_t, Buffers> cache;
  auto it = cache.find(bytes);
  if (it == cache.end()) it = cache.emplace(bytes, Buffers(bytes)).first;
  return it->second;
}

void setTraffic(benchmark::State& state, size_t bytes, double trafficPerByte) {
  const double iters = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(iters * static_cast<double>(bytes)));
  state.counters["traffic_GBps"] =
      benchmark::Counter(iters * static_cast<double>(bytes) * trafficPerByte / 1e9, benchmark::Counter::kIsRate);
}

void memcpyBench(benchmark::State& state, size_t bytes) {
  Buffers& buf = buffersFor(bytes);
  for (auto _ : state) {
    std::memcpy(buf.c.data(), buf.a.data(), bytes);
    benchmark::ClobberMemory();
  }
  setTraffic(state, bytes, 2.0);
}

void reduceBench(benchmark::State& state, lockstepDataType_t type, lockstepRedOp_t op, size_t bytes) {
  Buffers& buf = buffersFor(bytes);
  const size_t n = bytes / dataTypeSize(type);
  const lockstep::ReduceKernels k = lockstep::reduceKernels(type, op);
  for (auto _ : state) {
    // avg on floating types reduces through premulSum (what a ring step runs); otherwise reduce.
    if (k.premulSum)
      k.premulSum(buf.c.data(), buf.a.data(), buf.b.data(), n, 4);
    else
      k.reduce(buf.c.data(), buf.a.data(), buf.b.data(), n);
    benchmark::ClobberMemory();
  }
  setTraffic(state, bytes, 3.0);
}

std::string sizeName(size_t bytes) { return std::to_string(bytes >> 20) + "MiB"; }

// Collects each run's traffic so the summary can divide by memcpy at the same size.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      auto it = r.counters.find("traffic_GBps");
      if (it == r.counters.end()) continue;
      // UseRealTime() appends "/real_time" to the name; the summary looks runs up without it.
      std::string name = r.benchmark_name();
      const std::string suffix = "/real_time";
      if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        name.resize(name.size() - suffix.size());
      traffic_[name] = it->second.value;
    }
  }
  void printSummary(const std::vector<size_t>& sizes) const {
    std::printf("\n%-28s", "traffic / memcpy traffic");
    for (size_t s : sizes) std::printf(" %10s", sizeName(s).c_str());
    std::printf("\n");
    for (int t = 0; t < lockstepNumTypes; ++t) {
      for (int o = 0; o < lockstepNumOps; ++o) {
        std::string key = std::string(dataTypeName(static_cast<lockstepDataType_t>(t))) + "/" +
                          redOpName(static_cast<lockstepRedOp_t>(o));
        bool any = false;
        std::string line;
        for (size_t s : sizes) {
          auto k = traffic_.find("reduce/" + key + "/" + sizeName(s));
          auto m = traffic_.find("memcpy/" + sizeName(s));
          char cell[32];
          if (k != traffic_.end() && m != traffic_.end() && m->second > 0) {
            std::snprintf(cell, sizeof cell, " %10.2f", k->second / m->second);
            any = true;
          } else {
            std::snprintf(cell, sizeof cell, " %10s", "-");
          }
          line += cell;
        }
        if (any) std::printf("%-28s%s\n", key.c_str(), line.c_str());
      }
    }
  }

 private:
  std::map<std::string, double> traffic_;
};

}  // namespace

int main(int argc, char** argv) {
  const std::vector<size_t> sizes = {size_t{1} << 20, size_t{64} << 20};
  for (size_t s : sizes) {
    benchmark::RegisterBenchmark(("memcpy/" + sizeName(s)).c_str(), memcpyBench, s)->UseRealTime();
    for (int t = 0; t < lockstepNumTypes; ++t) {
      for (int o = 0; o < lockstepNumOps; ++o) {
        auto type = static_cast<lockstepDataType_t>(t);
        auto op = static_cast<lockstepRedOp_t>(o);
        std::string name = std::string("reduce/") + dataTypeName(type) + "/" + redOpName(op) + "/" + sizeName(s);
        benchmark::RegisterBenchmark(name.c_str(), reduceBench, type, op, s)->UseRealTime();
      }
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.printSummary(sizes);
  benchmark::Shutdown();
  return 0;
}
