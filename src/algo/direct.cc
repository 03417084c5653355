#include "src/algo/direct.h"

namespace lockstep {

void directP2P(int /*rank*/, int nranks, std::span<const P2POp> ops, Schedule* out) {
  for (int peer = 0; peer < nranks; ++peer) {
    for (bool send : {true, false}) {
      for (const P2POp& op : ops) {
        if (op.peer != peer || op.send != send) continue;
        Step s;
        s.prim = send ? Prim::kSend : Prim::kRecv;
        s.sendPeer = send ? peer : -1;
        s.recvPeer = send ? -1 : peer;
        s.src = s.dst = op.buffer;
        s.count = op.count;
        s.emptyMessage = op.count == 0;
        out->add(s);
      }
      out->endLane(LaneOrder::kStepMajor);
    }
  }
}

void orderedCombine(int rank, int nranks, size_t srcOffset, size_t offset, size_t count, Schedule* out) {
  int q = 0;
  if (nranks >= 2 && rank <= 1) {
    // Ranks 0 and 1 start with their own input and the other's, in one step: in0 (op) in1 read
    // straight from the input, where a copy of it into the output (or the other's into the
    // output, then mine onto it) would be a step and a pass over the output more. The same
    // operands in the same order, so the result is the same (src/exec/apply.h).
    Step s;
    s.prim = Prim::kRecvReduceCopy;
    s.recvPeer = 1 - rank;
    s.src = kInput;
    s.srcOffset = srcOffset;
    s.dst = kOutput;
    s.dstOffset = offset;
    s.count = count;
    s.localFirst = rank == 0;
    s.finish = nranks == 2;
    out->add(s);
    q = 2;
  }
  for (; q < nranks; ++q) {
    Step s;
    s.count = count;
    s.dst = kOutput;
    s.dstOffset = offset;
    s.finish = q == nranks - 1;
    if (q == rank) {
      // My own contribution, from the input (a floating avg scales it here).
      s.prim = q == 0 ? Prim::kCopy : Prim::kLocalReduce;
      s.src = kInput;
      s.srcOffset = srcOffset;
    } else {
      // Rank q's, as it arrives (its sender scaled it): the partial so far comes first.
      s.prim = q == 0 ? Prim::kRecv : Prim::kRecvReduceCopy;
      s.recvPeer = q;
      s.src = kOutput;
      s.srcOffset = offset;
      s.localFirst = true;
    }
    out->add(s);
  }
}

void directAllReduce(int rank, int nranks, size_t count, Schedule* out) {
  if (count == 0) return;
  for (int k = 1; k < nranks; ++k) {  // a lane per peer: my input, to everyone
    out->add(Step{Prim::kSend, (rank + k) % nranks, -1, kInput, kOutput, 0, 0, count, false});
    out->endLane();
  }
  orderedCombine(rank, nranks, 0, 0, count, out);
  out->endLane();
}

void directAllToAll(int rank, int nranks, size_t count, Schedule* out) {
  if (count == 0) return;
  const size_t mine = static_cast<size_t>(rank) * count;
  out->add(Step{Prim::kCopy, -1, -1, kInput, kOutput, mine, mine, count, false});
  out->endLane();
  for (int k = 1; k < nranks; ++k) {
    // Start with the neighbours and move outwards, so that not every rank hits rank 0 first.
    int to = (rank + k) % nranks, from = (rank - k + nranks) % nranks;
    out->add(Step{Prim::kSend, to, -1, kInput, kOutput, static_cast<size_t>(to) * count, 0, count, false});
    out->endLane();
    out->add(Step{Prim::kRecv, -1, from, kInput, kOutput, 0, static_cast<size_t>(from) * count, count, false});
    out->endLane();
  }
}

}  // namespace lockstep
