#include "src/algo/registry.h"

#include "src/algo/chain.h"
#include "src/algo/direct.h"
#include "src/algo/ordered.h"
#include "src/algo/recursive.h"
#include "src/algo/ring.h"
#include "src/algo/tree.h"

namespace lockstep {

const char* opKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kAllReduce:
      return "allreduce";
    case OpKind::kReduceScatter:
      return "reducescatter";
    case OpKind::kAllGather:
      return "allgather";
    case OpKind::kBroadcast:
      return "broadcast";
    case OpKind::kReduce:
      return "reduce";
    case OpKind::kSend:
      return "send";
    case OpKind::kRecv:
      return "recv";
    case OpKind::kAllToAll:
      return "alltoall";
    case OpKind::kBarrier:
      return "barrier";
    case OpKind::kSplit:
      return "split";
  }
  return "?";
}

namespace {
constexpr const char* kNames[] = {"ring", "tree", "recursive_doubling", "rabenseifner", "direct", "chain", "ordered"};
}

const char* algorithmName(Algorithm a) {
  auto i = static_cast<size_t>(a);
  return i < std::size(kNames) ? kNames[i] : "?";
}

bool parseAlgorithm(const std::string& name, Algorithm* out) {
  for (size_t i = 0; i < std::size(kNames); ++i) {
    if (name == kNames[i]) return *out = static_cast<Algorithm>(i), true;
  }
  if (name == "rd") return *out = Algorithm::kRecursiveDoubling, true;
  return false;
}

bool implements(Algorithm a, OpKind kind) {
  switch (kind) {
    case OpKind::kAllReduce:
    case OpKind::kBarrier:
      return a == Algorithm::kRing || a == Algorithm::kTree || a == Algorithm::kRecursiveDoubling ||
             a == Algorithm::kRabenseifner || a == Algorithm::kDirect || a == Algorithm::kOrdered;
    case OpKind::kReduceScatter:
      return a == Algorithm::kRing || a == Algorithm::kOrdered;
    case OpKind::kAllGather:
      return a == Algorithm::kRing;
    case OpKind::kBroadcast:
      return a == Algorithm::kChain || a == Algorithm::kTree;
    case OpKind::kReduce:
      return a == Algorithm::kChain || a == Algorithm::kTree || a == Algorithm::kOrdered;
    case OpKind::kAllToAll:
    case OpKind::kSend:
    case OpKind::kRecv:
      return a == Algorithm::kDirect;
    case OpKind::kSplit:
      return false;
  }
  return false;
}

int maxRanks(Algorithm a, OpKind kind) {
  if (a == Algorithm::kDirect && (kind == OpKind::kAllReduce || kind == OpKind::kBarrier)) return 64;
  return 1 << 30;
}

void buildSchedule(Algorithm a, OpKind kind, int rank, int n, size_t count, int root, Schedule* out) {
  switch (kind) {
    case OpKind::kAllReduce:
    case OpKind::kBarrier:
      switch (a) {
        case Algorithm::kTree:
          return doubleTreeAllReduce(rank, n, count, out);
        case Algorithm::kRecursiveDoubling:
          return recursiveDoublingAllReduce(rank, n, count, out);
        case Algorithm::kRabenseifner:
          return rabenseifnerAllReduce(rank, n, count, out);
        case Algorithm::kDirect:
          return directAllReduce(rank, n, count, out);
        case Algorithm::kOrdered:
          return orderedAllReduce(rank, n, count, out);
        default:
          return ringAllReduce(rank, n, count, out);
      }
    case OpKind::kReduceScatter:
      return a == Algorithm::kOrdered ? orderedReduceScatter(rank, n, count, out)
                                      : ringReduceScatter(rank, n, count, out);
    case OpKind::kAllGather:
      return ringAllGather(rank, n, count, out);
    case OpKind::kBroadcast:
      return a == Algorithm::kTree ? treeBroadcast(rank, n, root, count, out)
                                   : chainBroadcast(rank, n, root, count, out);
    case OpKind::kReduce:
      if (a == Algorithm::kTree) return treeReduce(rank, n, root, count, out);
      if (a == Algorithm::kOrdered) return orderedReduce(rank, n, root, count, out);
      return chainReduce(rank, n, root, count, out);
    case OpKind::kAllToAll:
      return directAllToAll(rank, n, count, out);
    case OpKind::kSend:
    case OpKind::kRecv:
      return;  // planned by planPointToPoint (fused groups)
    case OpKind::kSplit:
      return;  // no data moves
  }
}

}  // namespace lockstep
