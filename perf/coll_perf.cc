// The *_perf drivers: nccl-tests' table for one collective, chosen at build time
// (LOCKSTEP_PERF_COLL). Start under a launcher:
//   lockstep-run -n 2 allreduce_perf -b 8 -e 256M -f 2
// or with ranks as threads of one process (-T, as nccl-tests' -t): on one GPU, their cuda_ipc
// kernels then run side by side, where kernels of separate processes take turns (without MPS):
//   allreduce_perf -T 2 -m device -b 256M -e 256M
// busbw uses nccl-tests' factor per collective. Exits 1 if any value is wrong.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "kernels/dtype.h"
#include "perf/collectives.h"
#include "perf/device_memory.h"
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

struct Bench {
  lockstepComm_t comm;
  int rank, nranks;
  BenchMemory* mem;
};

// Mean time per call in us, averaged over ranks (as nccl-tests does).
double timeCalls(const Bench& b, CollBuffers bufs, size_t count, lockstepDataType_t t, lockstepRedOp_t op, int root,
                 int warmup, int iters) {
  void* s = b.mem->stream();
  for (int i = 0; i < warmup; ++i) CHECK(runColl(kColl, bufs.send, bufs.recv, count, t, op, root, b.comm, nullptr, s));
  b.mem->sync();
  CHECK(lockstepBarrier(b.comm, nullptr));
  auto t0 = std::chrono::steady_clock::now();
  // On a stream, the calls are posted back to back and the time ends when the stream has run
  // them all, as in nccl-tests.
  for (int i = 0; i < iters; ++i) CHECK(runColl(kColl, bufs.send, bufs.recv, count, t, op, root, b.comm, nullptr, s));
  b.mem->sync();
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / iters;
  double sum = 0;
  CHECK(lockstepAllReduce(&us, &sum, 1, lockstepFloat64, lockstepSum, b.comm, nullptr));
  return sum / b.nranks;
}

// The input pattern, written through the host shadows (and copied to the device buffers).
void fill(const Bench& b, const Pattern& pat, CollBuffers bufs, size_t count, int root, size_t span) {
  fillInput(kColl, pat, b.mem->host(bufs.send), count, b.rank, b.nranks, root);
  b.mem->upload(span);
}

// One call on fresh input; wrong elements summed over all ranks. `span`: the bytes of each
// allocation the call touches.
size_t checkOnce(const Bench& b, const Pattern& pat, CollBuffers bufs, size_t count, lockstepDataType_t t,
                 lockstepRedOp_t op, int root, size_t span) {
  size_t elem = dataTypeSize(t);
  // Every output element starts as a value no pattern produces everywhere (NaN for floats), in
  // place too: the in-place check once ran on the out-of-place check's correct result, so a call
  // that wrote nothing passed. The input is written over it (in place, it lies inside recv).
  std::memset(b.mem->host(bufs.recv), 0xFF, recvElems(kColl, count, b.nranks) * elem);
  fill(b, pat, bufs, count, root, span);
  CHECK(runColl(kColl, bufs.send, bufs.recv, count, t, op, root, b.comm, nullptr, b.mem->stream()));
  b.mem->sync();
  b.mem->download(span);
  uint64_t wrong = countWrong(kColl, pat, b.mem->host(bufs.recv), count, b.rank, b.nranks, root), total = 0;
  CHECK(lockstepAllReduce(&wrong, &total, 1, lockstepUint64, lockstepSum, b.comm, nullptr));
  return total;
}

// Set by a rank whose sweep held no size it could run (exit status 2).
std::atomic<bool> gNothingMeasured{false};

