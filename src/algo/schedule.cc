#include "src/algo/schedule.h"

namespace lockstep {

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
