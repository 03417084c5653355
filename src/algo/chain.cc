// Broadcast and reduce as chains that follow the ring, pipelined by slices.
//
// Broadcast: root -> root+1 -> ... -> root-1. The root sends its input (and copies it to its own
// output); each middle rank receives a slice, copies it out and forwards it at once; the last
// rank only receives. A slice is forwarded as soon as it lands, so for large messages the chain
// costs one link's bandwidth plus N-1 slice latencies.
//
// Reduce: the same chain in the same direction, ending at the root: root+1 sends its input; each
// next rank receives the partial result, combines its input and forwards; the root combines last
// and finishes (avg divides once). Order of combination: x[root+1], then x[root+2], ..., x[root].
#include "src/algo/chain.h"

#include "src/algo/ring_math.h"

namespace lockstep {

void chainBroadcast(int rank, int nranks, int root, size_t count, Schedule* out) {
  if (count == 0) return;
  const int pos = ringMod(rank - root, nranks);  // 0 = root, nranks-1 = end of the chain
  const int next = ringNext(rank, nranks), prev = ringPrev(rank, nranks);
  if (pos == 0) {
    out->add(Step{Prim::kCopy, -1, -1, kInput, kOutput, 0, 0, count, false});
    if (nranks > 1) out->add(Step{Prim::kSend, next, -1, kInput, kOutput, 0, 0, count, false});
  } else if (pos < nranks - 1) {
    out->add(Step{Prim::kRecvCopySend, next, prev, kInput, kOutput, 0, 0, count, false});
  } else {
    out->add(Step{Prim::kRecv, -1, prev, kInput, kOutput, 0, 0, count, false});
  }
  out->endLane();
}

void chainReduce(int rank, int nranks, int root, size_t count, Schedule* out) {
  if (count == 0) return;
  const int pos = ringMod(rank - root - 1, nranks);  // 0 = start of the chain, nranks-1 = root
  const int next = ringNext(rank, nranks), prev = ringPrev(rank, nranks);
  if (nranks == 1) {
    out->add(Step{Prim::kCopy, -1, -1, kInput, kOutput, 0, 0, count, true});
  } else if (pos == 0) {
    out->add(Step{Prim::kSend, next, -1, kInput, kOutput, 0, 0, count, false});
  } else if (pos < nranks - 1) {
    out->add(Step{Prim::kRecvReduceSend, next, prev, kInput, kOutput, 0, 0, count, false});
  } else {
    out->add(Step{Prim::kRecvReduceCopy, -1, prev, kInput, kOutput, 0, 0, count, true});
  }
  out->endLane();
}

}  // namespace lockstep
