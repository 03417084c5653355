// allreduce_perf: nccl-tests' all_reduce_perf for Lockstep. Start it under a launcher:
//   lockstep-run -n 2 allreduce_perf -b 8 -e 256M -f 2
// busbw = algbw * 2(n-1)/n, as in nccl-tests. Exits 1 if any value is wrong.
#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/dtype.h"
#include "perf/pattern.h"
#include "perf/perf_common.h"

using namespace lockstep;

namespace {

void die(lockstepResult_t r, const char* what) {
  std::fprintf(stderr, "allreduce_perf: %s failed: %s: %s\n", what, lockstepGetErrorString(r),
               lockstepGetLastError(nullptr));
  std::exit(3);
}
#define CHECK(call)                            \
  do {                                         \
    lockstepResult_t r_ = (call);              \
    if (r_ != lockstepSuccess) die(r_, #call); \
  } while (0)

// Page-aligned, pre-faulted buffers, as a trainer's long-lived tensors would be.
void* alloc(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, std::max<size_t>(bytes, 64)) != 0) {
    std::fprintf(stderr, "allreduce_perf: cannot allocate %zu bytes\n", bytes);
    std::exit(3);
  }
  std::memset(p, 0, std::max<size_t>(bytes, 64));
  return p;
}

double timeOps(lockstepComm_t comm, const void* send, void* recv, size_t count, lockstepDataType_t t,
               lockstepRedOp_t op, int warmup, int iters, int nranks) {
  for (int i = 0; i < warmup; ++i) CHECK(lockstepAllReduce(send, recv, count, t, op, comm, nullptr));
  CHECK(lockstepBarrier(comm, nullptr));
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) CHECK(lockstepAllReduce(send, recv, count, t, op, comm, nullptr));
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / iters;
  double sum = 0;
  CHECK(lockstepAllReduce(&us, &sum, 1, lockstepFloat64, lockstepSum, comm, nullptr));
  return sum / nranks;  // averaged over ranks, as nccl-tests does
}

// Runs once on fresh input and counts wrong elements over all ranks.
size_t checkOnce(lockstepComm_t comm, const Pattern& pat, void* send, void* recv, size_t count, lockstepDataType_t t,
                 lockstepRedOp_t op, int rank, bool inPlace) {
  pat.fill(send, count, rank);
  if (!inPlace) std::memset(recv, 0, count * dataTypeSize(t));
  void* out = inPlace ? send : recv;
  CHECK(lockstepAllReduce(send, out, count, t, op, comm, nullptr));
  uint64_t wrong = pat.countWrong(out, count), total = 0;
  CHECK(lockstepAllReduce(&wrong, &total, 1, lockstepUint64, lockstepSum, comm, nullptr));
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  perf::Args args = perf::parseArgs(argc, argv, "allreduce_perf");
  lockstepComm_t comm;
  CHECK(lockstepCommInitFromEnv(&comm));
  int rank, nranks;
  CHECK(lockstepCommUserRank(comm, &rank));
  CHECK(lockstepCommCount(comm, &nranks));
  const double busFactor = nranks > 1 ? 2.0 * (nranks - 1) / nranks : 0.0;

  size_t maxBytes = args.maxBytes + 8;
  char* send = static_cast<char*>(alloc(maxBytes));
  char* recv = static_cast<char*>(alloc(maxBytes));
  if (rank == 0) perf::printHeader("lockstepAllReduce", nranks, args);
  size_t totalWrong = 0;
  double busSum = 0;
  int rows = 0;
  for (lockstepDataType_t t : args.types) {
    for (lockstepRedOp_t op : args.ops) {
      Pattern pat(t, op, nranks);
      for (size_t bytes : perf::sweepSizes(args, dataTypeSize(t))) {
        size_t count = bytes / dataTypeSize(t);
        int iters = perf::itersFor(args, bytes), warm = perf::warmupFor(args, iters);
        pat.fill(send, count, rank);
        double oop = timeOps(comm, send, recv, count, t, op, warm, iters, nranks);
        size_t oopWrong = args.check ? checkOnce(comm, pat, send, recv, count, t, op, rank, false) : 0;
        double ip = timeOps(comm, recv, recv, count, t, op, warm, iters, nranks);
        size_t ipWrong = args.check ? checkOnce(comm, pat, recv, recv, count, t, op, rank, true) : 0;
        totalWrong += oopWrong + ipWrong;
        if (rank == 0) {
          perf::printRow(bytes, count, dataTypeName(t), redOpName(op), -1, busFactor, oop, oopWrong, ip, ipWrong);
          busSum += bytes / (oop * 1e-6) / 1e9 * busFactor;
          ++rows;
        }
      }
    }
  }
  if (rank == 0) {
    std::printf("# Out of bounds values : %zu %s\n", totalWrong, totalWrong ? "FAILED" : "OK");
    std::printf("# Avg bus bandwidth    : %g\n", rows ? busSum / rows : 0.0);
  }
  CHECK(lockstepCommDestroy(comm));
  std::free(send);
  std::free(recv);
  return totalWrong ? 1 : 0;
}
