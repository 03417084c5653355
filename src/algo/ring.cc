// Ring all-reduce = ring reduce-scatter, then ring all-gather.
//
// Terms. The buffer of `count` elements is cut into N chunks (chunkRange), one per rank. Chunk c
// ends up fully reduced first on rank c. A step is one hop around the ring: every rank sends one
// chunk to its successor and receives one from its predecessor. The executor cuts every chunk
// into slices of at most one transport slot and runs the steps slice by slice, so step s+1 of
// slice j overlaps step s of slice j+1: that is the pipeline.
//
// Reduce-scatter, steps s = 0 .. N-2: rank r sends chunk (r-s-1) and receives chunk (r-s-2).
//   s = 0:       send my input of chunk r-1.
//   0 < s < N-2: receive the partial sum of chunk r-s-1, add my input, send it on.
//   s = N-2:     the chunk received is chunk r itself, now complete: finish it (avg divides),
//                write it to the output, and send it on. This fused step is also the first
//                all-gather step.
// All-gather, steps k = 1 .. N-2: receive finished chunk (r-k), copy it out, send it on; then a
//   last receive of chunk r+1.
// Every value is reduced exactly once, on its owner, then copied: all ranks end bit-identical.
#include "src/algo/ring.h"

#include "src/algo/ring_math.h"

namespace lockstep {

void ringAllReduce(int rank, int nranks, size_t count, Schedule* out) {
  if (count == 0) return;
  auto chunk = [&](int c) { return chunkRange(count, nranks, ringMod(c, nranks)); };
  auto add = [&](Prim prim, int c, bool finish = false) {
    Range r = chunk(c);
    if (r.count == 0) return;  // fewer elements than ranks: both ends of the hop skip it
    Step s;
    s.prim = prim;
    s.sendPeer = primSends(prim) ? ringNext(rank, nranks) : -1;
    s.recvPeer = primRecvs(prim) ? ringPrev(rank, nranks) : -1;
    s.src = Buf::kInput;
    s.dst = Buf::kOutput;
    s.srcOffset = s.dstOffset = r.offset;
    s.count = r.count;
    s.finish = finish;
    out->steps.push_back(s);
  };
  if (nranks == 1) {
    add(Prim::kCopy, 0, /*finish=*/true);
    return;
  }
  add(Prim::kSend, rank - 1);
  for (int s = 1; s < nranks - 1; ++s) add(Prim::kRecvReduceSend, rank - s - 1);
  add(Prim::kRecvReduceCopySend, rank, /*finish=*/true);
  for (int k = 1; k < nranks - 1; ++k) add(Prim::kRecvCopySend, rank - k);
  add(Prim::kRecv, rank + 1);
}

}  // namespace lockstep
