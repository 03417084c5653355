// A Schedule is what one rank does for one operation: ordered Steps, each a fused primitive on a
// range of elements, grouped into lanes. Steps within a lane run in order; lanes are independent
// and progress concurrently (a group's sends to different peers must not wait on each other).
// Two lanes never use the same link direction, so the messages on every link stay in one order.
//
// Algorithms produce schedules as pure functions; executors run them. Buffers are referred to by
// index (0 = the op's input, 1 = its output; a fused group of point-to-point ops numbers its
// buffers itself), so a schedule holds no pointers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
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
  kLocalReduce,         // dst (op) src -> dst
};

const char* primName(Prim p);
inline bool primSends(Prim p) {
  return p == Prim::kSend || p == Prim::kRecvReduceSend || p == Prim::kRecvReduceCopySend || p == Prim::kRecvCopySend;
}
inline bool primRecvs(Prim p) { return p != Prim::kSend && p != Prim::kCopy && p != Prim::kLocalReduce; }
// Writes dst (the op's buffers); the others write only the send slot.
inline bool primWrites(Prim p) { return p != Prim::kSend && p != Prim::kRecvReduceSend; }
inline bool primReduces(Prim p) {
  return p == Prim::kRecvReduceSend || p == Prim::kRecvReduceCopy || p == Prim::kRecvReduceCopySend ||
         p == Prim::kLocalReduce;
}

// Buffer indices of a single collective.
constexpr uint32_t kInput = 0;
constexpr uint32_t kOutput = 1;

struct Step {
  Prim prim;
  int sendPeer = -1;
  int recvPeer = -1;
  uint32_t src = kInput;   // buffer the local operand is read from
  uint32_t dst = kOutput;  // buffer results land in
  size_t srcOffset = 0;    // in elements
  size_t dstOffset = 0;    // in elements
  size_t count = 0;        // elements
  // This step produces final values: finish the reduction (avg divides here, exactly once).
  bool finish = false;
  // Starts a new phase of its lane: every slice of the steps before it is done first. Needed
  // where a step reads, at other offsets, what earlier steps wrote (recursive halving).
  bool phase = false;
  // Reduce steps combine (received) (op) (src) by default; with localFirst, (src) (op) (received).
  // Algorithms where several ranks compute the same value use it to keep one operand order
  // everywhere (lower ranks' data first), so the results match bit for bit (even for a sum: the
  // order decides which NaN it returns). A floating avg's scaled input keeps that order too.
  bool localFirst = false;
  // A send or receive of nothing that still moves one message (header only): count 0 sends and
  // receives pair with their peer's as in MPI and NCCL, rather than vanishing and letting the
  // next message pair with the wrong receive. Walked as one slice of no elements.
  bool emptyMessage = false;
};

// How a lane's steps are cut and ordered (src/algo/slicing.h).
enum class LaneOrder : uint8_t {
  kSliceMajor,  // slice 0 of every step, then slice 1...: steps pipeline (collectives)
  kStepMajor,   // every slice of step 0, then of step 1...: one message after another (send/recv)
};

struct Schedule {
  std::vector<Step> steps;
  std::vector<uint32_t> laneEnds;    // lane i is steps [laneEnds[i-1], laneEnds[i])
  std::vector<LaneOrder> laneOrder;  // one per closed lane

  // Keeps capacity: schedules are rebuilt without allocating.
  void clear() {
    steps.clear();
    laneEnds.clear();
    laneOrder.clear();
  }
  void add(const Step& s) { steps.push_back(s); }
  // Closes the current lane (steps added since the last endLane). Empty lanes are dropped.
  void endLane(LaneOrder order = LaneOrder::kSliceMajor) {
    uint32_t start = laneEnds.empty() ? 0 : laneEnds.back();
    if (steps.size() > start) {
      laneEnds.push_back(static_cast<uint32_t>(steps.size()));
      laneOrder.push_back(order);
    }
  }
  // Steps added after the last endLane() form a final lane.
  size_t lanes() const {
    uint32_t closed = laneEnds.empty() ? 0 : laneEnds.back();
    return laneEnds.size() + (steps.size() > closed ? 1 : 0);
  }
  LaneOrder order(size_t i) const { return i < laneOrder.size() ? laneOrder[i] : LaneOrder::kSliceMajor; }
  std::span<const Step> lane(size_t i) const {
    size_t begin = i == 0 ? 0 : laneEnds[i - 1];
    size_t end = i < laneEnds.size() ? laneEnds[i] : steps.size();
    return {steps.data() + begin, end - begin};
  }
};

// The ranks a schedule exchanges messages with, in order of first use, at most kMax of them: what
// the flight recorder keeps of each op. Found once when an op is planned; walking the steps on
// every call was 4 % of a 2-rank 8-byte all-reduce.
struct PeerList {
  static constexpr int kMax = 6;
  int16_t rank[kMax] = {};
  uint8_t n = 0;
};
PeerList peersOf(const Schedule& schedule);

// The messages a schedule sends to and receives from `peer` when its steps are cut into slices of
// sliceElems elements (one message a slice; an empty message is one).
struct MessageCounts {
  size_t sent = 0, received = 0;
};
MessageCounts messagesWith(const Schedule& schedule, int peer, size_t sliceElems);

}  // namespace lockstep
