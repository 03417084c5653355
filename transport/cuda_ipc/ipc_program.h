// What a cuda_ipc kernel executes: a Program, the lowered form of one rank's Schedule
// (transport/cuda_ipc/ipc_lowering.h). Plain data with every address resolved, so the kernel
// (ipc_kernel.cu) and the host threads that test it (ipc_host_runner.h) run the same
// instructions through the same interpreter (ipc_interpreter.h).
//
// One Instr is one slice of one step (or, flagged kDrain, a lane's last word on a link it sent
// on). Messages travel in FIFOs of `slots` slots that live in the receiver's segment
// (transport/cuda_ipc/ipc_layout.h), with the flow control of the host FIFOs (transport/fifo.h):
// the sender publishes a slot's message number (seq, counted per link since the communicator was
// made) after its bytes; the receiver writes back how many messages it has released (tail) into
// the sender's segment. Each side polls only its own memory. The numbers are worked out at
// lowering time, so a kernel keeps no state between calls.
//
// A lane runs on `workers` thread blocks, and every slice is split between them by elements
// (workerPart in ipc_interpreter.h). Each worker is a channel of its own: its part of a slot has
// its own header and its own tail line, so the workers of a lane never wait for each other,
// except at a phase start (Step::phase), where a step reads what other workers wrote.
//
// Layout rules: only fixed-width fields, no pointers to host-only types, 8-byte alignment, no
// default member initializers (the kernel keeps copies in shared memory; value-initialize).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/float_types.h"  // LS_HD

