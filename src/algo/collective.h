// The kinds of operation, and the algorithms that implement them.
#pragma once

#include <cstdint>
#include <string>

namespace lockstep {

// kSplit is no collective of the data path: lockstepCommSplit enters it in the watchdog, which then
// tells it apart from a collective a peer called instead.
enum class OpKind {
  kAllReduce,
  kReduceScatter,
  kAllGather,
  kBroadcast,
  kReduce,
  kSend,
  kRecv,
  kAllToAll,
  kBarrier,
  kSplit
};

const char* opKindName(OpKind kind);
inline bool isPointToPoint(OpKind k) { return k == OpKind::kSend || k == OpKind::kRecv; }

enum class Algorithm : uint8_t {
  kRing,               // all-reduce, reduce-scatter, all-gather: bandwidth-optimal, 2(N-1) steps
  kTree,               // all-reduce: double binary tree; broadcast, reduce: binary tree
  kRecursiveDoubling,  // all-reduce: log2 N exchanges of everything (small messages)
  kRabenseifner,       // all-reduce: recursive halving then doubling (medium messages)
  kDirect,             // all-reduce: one-shot, rank-ordered; all-to-all, send/recv
  kChain,              // broadcast, reduce: a pipelined chain along the ring
  kOrdered,            // all-reduce, reduce-scatter, reduce: rank-ordered (deterministic mode)
  kCount
};

const char* algorithmName(Algorithm a);
// Accepts the names algorithmName gives (and "rd" for recursive doubling); false otherwise.
bool parseAlgorithm(const std::string& name, Algorithm* out);

}  // namespace lockstep
