// CUDA reduction kernels against cudaMemcpy device-to-device, in one binary (Google Benchmark,
// timed with CUDA events). As in perf/kernels_bench.cc, the comparison is memory traffic: a
// reduction reads two bytes and writes one per output byte, a copy reads one and writes one. The
// summary gives each kernel's traffic as a fraction of the copy's at the same size.
//
//   build/perf/cuda_kernels_bench                      every dtype x op at 64 MiB and 256 MiB
//   build/perf/cuda_kernels_bench --benchmark_filter='memcpy|float32/sum|bfloat16/sum'
//
// Without a GPU it says so and exits 0.
#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "kernels/cuda_kernels.h"
#include "kernels/dtype.h"

namespace {

using lockstep::dataTypeName;
using lockstep::dataTypeSize;
using lockstep::redOpName;

struct Buffers {
  void *a = nullptr, *b = nullptr, *c = nullptr;
  explicit Buffers(size_t bytes) {
    cudaMalloc(&a, bytes);
    cudaMalloc(&b, bytes);
    cudaMalloc(&c, bytes);
    cudaMemset(a, 1, bytes);
    cudaMemset(b, 2, bytes);
    cudaMemset(c, 0, bytes);
  }
};

Buffers& buffersFor(size_t bytes) {
  static std::map<size_t, Buffers*> cache;  // kept for the process: freed at exit
  auto& b = cache[bytes];
  if (!b) b = new Buffers(bytes);
  return *b;
}

template <typename Launch>
void timeOnDevice(benchmark::State& state, size_t bytes, double trafficPerByte, Launch launch) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  launch();  // warm-up
  cudaDeviceSynchronize();
  for (auto _ : state) {
    cudaEventRecord(start);
    launch();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms / 1e3);
  }
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) state.SkipWithError(cudaGetErrorString(e));
  const double iters = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(iters * static_cast<double>(bytes)));
  state.counters["traffic_GBps"] =
      benchmark::Counter(iters * static_cast<double>(bytes) * trafficPerByte / 1e9, benchmark::Counter::kIsRate);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

std::string sizeName(size_t bytes) { return std::to_string(bytes >> 20) + "MiB"; }

class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      auto it = r.counters.find("traffic_GBps");
      if (it == r.counters.end()) continue;
      std::string name = r.benchmark_name();
      if (auto slash = name.find("/manual_time"); slash != std::string::npos) name.resize(slash);
      traffic_[name] = it->second.value;
    }
  }
  void printSummary(const std::vector<size_t>& sizes) const {
    std::printf("\n%-28s", "traffic / cudaMemcpy traffic");
    for (size_t s : sizes) std::printf(" %10s", sizeName(s).c_str());
    std::printf("\n");
    for (int t = 0; t < lockstepNumTypes; ++t) {
      for (int o = 0; o < lockstepNumOps; ++o) {
        std::string key = std::string(dataTypeName(static_cast<lockstepDataType_t>(t))) + "/" +
                          redOpName(static_cast<lockstepRedOp_t>(o));
        std::string line;
        bool any = false;
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
  int devices = 0;
  if (cudaError_t e = cudaGetDeviceCount(&devices); e != cudaSuccess || devices == 0) {
    std::printf("cuda_kernels_bench: no GPU on this machine (%s); nothing to measure\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device");
    return 0;
  }
  const std::vector<size_t> sizes = {size_t{64} << 20, size_t{256} << 20};
  for (size_t s : sizes) {
    benchmark::RegisterBenchmark(("memcpy/" + sizeName(s)).c_str(), [s](benchmark::State& st) {
      Buffers& b = buffersFor(s);
      timeOnDevice(st, s, 2.0, [&] { cudaMemcpyAsync(b.c, b.a, s, cudaMemcpyDeviceToDevice); });
    })->UseManualTime();
    for (int t = 0; t < lockstepNumTypes; ++t) {
      for (int o = 0; o < lockstepNumOps; ++o) {
        auto type = static_cast<lockstepDataType_t>(t);
        auto op = static_cast<lockstepRedOp_t>(o);
        std::string name = std::string("reduce/") + dataTypeName(type) + "/" + redOpName(op) + "/" + sizeName(s);
        benchmark::RegisterBenchmark(name.c_str(), [s, type, op](benchmark::State& st) {
          Buffers& b = buffersFor(s);
          const size_t n = s / dataTypeSize(type);
          // avg on floating types reduces through premulSum, as a ring step does.
          const bool premul = op == lockstepAvg && lockstep::cuda::hasPremul(type);
          timeOnDevice(st, s, 3.0, [&] {
            if (premul)
              lockstep::cuda::premulSum(type, b.c, b.a, b.b, n, 4, 0);
            else
              lockstep::cuda::reduce(type, op, b.c, b.a, b.b, n, 0);
          });
        })->UseManualTime();
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
