#include "src/algo/schedule.h"

#include <algorithm>

namespace lockstep {

PeerList peersOf(const Schedule& schedule) {
  PeerList out;
  for (const Step& s : schedule.steps) {
    for (int p : {s.sendPeer, s.recvPeer}) {
      if (p < 0 || out.n == PeerList::kMax) continue;
      if (std::find(out.rank, out.rank + out.n, p) == out.rank + out.n) out.rank[out.n++] = static_cast<int16_t>(p);
    }
  }
  return out;
}

MessageCounts messagesWith(const Schedule& schedule, int peer, size_t sliceElems) {
  MessageCounts out;
  for (const Step& s : schedule.steps) {
    const size_t slices = s.count == 0 ? (s.emptyMessage ? 1 : 0) : (s.count + sliceElems - 1) / sliceElems;
    if (primSends(s.prim) && s.sendPeer == peer) out.sent += slices;
    if (primRecvs(s.prim) && s.recvPeer == peer) out.received += slices;
  }
  return out;
}

const char* primName(Prim p) {
  switch (p) {
    case Prim::kSend:
      return "send";
    case Prim::kRecv:
      return "recv";
    case Prim::kRecvReduceSend:
      return "recvReduceSend";
    case Prim::kRecvReduceCopy:
      return "recvReduceCopy";
    case Prim::kRecvReduceCopySend:
      return "recvReduceCopySend";
    case Prim::kRecvCopySend:
      return "recvCopySend";
    case Prim::kCopy:
      return "copy";
    case Prim::kLocalReduce:
      return "localReduce";
  }
  return "?";
}

}  // namespace lockstep
