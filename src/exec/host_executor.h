// Runs a Schedule on host memory over Links.
//
// Lanes progress independently and never block each other: the executor sweeps over them, and
// each lane runs slices (src/algo/slicing.h) until it needs a message that has not arrived or a
// send slot the peer still holds. When no lane can move, it makes the links progress and backs
// off (spin, yield, sleep). Every wait is bounded by the op's deadline, and slow waits check that
// the peers are still alive.
//
// With at least two slots per link, a ring lane cannot deadlock: every rank has at most one more
// message out than in, so N links of 2 slots can never all be full at once.
#pragma once

#include <atomic>
#include <span>
#include <string>
#include <vector>

#include "kernels/cpu_reduce.h"
#include "lockstep/lockstep.h"
#include "src/algo/schedule.h"
#include "src/algo/slicing.h"
#include "src/core/clock.h"
#include "src/exec/backoff.h"
#include "src/exec/fingerprint.h"
#include "src/exec/slot_stores.h"
#include "transport/transport.h"

namespace lockstep {

// OpInfo::kind of the Work that fuses a group's sends and receives.
inline constexpr const char* kSendRecvGroup = "send/recv group";

// Describes the op for kernels, for the peers (fp travels with every message) and for errors.
struct OpInfo {
  const char* kind;       // "allreduce"
  const char* algorithm;  // "ring", recorded with the op
  Fingerprint fp;         // fp.seq: the communicator's collective sequence number, set at submission
  lockstepDataType_t dtype;
  lockstepRedOp_t op;
  size_t count;  // elements (bytes for a send/recv group), for messages

  std::string label() const { return std::string(kind) + (fp.seq ? " #" + std::to_string(fp.seq) : ""); }
};

// What the executor asks of the rest of the group while it waits (src/core/health.h).
class OpMonitor {
 public:
  virtual ~OpMonitor() = default;
  // Throws if the group is known to have failed (a peer died, left or disagrees).
  virtual void check() = 0;
  // For a timeout message: which ranks have not arrived at op `seq` (0: a send/recv, which
  // takes no number), stopped answering, left or died; for a send/recv, whether `peer` (the
  // rank it waits on, or -1) is inside a collective this rank has not entered.
  virtual std::string laggards(uint64_t seq, int peer = -1) = 0;
  // Why `peer` will never take part again because it left the communicator (destroyed it,
  // alive or not), or empty. A process that exited shows on its link instead (peerGone).
  virtual std::string departed(int peer) = 0;
};

class HostExecutor {
 public:
  // links[r] reaches rank r (for this rank: a loopback link); names[r] describes rank r in errors.
  // `aborted`, when set, makes a running op fail with Aborted within a few milliseconds.
  HostExecutor(int rank, std::vector<Link*> links, std::vector<std::string> names, size_t slotBytes,
               std::chrono::milliseconds timeout, const std::atomic<bool>* aborted);
  // Consulted on every slow wait; may be null.
  void setMonitor(OpMonitor* monitor) { monitor_ = monitor; }
  // How waits spin, yield and sleep (kOversubscribedWait when the host has more ranks than CPUs).
  void setWaitProfile(WaitProfile profile) { wait_ = profile; }

  // Returns when every lane is done and every byte this rank sent has left the process.
  // buffers[i] is the base address of the schedule's buffer index i.
  void run(const Schedule& schedule, std::span<char* const> buffers, const OpInfo& op, Deadline deadline);

 private:
  struct Lane {
    SliceWalker walker;
    Message in;
    void* slot = nullptr;
  };
  // A message sent by reference that may still read [begin, end) of the op's buffers.
  struct RefSend {
    int peer;
    uint64_t ticket;
    const char* begin;
    const char* end;
  };
  struct Ctx;
  void runLanes(Ctx& ctx);
  // Runs the lane until it would have to wait; true if it ran at least one slice.
  bool advance(Lane& lane, Ctx& ctx);
  // Sends the slice by reference, from the op's buffers, instead of copying it into the slot.
  bool sendByReference(const Step& step, size_t bytes, const Ctx& ctx) const;
  // Before [p, p + bytes) is written: no message may still read it (copied into its slot if so).
  // With detach false, only forgets the messages that have left.
  void settleRefs(const char* p, size_t bytes, bool detach);
  void slowChecks(Ctx& ctx);
  // For a send/recv Work over a link whose data is in reach once posted (shm, inproc): why
  // `peer`, which left the communicator, will send or take nothing more; else empty.
  std::string leftForGood(int peer, const Ctx& ctx) const;
  // The sleeping phase of waiting: on the link the first blocked lane needs, for at most ns.
  void sleepOnBlockedLink(long ns);
  // Throws Mismatch (naming the peer and the first differing field) unless the message is the
  // size this step expects and carries this op's fingerprint.
  void checkMessage(const Message& in, const Step& step, size_t bytes, const Ctx& ctx) const;
  MessageTag tagFor(const Step& step, const Ctx& ctx) const;
  void flush(Ctx& ctx);
  [[noreturn]] void timeout(const Ctx& ctx, const std::string& waitingFor, int peer = -1);

 public:
  // "; the connection to rank 1 ... the network drops what this rank sends ..." for each link
  // whose sends the network keeps dropping, or "": what a timeout adds, its own or a peer's.
  std::string stallNotes() const;

 private:
  int rank_;
  int nranks_;
  std::vector<Link*> links_;
  std::vector<std::string> names_;
  size_t slotBytes_;
  std::chrono::milliseconds timeout_;
  const std::atomic<bool>* aborted_;
  OpMonitor* monitor_ = nullptr;
  WaitProfile wait_;
  std::vector<Lane> lanes_;  // reused across runs: no allocation per call
  // The last op's kernels: a loop repeats its dtype and op, and the lookup costs a small op 2 %.
  struct {
    lockstepDataType_t dtype = static_cast<lockstepDataType_t>(-1);
    lockstepRedOp_t op = static_cast<lockstepRedOp_t>(-1);
    ReduceKernels kernels;
  } reduceFor_;
  std::vector<RefSend> refs_;
  bool slotsReadInPlace_ = false;  // some peer reads this rank's slots where they lie (shm, a FIFO)
  SlotStores slotStores_;          // how ops fill their send slots, timed per size
  std::vector<char> slotScratch_;  // SliceKernels::slotScratch, one slice
};

}  // namespace lockstep
