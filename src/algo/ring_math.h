// Rank and chunk arithmetic for rings, header-only and exhaustively tested
// (tests/unit/ring_test.cc, every N from 1 to 64). The tree and Rabenseifner halve with chunkRange too.
#pragma once

#include <cstddef>

namespace lockstep {

struct Range {
  size_t offset;
  size_t count;
};

inline int ringNext(int rank, int nranks) { return rank + 1 == nranks ? 0 : rank + 1; }
inline int ringPrev(int rank, int nranks) { return rank == 0 ? nranks - 1 : rank - 1; }
// (a mod n) for any int a, n > 0.
inline int ringMod(int a, int nranks) {
  int m = a % nranks;
  return m < 0 ? m + nranks : m;
}

// Chunk boundaries fall on multiples of kChunkGrain elements: 16 elements are 16 bytes or more of
// every type, so a chunk of an aligned buffer starts aligned, as the staging slots do. The CUDA
// kernels move 16-byte vectors only where source, staging slot and destination agree modulo 16;
// a boundary one element off sent (N-1)/N of a ring's work down their element-by-element path.
constexpr size_t kChunkGrain = 16;

// Splits `count` elements into `parts` contiguous chunks of whole grains whose sizes differ by at
// most one grain (the first ones get the extra grain); the chunk that holds the end is cut short
// there, and any after it are empty.
inline Range chunkRange(size_t count, int parts, int index) {
  const size_t p = static_cast<size_t>(parts), i = static_cast<size_t>(index);
  const size_t grains = (count + kChunkGrain - 1) / kChunkGrain;
  const size_t base = grains / p, extra = grains % p;
  const size_t first = (i * base + (i < extra ? i : extra)) * kChunkGrain;
  const size_t end = first + (base + (i < extra ? 1 : 0)) * kChunkGrain;
  const size_t lo = first < count ? first : count, hi = end < count ? end : count;
  return Range{lo, hi - lo};
}

}  // namespace lockstep
