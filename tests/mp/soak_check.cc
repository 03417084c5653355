// Soak: a long random sequence of collectives (kind, dtype, op, count, root, in place or not,
// blocking or non-blocking, all drawn from one seed shared by every rank), every result checked.
//   soak_check --ops 10000 [--seed S] [--max-count N]
// Exits 1 on any wrong element, 2 on an API error.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "perf/collectives.h"

using namespace lockstep;
using perf::Coll;

int main(int argc, char** argv) {
  long ops = 10000, maxCount = 100000;
  unsigned seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--ops") ops = std::atol(argv[i + 1]);
    if (k == "--seed") seed = static_cast<unsigned>(std::atol(argv[i + 1]));
    if (k == "--max-count") maxCount = std::atol(argv[i + 1]);
  }
  lockstepComm_t comm;
  if (lockstepCommInitFromEnv(&comm) != lockstepSuccess) {
    std::fprintf(stderr, "init: %s\n", lockstepGetLastError(nullptr));
    return 2;
  }
  int rank, n;
  lockstepCommUserRank(comm, &rank);
  lockstepCommCount(comm, &n);
  std::mt19937 rng(seed);  // the same draws on every rank
  std::vector<char> a, b;
  size_t wrong = 0, elements = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (long k = 0; k < ops; ++k) {
    Coll c = perf::kAllColls[rng() % std::size(perf::kAllColls)];
    auto type = static_cast<lockstepDataType_t>(rng() % lockstepNumTypes);
    auto op = perf::collReduces(c) ? static_cast<lockstepRedOp_t>(rng() % lockstepNumOps) : lockstepSum;
    // Mostly small (latency paths), sometimes large (many slices).
    size_t count = rng() % 8 == 0 ? rng() % maxCount : rng() % 3000;
    if (c == Coll::kReduceScatter || c == Coll::kAllGather || c == Coll::kAllToAll) count /= n;
    int root = static_cast<int>(rng() % n);
    bool inPlace = perf::collHasInPlace(c) && rng() % 2;
    bool nonBlocking = rng() % 4 == 0 && c != Coll::kSendRecv;
    Pattern pat(type, op, n);
    size_t elem = dataTypeSize(type);
    size_t bytes = std::max(perf::sendElems(c, count, n), perf::recvElems(c, count, n)) * elem + 8;
    a.assign(bytes, 0);
    b.assign(bytes, 0);
    auto bufs = perf::collBuffers(c, a.data(), b.data(), count, rank, n, elem, inPlace);
    perf::fillInput(c, pat, bufs.send, count, rank, n, root);
    lockstepRequest_t req = nullptr;
    lockstepResult_t r =
        perf::runColl(c, bufs.send, bufs.recv, count, type, op, root, comm, nonBlocking ? &req : nullptr);
    if (r == lockstepSuccess && req) r = lockstepWait(&req, -1);
    if (r != lockstepSuccess) {
      std::fprintf(stderr, "soak rank %d op %ld (%s %s %s count %zu root %d): %s\n", rank, k, perf::collName(c),
                   dataTypeName(type), redOpName(op), count, root, lockstepGetLastError(nullptr));
      return 2;
    }
    size_t w = perf::countWrong(c, pat, bufs.recv, count, rank, n, root);
    if (w) {
      std::fprintf(stderr, "soak rank %d op %ld: %zu wrong in %s %s %s count %zu root %d %s\n", rank, k, w,
                   perf::collName(c), dataTypeName(type), redOpName(op), count, root, inPlace ? "in place" : "");
    }
    wrong += w;
    elements += count;
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  lockstepCommDestroy(comm);
  if (rank == 0) {
    std::printf("soak: %ld random collectives on %d ranks (%zu elements) in %.1f s, %zu wrong\n", ops, n, elements, s,
                wrong);
  }
  return wrong ? 1 : 0;
}
