// A rank program for the determinism tests: reduces random floats (every rank's own seed, values
// spread over many binades so that the summation order shows in the last bits) with all-reduce,
// reduce-scatter and reduce, and prints one hash of every result. Start it under lockstep-run.
//
//   hash_check [--count N]
//
// Checks, exiting 1 on failure:
//   - every rank's all-reduce result is bit-identical (the hashes are all-gathered and compared);
//   - with LOCKSTEP_DETERMINISTIC=1, the reduce-scatter blocks and the reduce root's result are
//     bit-identical to the matching parts of the all-reduce, and a prefix of the buffer reduces
//     to the same bits as the whole (the order does not depend on the size).
// Rank 0 prints "hash_check: hash <16 hex digits>": the same under every forced algorithm and slot
// size in deterministic mode.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "lockstep/lockstep.h"

namespace {

int rank = 0, nranks = 1;

int fail(lockstepResult_t r, const char* what) {
  std::fprintf(stderr, "hash_check rank %d: %s: %s: %s\n", rank, what, lockstepGetErrorString(r),
               lockstepGetLastError(nullptr));
  return 2;
}

uint64_t fnv(const void* p, size_t bytes, uint64_t h = 1469598103934665603ull) {
  auto* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ c[i]) * 1099511628211ull;
  return h;
}

std::vector<float> randomInput(size_t count, int seedRank) {
  std::mt19937_64 gen(0x5eed + static_cast<uint64_t>(seedRank));
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exp(-12, 12);
  std::vector<float> v(count);
  for (auto& x : v) x = std::ldexp(mant(gen), exp(gen));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  size_t count = 1 << 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--count") count = std::strtoull(argv[i + 1], nullptr, 10);
  }
  lockstepComm_t comm;
  lockstepResult_t r = lockstepCommInitFromEnv(&comm);
  if (r != lockstepSuccess) return fail(r, "init");
  lockstepCommUserRank(comm, &rank);
  lockstepCommCount(comm, &nranks);
  const char* det = std::getenv("LOCKSTEP_DETERMINISTIC");
  const bool deterministic = det && std::string(det) == "1";
  count -= count % static_cast<size_t>(nranks);  // reduce-scatter blocks tile the buffer
  const size_t block = count / static_cast<size_t>(nranks);
  const std::vector<float> input = randomInput(count, rank);
  int bad = 0;

  uint64_t hash = 1469598103934665603ull;
  std::vector<float> sum(count), avg(count);
  for (auto [op, out] : {std::pair{lockstepSum, &sum}, std::pair{lockstepAvg, &avg}}) {
    r = lockstepAllReduce(input.data(), out->data(), count, lockstepFloat32, op, comm, nullptr);
    if (r != lockstepSuccess) return fail(r, "allreduce");
    hash = fnv(out->data(), count * sizeof(float), hash);
  }
  // In place gives the same bits as out of place.
  std::vector<float> inPlace = input;
  r = lockstepAllReduce(inPlace.data(), inPlace.data(), count, lockstepFloat32, lockstepSum, comm, nullptr);
  if (r != lockstepSuccess) return fail(r, "allreduce in place");
  if (std::memcmp(inPlace.data(), sum.data(), count * sizeof(float)) != 0) {
    std::fprintf(stderr, "hash_check rank %d: in-place all-reduce differs from out-of-place\n", rank);
    bad = 1;
  }

  // Every rank holds the same bits.
  std::vector<uint64_t> hashes(static_cast<size_t>(nranks));
  r = lockstepAllGather(&hash, hashes.data(), 1, lockstepUint64, comm, nullptr);
  if (r != lockstepSuccess) return fail(r, "allgather");
  for (int q = 0; q < nranks; ++q) {
    if (hashes[static_cast<size_t>(q)] != hash) {
      std::fprintf(stderr, "hash_check rank %d: rank %d's all-reduce result differs from mine\n", rank, q);
      bad = 1;
    }
  }

  std::vector<float> blockOut(block), reduced(count);
  r = lockstepReduceScatter(input.data(), blockOut.data(), block, lockstepFloat32, lockstepSum, comm, nullptr);
  if (r != lockstepSuccess) return fail(r, "reducescatter");
  const int root = nranks / 2;
  r = lockstepReduce(input.data(), reduced.data(), count, lockstepFloat32, lockstepSum, root, comm, nullptr);
  if (r != lockstepSuccess) return fail(r, "reduce");
  const size_t prefix = count / 3 + 1;
  std::vector<float> part(prefix);
  r = lockstepAllReduce(input.data(), part.data(), prefix, lockstepFloat32, lockstepSum, comm, nullptr);
  if (r != lockstepSuccess) return fail(r, "allreduce prefix");
  if (deterministic) {
    if (std::memcmp(blockOut.data(), sum.data() + static_cast<size_t>(rank) * block, block * sizeof(float)) != 0) {
      std::fprintf(stderr, "hash_check rank %d: reduce-scatter block differs from the all-reduce\n", rank);
      bad = 1;
    }
    if (rank == root && std::memcmp(reduced.data(), sum.data(), count * sizeof(float)) != 0) {
      std::fprintf(stderr, "hash_check rank %d: reduce differs from the all-reduce\n", rank);
      bad = 1;
    }
    if (std::memcmp(part.data(), sum.data(), prefix * sizeof(float)) != 0) {
      std::fprintf(stderr, "hash_check rank %d: a prefix all-reduce differs from the whole\n", rank);
      bad = 1;
    }
  }
  r = lockstepCommDestroy(comm);
  if (r != lockstepSuccess) return fail(r, "destroy");
  if (rank == 0) std::printf("hash_check: hash %016llx\n", static_cast<unsigned long long>(hash));
  return bad;
}
