// Ring all-reduce = ring reduce-scatter, then ring all-gather.
//
// Terms. The buffer is cut into N chunks, one per rank. Chunk c ends up fully reduced first on
// rank c. A step is one hop around the ring: every rank sends one chunk to its successor and
// receives one from its predecessor. The executor cuts every chunk into slices of at most one
// transport slot and runs the steps slice by slice (src/algo/slicing.h): that is the pipeline.
//
// Reduce-scatter, steps s = 0 .. N-2: rank r sends chunk (r-s-1) and receives chunk (r-s-2).
//   s = 0:       send my input of chunk r-1.
//   0 < s < N-2: receive the partial result of chunk r-s-1, combine my input, send it on.
//   s = N-2:     the chunk received is chunk r itself, now complete: finish it (avg divides),
//                write it out. In the all-reduce this fused step also sends it on, as the first
//                all-gather step.
// All-gather, steps k = 1 .. N-2: receive finished chunk (r-k), copy it out, send it on; then a
//   last receive of chunk r+1.
// Every value is reduced exactly once, on its owner, then copied: all ranks end bit-identical.
// Chunks that are empty (count < N) are skipped by both ends of their hops.
#include "src/algo/ring.h"

#include "src/algo/ring_math.h"

namespace lockstep {
namespace {

// Where chunk c lives in the input and output, for each collective.
struct Layout {
  enum Kind { kAllReduce, kReduceScatter, kAllGather } kind;
  int nranks;
  size_t count;  // all-reduce: whole buffer; reduce-scatter / all-gather: one block

  Range chunk(int c) const {
    c = ringMod(c, nranks);
    if (kind == kAllReduce) return chunkRange(count, nranks, c);
    return Range{static_cast<size_t>(c) * count, count};
  }
};

class RingBuilder {
 public:
  RingBuilder(int rank, const Layout& layout, Schedule* out) : rank_(rank), layout_(layout), out_(out) {}

  // prim on chunk c; src is read from the input, dst written to the output.
  void add(Prim prim, int c, bool finish = false) {
    Range r = layout_.chunk(c);
    if (r.count == 0) return;
    Step s;
    s.prim = prim;
    s.sendPeer = primSends(prim) ? ringNext(rank_, layout_.nranks) : -1;
    s.recvPeer = primRecvs(prim) ? ringPrev(rank_, layout_.nranks) : -1;
    s.srcOffset = r.offset;
    // A reduce-scatter output holds only this rank's block.
    s.dstOffset = layout_.kind == Layout::kReduceScatter ? 0 : r.offset;
    s.count = r.count;
    s.finish = finish;
    out_->add(s);
  }

  // The all-gather's own block: copy it into place and send it, both from the input.
  void sendOwnBlock() {
    Range r = layout_.chunk(rank_);
    if (r.count == 0) return;
    Step copy{Prim::kCopy, -1, -1, kInput, kOutput, 0, r.offset, r.count, false};
    Step send{Prim::kSend, ringNext(rank_, layout_.nranks), -1, kInput, kOutput, 0, 0, r.count, false};
    out_->add(copy);
    if (layout_.nranks > 1) out_->add(send);
  }

 private:
  int rank_;
  Layout layout_;
  Schedule* out_;
};

}  // namespace

void ringAllReduce(int rank, int nranks, size_t count, Schedule* out) {
  RingBuilder b(rank, Layout{Layout::kAllReduce, nranks, count}, out);
  if (nranks == 1) {
    b.add(Prim::kCopy, 0, /*finish=*/true);
  } else {
    b.add(Prim::kSend, rank - 1);
    for (int s = 1; s < nranks - 1; ++s) b.add(Prim::kRecvReduceSend, rank - s - 1);
    b.add(Prim::kRecvReduceCopySend, rank, /*finish=*/true);
    for (int k = 1; k < nranks - 1; ++k) b.add(Prim::kRecvCopySend, rank - k);
    b.add(Prim::kRecv, rank + 1);
  }
  out->endLane();
}

void ringReduceScatter(int rank, int nranks, size_t recvcount, Schedule* out) {
  RingBuilder b(rank, Layout{Layout::kReduceScatter, nranks, recvcount}, out);
  if (nranks == 1) {
    b.add(Prim::kCopy, 0, /*finish=*/true);
  } else {
    b.add(Prim::kSend, rank - 1);
    for (int s = 1; s < nranks - 1; ++s) b.add(Prim::kRecvReduceSend, rank - s - 1);
    b.add(Prim::kRecvReduceCopy, rank, /*finish=*/true);
  }
  out->endLane();
}

void ringAllGather(int rank, int nranks, size_t sendcount, Schedule* out) {
  RingBuilder b(rank, Layout{Layout::kAllGather, nranks, sendcount}, out);
  b.sendOwnBlock();
  for (int k = 1; k < nranks - 1; ++k) b.add(Prim::kRecvCopySend, rank - k);
  if (nranks > 1) b.add(Prim::kRecv, rank + 1);
  out->endLane();
}

}  // namespace lockstep
