// Rank and chunk arithmetic for rings, header-only and exhaustively tested
// (tests/unit/ring_math_test.cc, every N from 1 to 64).
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

// Splits `count` elements into `parts` contiguous chunks whose sizes differ by at most one (the
// first count % parts chunks get the extra element).
inline Range chunkRange(size_t count, int parts, int index) {
  size_t p = static_cast<size_t>(parts), i = static_cast<size_t>(index);
  size_t base = count / p, extra = count % p;
  return Range{i * base + (i < extra ? i : extra), base + (i < extra ? 1 : 0)};
}

}  // namespace lockstep