// One rank's sweep: a process under a launcher (threadRank -1), or thread `threadRank` of -T.
// Returns the wrong values this rank's checks counted over all ranks.
size_t runRank(Args args, const std::string& program, int threadRank, const lockstepUniqueId* id) {
  // nccl-tests' size is the larger of the two buffers, so maxBytes covers every call. Device
  // memory comes first: CUDA is initialised before the communicator, as in a trainer.
  BenchMemory mem(args.deviceMemory, args.maxBytes + 64, threadRank);
  Bench b;
  b.mem = &mem;
  if (threadRank < 0)
    CHECK(lockstepCommInitFromEnv(&b.comm));
  else
    CHECK(lockstepCommInitRank(&b.comm, args.threads, *id, threadRank));
  CHECK(lockstepCommUserRank(b.comm, &b.rank));
  CHECK(lockstepCommCount(b.comm, &b.nranks));
  const int root = collRooted(kColl) ? args.root : -1;
  if (collRooted(kColl) && (root < 0 || root >= b.nranks)) {
    std::fprintf(stderr, "%s: root %d is outside [0, %d)\n", program.c_str(), root, b.nranks);
    std::exit(2);
  }
  if (!collReduces(kColl)) args.ops = {lockstepSum};
  const double factor = busFactor(kColl, b.nranks);
  if (b.rank == 0) {
    printHeader(("lockstep " + std::string(collName(kColl))).c_str(), b.nranks, args);
    if (mem.device()) std::printf("# memory: %s (rank 0), stream-ordered\n", mem.describe().c_str());
  }

  size_t totalWrong = 0;
  double busSum = 0;
  int rows = 0, measured = 0;  // rows: rank 0's; measured: every rank's
  for (lockstepDataType_t t : args.types) {
    const size_t elem = dataTypeSize(t);
    for (lockstepRedOp_t op : args.ops) {
      Pattern pat(t, op, b.nranks);
      if (args.check && b.rank == 0 && collReduces(kColl) && !pat.informative()) {
        std::printf(
            "# note: %s %s on %d ranks: no input scales exactly to its share, so every input is 0 and "
            "the check below cannot tell a wrong result\n",
            dataTypeName(t), redOpName(op), b.nranks);
      }
      for (size_t bytes : sweepSizes(args, elem)) {
        size_t count = countForSize(kColl, bytes, b.nranks, elem);
        if (count == 0) continue;
        ++measured;
        size_t size = sizeBytes(kColl, count, b.nranks, elem);
        int iters = itersFor(args, size), warm = warmupFor(args, iters);
        const size_t span = size + 64;
        CollBuffers oop = collBuffers(kColl, mem.send(), mem.recv(), count, b.rank, b.nranks, elem, false);
        fill(b, pat, oop, count, root, span);
        double oopUs = timeCalls(b, oop, count, t, op, root, warm, iters);
        size_t oopWrong = args.check ? checkOnce(b, pat, oop, count, t, op, root, span) : 0;
        double ipUs = -1;
        size_t ipWrong = 0;
        if (collHasInPlace(kColl)) {
          CollBuffers ip = collBuffers(kColl, mem.send(), mem.recv(), count, b.rank, b.nranks, elem, true);
          ipUs = timeCalls(b, ip, count, t, op, root, warm, iters);
          ipWrong = args.check ? checkOnce(b, pat, ip, count, t, op, root, span) : 0;
        }
        totalWrong += oopWrong + ipWrong;
        if (b.rank == 0) {
          printRow(size, count, dataTypeName(t), collReduces(kColl) ? redOpName(op) : "none", root, factor, oopUs,
                   oopWrong, ipUs, ipWrong, args.check);
          // As nccl-tests: the average is over the out-of-place and the in-place figures.
          for (double us : {oopUs, ipUs}) {
            if (us <= 0) continue;  // no in-place form
            busSum += size / (us * 1e-6) / 1e9 * factor;
            ++rows;
          }
        }
      }
    }
  }
  if (b.rank == 0) {
    if (rows == 0) std::printf("# no size from -b to -e gives every rank an element: nothing was measured\n");
    if (args.check) {
      std::printf("# Out of bounds values : %zu %s\n", totalWrong, totalWrong ? "FAILED" : "OK");
    } else {
      std::printf("# Out of bounds values : N/A (-c 0: results not checked)\n");
    }
    std::printf("# Avg bus bandwidth    : %g\n", rows ? busSum / rows : 0.0);
    std::fflush(stdout);
  }
  // Every rank exits 1 on a wrong value, and a launcher stops the job when the first rank exits
  // with an error: without this, rank 0 could be stopped before it printed the summary above.
  CHECK(lockstepBarrier(b.comm, nullptr));
  CHECK(lockstepCommDestroy(b.comm));
  if (measured == 0) gNothingMeasured = true;  // asked for nothing measurable: not a pass
  return totalWrong;
}

}  // namespace

int main(int argc, char** argv) {
  // As the binary is called (reduce_scatter_perf, not the collective's short name).
  const char* slash = std::strrchr(argv[0], '/');
  const std::string program = slash ? slash + 1 : argv[0];
  Args args = parseArgs(argc, argv, program.c_str());
  // -a forces an algorithm through LOCKSTEP_ALGO, as a user would (read once, at init).
  if (args.algo != "default") {
    Algorithm a;
    const bool known = parseAlgorithm(args.algo, &a);
    if (!known || !implements(a, collKind(kColl))) {
      std::string available;
      for (int i = 0; i < static_cast<int>(Algorithm::kCount); ++i) {
        if (implements(static_cast<Algorithm>(i), collKind(kColl))) {
          available += std::string(available.empty() ? "" : ", ") + algorithmName(static_cast<Algorithm>(i));
        }
      }
      std::fprintf(stderr, "%s: %s algorithm %s (available: %s)\n", program.c_str(),
                   known ? (std::string(collName(kColl)) + " has no").c_str() : "unknown", args.algo.c_str(),
                   available.c_str());
      return 2;
    }
    setenv("LOCKSTEP_ALGO", (std::string(opKindName(collKind(kColl))) + "=" + args.algo).c_str(), 1);
  } else if (const char* forced = std::getenv("LOCKSTEP_ALGO"); forced && *forced) {
    args.algo = std::string("LOCKSTEP_ALGO=") + forced;
  } else {
    args.algo = "tuned";
  }
  // The header says what the library will do, not only what -a asked for.
  if (const char* d = std::getenv("LOCKSTEP_DETERMINISTIC"); d && std::strcmp(d, "1") == 0) {
    args.algo +=
        " under LOCKSTEP_DETERMINISTIC=1 (a fixed reduction order: the INFO log names the algorithm that runs)";
  }
  if (args.threads == 0) {
    const size_t wrong = runRank(args, program, -1, nullptr);
    return gNothingMeasured ? 2 : wrong ? 1 : 0;
  }
  lockstepUniqueId id;
  CHECK(lockstepGetUniqueId(&id));
  std::vector<size_t> wrong(args.threads, 0);
  std::vector<std::thread> ranks;
  for (int r = 0; r < args.threads; ++r) ranks.emplace_back([&, r] { wrong[r] = runRank(args, program, r, &id); });
  for (auto& t : ranks) t.join();
  return gNothingMeasured ? 2 : wrong[0] ? 1 : 0;
}
