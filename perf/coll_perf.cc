// The *_perf drivers: nccl-tests' table for one collective, chosen at build time
// (LOCKSTEP_PERF_COLL). Start under a launcher:
//   lockstep-run -n 2 allreduce_perf -b 8 -e 256M -f 2
// busbw uses nccl-tests' factor per collective. Exits 1 if any value is wrong.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/dtype.h"
#include "perf/collectives.h"
#include "perf/pattern.h"
#include "perf/perf_common.h"
#include "src/algo/registry.h"

using namespace lockstep;
using namespace lockstep::perf;

namespace {

constexpr Coll kColl = static_cast<Coll>(LOCKSTEP_PERF_COLL);

void die(lockstepResult_t r, const char* what) {
  std::fprintf(stderr, "%s_perf: %s failed: %s: %s\n", collName(kColl), what, lockstepGetErrorString(r),
               lockstepGetLastError(nullptr));
  std::exit(3);
}
#define CHECK(call)                            \
  do {                                         \
    lockstepResult_t r_ = (call);              \
    if (r_ != lockstepSuccess) die(r_, #call); \
  } while (0)

// Page-aligned, pre-faulted buffers, as a trainer's long-lived tensors would be.
char* alloc(size_t bytes) {
  void* p = nullptr;
  bytes = std::max<size_t>(bytes, 64);
  if (posix_memalign(&p, 4096, bytes) != 0) {
    std::fprintf(stderr, "cannot allocate %zu bytes\n", bytes);
    std::exit(3);
  }
  std::memset(p, 0, bytes);
  return static_cast<char*>(p);
}

struct Bench {
  lockstepComm_t comm;
  int rank, nranks;
  char* sendAlloc;
  char* recvAlloc;
};

// Mean time per call in us, averaged over ranks (as nccl-tests does).
double timeCalls(const Bench& b, CollBuffers bufs, size_t count, lockstepDataType_t t, lockstepRedOp_t op, int root,
                 int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) CHECK(runColl(kColl, bufs.send, bufs.recv, count, t, op, root, b.comm, nullptr));
  CHECK(lockstepBarrier(b.comm, nullptr));
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) CHECK(runColl(kColl, bufs.send, bufs.recv, count, t, op, root, b.comm, nullptr));
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / iters;
  double sum = 0;
  CHECK(lockstepAllReduce(&us, &sum, 1, lockstepFloat64, lockstepSum, b.comm, nullptr));
  return sum / b.nranks;
}

// One call on fresh input; wrong elements summed over all ranks.
size_t checkOnce(const Bench& b, const Pattern& pat, CollBuffers bufs, size_t count, lockstepDataType_t t,
                 lockstepRedOp_t op, int root, bool inPlace) {
  size_t elem = dataTypeSize(t);
  if (!inPlace) std::memset(bufs.recv, 0, recvElems(kColl, count, b.nranks) * elem);
  fillInput(kColl, pat, bufs.send, count, b.rank, b.nranks, root);
  CHECK(runColl(kColl, bufs.send, bufs.recv, count, t, op, root, b.comm, nullptr));
  uint64_t wrong = countWrong(kColl, pat, bufs.recv, count, b.rank, b.nranks, root), total = 0;
  CHECK(lockstepAllReduce(&wrong, &total, 1, lockstepUint64, lockstepSum, b.comm, nullptr));
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string program = std::string(collName(kColl)) + "_perf";
  Args args = parseArgs(argc, argv, program.c_str());
  // -a forces an algorithm through LOCKSTEP_ALGO, as a user would (read once, at init).
  if (args.algo != "default") {
    Algorithm a;
    if (!parseAlgorithm(args.algo, &a) || !implements(a, collKind(kColl))) {
      std::string known;
      for (int i = 0; i < static_cast<int>(Algorithm::kCount); ++i) {
        if (implements(static_cast<Algorithm>(i), collKind(kColl))) {
          known += std::string(known.empty() ? "" : ", ") + algorithmName(static_cast<Algorithm>(i));
        }
      }
      std::fprintf(stderr, "%s: unknown algorithm %s (available: %s)\n", program.c_str(), args.algo.c_str(),
                   known.c_str());
      return 2;
    }
    setenv("LOCKSTEP_ALGO", (std::string(opKindName(collKind(kColl))) + "=" + args.algo).c_str(), 1);
  } else {
    args.algo = "tuned";
  }
  Bench b;
  CHECK(lockstepCommInitFromEnv(&b.comm));
  CHECK(lockstepCommUserRank(b.comm, &b.rank));
  CHECK(lockstepCommCount(b.comm, &b.nranks));
  const int root = collRooted(kColl) ? args.root : -1;
  if (collRooted(kColl) && (root < 0 || root >= b.nranks)) {
    std::fprintf(stderr, "%s: root %d is outside [0, %d)\n", program.c_str(), root, b.nranks);
    return 2;
  }
  if (!collReduces(kColl)) args.ops = {lockstepSum};
  const double factor = busFactor(kColl, b.nranks);
  // nccl-tests' size is the larger of the two buffers, so maxBytes covers every call.
  b.sendAlloc = alloc(args.maxBytes + 64);
  b.recvAlloc = alloc(args.maxBytes + 64);
  if (b.rank == 0) printHeader(("lockstep " + std::string(collName(kColl))).c_str(), b.nranks, args);

  size_t totalWrong = 0;
  double busSum = 0;
  int rows = 0;
  for (lockstepDataType_t t : args.types) {
    const size_t elem = dataTypeSize(t);
    for (lockstepRedOp_t op : args.ops) {
      Pattern pat(t, op, b.nranks);
      for (size_t bytes : sweepSizes(args, elem)) {
        size_t count = countForSize(kColl, bytes, b.nranks, elem);
        if (count == 0) continue;
        size_t size = sizeBytes(kColl, count, b.nranks, elem);
        int iters = itersFor(args, size), warm = warmupFor(args, iters);
        CollBuffers oop = collBuffers(kColl, b.sendAlloc, b.recvAlloc, count, b.rank, b.nranks, elem, false);
        fillInput(kColl, pat, oop.send, count, b.rank, b.nranks, root);
        double oopUs = timeCalls(b, oop, count, t, op, root, warm, iters);
        size_t oopWrong = args.check ? checkOnce(b, pat, oop, count, t, op, root, false) : 0;
        double ipUs = -1;
        size_t ipWrong = 0;
        if (collHasInPlace(kColl)) {
          CollBuffers ip = collBuffers(kColl, b.sendAlloc, b.recvAlloc, count, b.rank, b.nranks, elem, true);
          ipUs = timeCalls(b, ip, count, t, op, root, warm, iters);
          ipWrong = args.check ? checkOnce(b, pat, ip, count, t, op, root, true) : 0;
        }
        totalWrong += oopWrong + ipWrong;
        if (b.rank == 0) {
          printRow(size, count, dataTypeName(t), collReduces(kColl) ? redOpName(op) : "none", root, factor, oopUs,
                   oopWrong, ipUs, ipWrong);
          busSum += size / (oopUs * 1e-6) / 1e9 * factor;
          ++rows;
        }
      }
    }
  }
  if (b.rank == 0) {
    std::printf("# Out of bounds values : %zu %s\n", totalWrong, totalWrong ? "FAILED" : "OK");
    std::printf("# Avg bus bandwidth    : %g\n", rows ? busSum / rows : 0.0);
  }
  CHECK(lockstepCommDestroy(b.comm));
  std::free(b.sendAlloc);
  std::free(b.recvAlloc);
  return totalWrong ? 1 : 0;
}
