#include "src/algo/ring_order.h"

#include <string>

#include "src/core/errors.h"

namespace lockstep {

RingOrder::RingOrder(std::vector<int> rankAtPosition) : rankAt(std::move(rankAtPosition)) {
  const int n = size();
  positionOf.assign(rankAt.size(), -1);
  for (int p = 0; p < n; ++p) {
    const int r = rankAt[p];
    if (r < 0 || r >= n || positionOf[r] >= 0) {
      throw InternalError("ring order is not a permutation (rank " + std::to_string(r) + " at position " +
                          std::to_string(p) + ")");
    }
    positionOf[r] = p;
    identity_ = identity_ && r == p;
  }
}

RingOrder RingOrder::identity(int nranks) {
  std::vector<int> v(static_cast<size_t>(nranks));
  for (int i = 0; i < nranks; ++i) v[i] = i;
  return RingOrder(std::move(v));
}

void toRankSpace(const RingOrder& order, OpKind kind, size_t blockCount, Schedule* schedule) {
  if (order.isIdentity()) return;
  // Block c of the position-space layout is block rankAt[c] of the user's buffer.
  auto block = [&](size_t offset) {
    const size_t c = offset / blockCount;
    return static_cast<size_t>(order.rankAt[c]) * blockCount + offset % blockCount;
  };
  for (Step& s : schedule->steps) {
    if (s.sendPeer >= 0) s.sendPeer = order.rankAt[s.sendPeer];
    if (s.recvPeer >= 0) s.recvPeer = order.rankAt[s.recvPeer];
    if (blockCount == 0) continue;
    // Only the buffer laid out in N blocks is translated: the reduce-scatter's input (read by
    // sends, reductions and copies) and the all-gather's output (written by receives and copies).
    const bool readsSrc = s.prim != Prim::kRecv && s.prim != Prim::kRecvCopySend;
    const bool writesDst = primRecvs(s.prim) || s.prim == Prim::kCopy;
    if (kind == OpKind::kReduceScatter && s.src == kInput && readsSrc) s.srcOffset = block(s.srcOffset);
    if (kind == OpKind::kAllGather && s.dst == kOutput && writesDst && s.prim != Prim::kRecvReduceSend) {
      s.dstOffset = block(s.dstOffset);
    }
  }
}

}  // namespace lockstep
