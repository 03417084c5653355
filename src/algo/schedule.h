// A Schedule is what one rank does for one collective: an ordered list of Steps, each a fused
// primitive on a range of elements. Algorithms produce schedules as pure functions; executors
// run them. Nothing here knows about memory kinds or transports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lockstep {

enum class Prim : uint8_t {
  kSend,                // send src
  kRecv,                // recv -> dst
  kRecvReduceSend,      // recv (op) src -> send
  kRecvReduceCopy,      // recv (op) src -> dst
  kRecvReduceCopySend,  // recv (op) src -> dst and send
  kRecvCopySend,        // recv -> dst and send
  kCopy,                // src -> dst
};

const char* primName(Prim p);
inline bool primSends(Prim p) {
  return p == Prim::kSend || p == Prim::kRecvReduceSend || p == Prim::kRecvReduceCopySend || p == Prim::kRecvCopySend;
}
inline bool primRecvs(Prim p) { return p != Prim::kSend && p != Prim::kCopy; }
inline bool primReduces(Prim p) {
  return p == Prim::kRecvReduceSend || p == Prim::kRecvReduceCopy || p == Prim::kRecvReduceCopySend;
}
inline bool primReadsSrc(Prim p) { return p == Prim::kSend || p == Prim::kCopy || primReduces(p); }
inline bool primWritesDst(Prim p) {
  return p == Prim::kRecv || p == Prim::kRecvReduceCopy || p == Prim::kRecvReduceCopySend || p == Prim::kRecvCopySend ||
         p == Prim::kCopy;
}

// Which user buffer a range refers to.
enum class Buf : uint8_t { kInput, kOutput };

struct Step {
  Prim prim;
  int sendPeer = -1;
  int recvPeer = -1;
  Buf src = Buf::kInput;
  Buf dst = Buf::kOutput;
  size_t srcOffset = 0;  // in elements
  size_t dstOffset = 0;  // in elements
  size_t count = 0;      // elements
  // This step produces final values: finish the reduction (avg divides here, exactly once).
  bool finish = false;
};

struct Schedule {
  std::vector<Step> steps;
  void clear() { steps.clear(); }  // keeps capacity: schedules are rebuilt without allocating
};

}  // namespace lockstep
