// Folding N ranks onto a power of two, for the recursive algorithms (header-only, tested for
// every N from 1 to 64 in tests/unit/algorithms_test.cc).
//
// With p the largest power of two <= N and r = N - p, the first 2r ranks pair up: each even rank
// 2i hands its data to the odd rank 2i+1 and sits out; the odd ranks and the ranks >= 2r, p of
// them, renumbered 0..p-1, run the power-of-two algorithm; the odd ranks hand the result back.
#pragma once

namespace lockstep {

struct Fold {
  int p = 1;         // the power of two
  int r = 0;         // ranks folded away
  int newRank = 0;   // this rank among the p, or -1 if it sits out
  int partner = -1;  // its fold partner (the odd rank for an even one and back), or -1

  Fold(int rank, int nranks) {
    while (p * 2 <= nranks) p *= 2;
    r = nranks - p;
    if (rank < 2 * r) {
      partner = rank % 2 ? rank - 1 : rank + 1;
      newRank = rank % 2 ? rank / 2 : -1;
    } else {
      newRank = rank - r;
    }
  }
  bool sitsOut() const { return newRank < 0; }
  // The real rank of position q among the p.
  int real(int q) const { return q < r ? 2 * q + 1 : q + r; }
  int log2p() const {
    int m = 0;
    while ((1 << m) < p) ++m;
    return m;
  }
};

}  // namespace lockstep
