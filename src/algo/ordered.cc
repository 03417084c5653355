#include "src/algo/ordered.h"

#include "src/algo/direct.h"
#include "src/algo/ring_math.h"

namespace lockstep {

void orderedAllReduce(int rank, int nranks, size_t count, Schedule* out) {
  if (count == 0) return;
  auto chunk = [&](int c) { return chunkRange(count, nranks, ringMod(c, nranks)); };
  // One lane: the all-gather's sends to the next rank share that link with the reduce-scatter's.
  for (int k = 1; k < nranks; ++k) {
    Range c = chunk(rank + k);
    out->add(Step{Prim::kSend, ringMod(rank + k, nranks), -1, kInput, kOutput, c.offset, 0, c.count, false});
  }
  Range mine = chunk(rank);
  orderedCombine(rank, nranks, mine.offset, mine.offset, mine.count, out);
  if (nranks > 1) {
    const int next = ringNext(rank, nranks), prev = ringPrev(rank, nranks);
    out->add(Step{Prim::kSend, next, -1, kOutput, kOutput, mine.offset, 0, mine.count, false});
    for (int k = 1; k < nranks - 1; ++k) {
      Range c = chunk(rank - k);
      out->add(Step{Prim::kRecvCopySend, next, prev, kOutput, kOutput, c.offset, c.offset, c.count, false});
    }
    Range last = chunk(rank + 1);
    out->add(Step{Prim::kRecv, -1, prev, kOutput, kOutput, last.offset, last.offset, last.count, false});
  }
  out->endLane();  // empty chunks (count < N) are skipped by both ends of each hop
}

void orderedReduceScatter(int rank, int nranks, size_t recvcount, Schedule* out) {
  if (recvcount == 0) return;
  for (int k = 1; k < nranks; ++k) {  // a lane per peer: its block of my input
    int p = (rank + k) % nranks;
    out->add(Step{Prim::kSend, p, -1, kInput, kOutput, static_cast<size_t>(p) * recvcount, 0, recvcount, false});
    out->endLane();
  }
  orderedCombine(rank, nranks, static_cast<size_t>(rank) * recvcount, 0, recvcount, out);
  out->endLane();
}

void orderedReduce(int rank, int nranks, int root, size_t count, Schedule* out) {
  if (count == 0) return;
  if (rank != root) {
    out->add(Step{Prim::kSend, root, -1, kInput, kOutput, 0, 0, count, false});
  } else {
    orderedCombine(rank, nranks, 0, 0, count, out);
  }
  out->endLane();
}

}  // namespace lockstep