namespace lockstep {
namespace ipc {

constexpr uint32_t kProgramMagic = 0x4c535049u;  // "LSPI"
constexpr uint32_t kMaxLanes = 64;               // barrier counters in a segment
constexpr uint32_t kTailWords = 8;               // a tail line: one 64-bit word, padded to 64 bytes

// Instr::flags
constexpr uint8_t kRecvs = 1 << 0;       // waits for a message from recvPeer
constexpr uint8_t kSends = 1 << 1;       // fills a slot of sendPeer's FIFO and posts it
constexpr uint8_t kLocalFirst = 1 << 2;  // reduce as (src) (op) (received)
constexpr uint8_t kScaled = 1 << 3;      // floating avg: src is raw input, scale it where it enters
constexpr uint8_t kDivide = 1 << 4;      // integer avg: this step finishes, divide by nranks
constexpr uint8_t kPhase = 1 << 5;       // a phase starts here: the lane's workers meet first
// One of the first `slots` messages of this op on its link: the slot was last filled by an
// earlier op, perhaps split between a different number of workers, so the worker waits until
// every tail line has released it, not only its own.
constexpr uint8_t kCreditAll = 1 << 6;
// Not a slice: the lane's last word on a link it sent on. Worker 0 waits until every tail line
// has released message outCredit (the lane's last to that peer), so once a rank's kernel is done,
// no peer writes into its segment for that op any more (teardown may free it).
constexpr uint8_t kDrain = 1 << 7;

// One worker's part of a message slot: its header, in the receiver's segment; 64 bytes so no two
// share a line.
struct alignas(64) SlotHeader {
  uint64_t seq;     // the message's number on its link; written last, with release order
  uint64_t bytes;   // this part's payload bytes, the sender's word: checked by the receiver
  uint64_t tag[3];  // the op's fingerprint (MessageTag), the sender's word: checked by the receiver
  uint64_t pad[3];
};
static_assert(sizeof(SlotHeader) == 64, "a slot header is one cache line");

struct Instr {
  uint8_t prim;   // Prim (src/algo/schedule.h)
  uint8_t flags;  // k* above
  uint16_t pad0;
  int32_t sendPeer;
  int32_t recvPeer;
  uint32_t pad1;
  uint64_t elems;   // this slice's elements
  const char* src;  // the local operand (buffer + offset), or null
  char* dst;        // where results land, or null
  // Receiving: the slot (worker w's header is inHeader + w), its number, and the peer's tail
  // lines for this link (remote; worker w's is inTail + w * kTailWords).
  const SlotHeader* inHeader;
  const char* inData;
  uint64_t inSeq;
  uint64_t* inTail;
  // Sending: the peer's slot (remote, headers as above), its number, and the credit to wait for
  // on the local tail lines: the slot is free once the peer has released message outSeq - slots
  // (0: free from the start).
  SlotHeader* outHeader;
  char* outData;
  uint64_t outSeq;
  uint64_t outCredit;
  const uint64_t* outTail;
};

// Error codes, first failure wins (ErrorRecord::code).
enum ErrorCode : uint32_t {
  kOk = 0,
  kAborted = 1,         // the communicator's abort flag was raised
  kRecvTimeout = 2,     // no message from `peer`
  kCreditTimeout = 3,   // `peer` did not release a slot
  kSizeMismatch = 4,    // `peer` sent `got` bytes where `want` were expected
  kTagMismatch = 5,     // `peer` sent a message of another op
  kOrderTimeout = 6,    // the communicator's previous cuda_ipc op never finished
  kBarrierTimeout = 7,  // the workers of a lane never met (a worker was not scheduled)
};

// Where a kernel reports its failure (in device memory, SegmentState::error, copied to the host
// after the kernel). Once set it stays: a failed communicator runs no more cuda_ipc ops.
struct ErrorRecord {
  uint32_t code;  // ErrorCode; written first (compare-and-swap from kOk)
  int32_t peer;
  uint32_t lane;
  uint32_t instr;
  uint64_t want;
  uint64_t got;
};

// Per-communicator words in the segment's state area (ipc_layout.h).
struct SegmentState {
  uint64_t barrier[kMaxLanes * 8];  // lane i counts at barrier[i * 8] (one line per lane)
  uint64_t opsDone;                 // cuda_ipc ops this rank has completed
  uint64_t pad0[7];
  uint64_t workersDone;  // workers that finished, over every op (the last one bumps opsDone)
  uint64_t pad1[7];
  ErrorRecord error;  // a kernel's failure; the host copies it out after every kernel
};

// A program blob: this header, then laneBegin[lanes + 1] (uint32, padded to 8 bytes), then the
// Instrs. Lane i's instructions are [laneBegin[i], laneBegin[i + 1]).
struct ProgramHeader {
  uint32_t magic;
  uint32_t lanes;
  uint32_t workers;     // per lane, in this op
  uint32_t maxWorkers;  // per lane in any op: the tail lines per link (Geometry::workers)
  int32_t rank;
  int32_t nranks;
  uint32_t dtype;  // lockstepDataType_t
  uint32_t op;     // lockstepRedOp_t (avg reduces as sum; kScaled / kDivide do the rest)
  uint32_t slots;
  uint32_t elemBytes;                  // dataTypeSize(dtype)
  uint64_t sliceElems;                 // a full slice (slotBytes / elemBytes): fixes the workers' parts
  uint64_t tag[3];                     // this op's fingerprint, carried in every slot header
  uint64_t opIndex;                    // cuda_ipc ops of this communicator before this one
  uint64_t timeoutNs;                  // per wait
  SegmentState* state;                 // this rank's own state area
  uint64_t barrierBase[kMaxLanes];     // lane i's barrier count before this op (workers x phases)
  uint64_t workersBase;                // state->workersDone before this op
  const volatile uint32_t* abortFlag;  // host-mapped: nonzero aborts
  ErrorRecord* error;                  // where a failure is recorded (SegmentState::error)
};

LS_HD size_t laneTableBytes(uint32_t lanes) { return ((lanes + 1) * sizeof(uint32_t) + 7) & ~size_t(7); }
LS_HD const uint32_t* laneTable(const ProgramHeader* h) { return reinterpret_cast<const uint32_t*>(h + 1); }
LS_HD const Instr* instructions(const ProgramHeader* h) {
  return reinterpret_cast<const Instr*>(reinterpret_cast<const char*>(h + 1) + laneTableBytes(h->lanes));
}

}  // namespace ipc
}  // namespace lockstep
