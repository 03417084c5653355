// Recursive doubling and Rabenseifner, with the fold for non-power-of-two N (src/algo/fold.h).
//
// Recursive doubling. Terms: a round pairs each of the p ranks with the rank whose position
// differs in bit k. Round k: send my partial result (all of it) to the partner, receive theirs,
// combine. After log2(p) rounds every rank holds the full result. Every rank computes every
// value, so to stay bit-identical each combination puts the lower-positioned group's partial
// first (Step::localFirst). The first round reads the input itself, with no copy into the output
// ahead of its send: on 2 ranks that copy was a third of the steps of an 8-byte call, and its
// send is the call's critical path. A floating avg scales the input where a step reads it
// (src/exec/apply.h), rounding as the peer's scaled send does, so both ends combine equal values.
//
// Rabenseifner. Reduce-scatter by recursive halving: round k (distance p/2, p/4, ..., 1) splits
// my current segment in two; the lower position keeps the lower half, sends the upper, and
// combines the partner's lower half into its own, and vice versa. After log2(p) rounds each rank
// owns 1/p of the buffer, fully reduced (each value computed once, by its owner). The
// all-gather then retraces the rounds backwards, exchanging owned segments. Each round is its
// own phase (Step::phase): a round reads, at other offsets, what the previous one wrote.
#include "src/algo/recursive.h"

#include <vector>

#include "src/algo/fold.h"
#include "src/algo/ring_math.h"

namespace lockstep {
namespace {

Step make(Prim prim, int sendPeer, int recvPeer, uint32_t src, uint32_t dst, size_t offset, size_t count) {
  Step s;
  s.prim = prim;
  s.sendPeer = sendPeer;
  s.recvPeer = recvPeer;
  s.src = src;
  s.dst = dst;
  s.srcOffset = s.dstOffset = offset;
  s.count = count;
  return s;
}

// The even rank of a fold pair: give my input away, get the result back. Two lanes, so the
// result streams back while the input is still going out.
void sitOut(const Fold& f, size_t count, Schedule* out) {
  out->add(make(Prim::kSend, f.partner, -1, kInput, kOutput, 0, count));
  out->endLane();
  out->add(make(Prim::kRecv, -1, f.partner, kInput, kOutput, 0, count));
  out->endLane();
}

}  // namespace

void recursiveDoublingAllReduce(int rank, int nranks, size_t count, Schedule* out) {
  if (count == 0) return;
  Fold f(rank, nranks);
  if (f.sitsOut()) return sitOut(f, count, out);
  const int rounds = f.log2p();
  // Where my contribution is: the fold partner's combined in (lower rank first), in the output;
  // else my input, which the first round reads directly (a single rank copies it: final).
  uint32_t partial = kInput;
  if (f.partner >= 0) {
    out->add(make(Prim::kRecvReduceCopy, -1, f.partner, kInput, kOutput, 0, count));
    partial = kOutput;
  } else if (rounds == 0) {
    Step copy = make(Prim::kCopy, -1, -1, kInput, kOutput, 0, count);
    copy.finish = true;
    out->add(copy);
  }
  for (int k = 0; k < rounds; ++k) {
    int q = f.newRank ^ (1 << k), peer = f.real(q);
    out->add(make(Prim::kSend, peer, -1, partial, kOutput, 0, count));
    Step combine = make(Prim::kRecvReduceCopy, -1, peer, partial, kOutput, 0, count);
    combine.localFirst = f.newRank < q;
    combine.finish = k == rounds - 1;
    out->add(combine);
    partial = kOutput;
  }
  if (f.partner >= 0) out->add(make(Prim::kSend, f.partner, -1, kOutput, kOutput, 0, count));
  out->endLane();
}

void rabenseifnerAllReduce(int rank, int nranks, size_t count, Schedule* out) {
  if (count == 0) return;
  Fold f(rank, nranks);
  if (f.sitsOut()) return sitOut(f, count, out);
  const int rounds = f.log2p();
  uint32_t partial = kInput;  // where my contribution is: raw input until combined
  if (f.partner >= 0) {
    out->add(make(Prim::kRecvReduceCopy, -1, f.partner, kInput, kOutput, 0, count));
    partial = kOutput;
  }
  if (rounds == 0) {
    Step copy = make(Prim::kCopy, -1, -1, kInput, kOutput, 0, count);
    copy.finish = true;
    out->add(copy);
    out->endLane();
    return;
  }
  struct Segment {
    size_t lo, hi;
  };
  std::vector<Segment> kept(rounds), given(rounds);
  size_t lo = 0, hi = count;
  for (int k = 0; k < rounds; ++k) {  // reduce-scatter by recursive halving
    int q = f.newRank ^ (f.p >> (k + 1)), peer = f.real(q);
    size_t mid = lo + chunkRange(hi - lo, 2, 0).count;  // lo is on a grain, so mid is too
    bool lower = f.newRank < q;
    kept[k] = lower ? Segment{lo, mid} : Segment{mid, hi};
    given[k] = lower ? Segment{mid, hi} : Segment{lo, mid};
    Step send = make(Prim::kSend, peer, -1, partial, kOutput, given[k].lo, given[k].hi - given[k].lo);
    send.phase = true;
    out->add(send);
    Step combine = make(Prim::kRecvReduceCopy, -1, peer, partial, kOutput, kept[k].lo, kept[k].hi - kept[k].lo);
    combine.finish = k == rounds - 1;  // my segment is complete: finish it, once
    out->add(combine);
    partial = kOutput;
    lo = kept[k].lo;
    hi = kept[k].hi;
  }
  for (int k = rounds - 1; k >= 0; --k) {  // all-gather by recursive doubling
    int q = f.newRank ^ (f.p >> (k + 1)), peer = f.real(q);
    Step send = make(Prim::kSend, peer, -1, kOutput, kOutput, kept[k].lo, kept[k].hi - kept[k].lo);
    send.phase = true;
    out->add(send);
    out->add(make(Prim::kRecv, -1, peer, kOutput, kOutput, given[k].lo, given[k].hi - given[k].lo));
  }
  if (f.partner >= 0) {
    Step back = make(Prim::kSend, f.partner, -1, kOutput, kOutput, 0, count);
    back.phase = true;
    out->add(back);
  }
  out->endLane();
}

}  // namespace lockstep
