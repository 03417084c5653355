// The control plane of a communicator: a watchdog thread with a TCP connection to every peer.
//
// Every rank tells every other, a few times a second, which collective it last entered and
// completed. From that the watchdog knows:
//   - who died (the connection breaks without a goodbye), who left cleanly (a goodbye carrying
//     the last op it completed) and who stopped answering (no news for a while);
//   - who called a different collective for the same sequence number (a mismatch no data
//     message would ever reveal, because the two never exchange data for it);
//   - which ranks have not arrived at an op, for timeout messages.
// The first failure any rank finds is sent to every other at once, so that every rank fails
// within milliseconds with the same culprit named, instead of waiting out its timeout.
//
// The executor's side is cheap: entering and completing an op are atomic stores, and check()
// is one relaxed load while the group is healthy.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "src/core/clock.h"
#include "src/exec/fingerprint.h"
#include "src/exec/host_executor.h"
#include "src/net/socket.h"
#include "transport/transport.h"

namespace lockstep {

class Health : public OpMonitor {
 public:
  // Collective: connects the control mesh and starts the watchdog (nothing for a single rank).
  explicit Health(const TransportContext& ctx);
  // Says goodbye to every peer (after the last completed op, or "aborted"), stops the watchdog.
  ~Health() override;
  // Ends the watchdog: it says goodbye to every peer (with what this rank completed) and closes.
  // The destructor's first step; also run at the process's exit for communicators never
  // destroyed, after requestStop(true) (which only asks, so that every watchdog of the process
  // says its goodbyes at once: `exiting` tells the peers the process is ending).
  void requestStop(bool exiting = false);
  void stopWatching();
  Health(const Health&) = delete;
  Health& operator=(const Health&) = delete;

  // A collective starts / finishes on this rank (fp.seq > 0). Any thread may call them: only the
  // highest op entered and the highest completed count.
  void entered(const Fingerprint& fp);
  void completed(uint64_t seq);
  // Only one thread at a time calls entered() and completed(), each call ordered after the one
  // before (the host executor's ops, without cuda_ipc kernels): they then need no atomic
  // read-modify-write, which costs a small all-reduce a few percent. Set before the first op.
  void setSerialProgress(bool serial) { serialProgress_ = serial; }
  // Throws the group's first failure, if any.
  void check() override;
  // Where an op starts and ends: a process that was stopped (SIGSTOP, a debugger) or not run for
  // over two intervals reads what its peers sent meanwhile first. Over shared memory a continued
  // rank once completed, from the data its peers had left there, the op that they had all failed
  // for it, while their failure report waited unread (helper-61). True if it had to catch up.
  bool catchUpIfStalled(Clock::time_point now) {
    const auto ran = std::chrono::nanoseconds(watchdogRanNs_.load(std::memory_order_relaxed));
    return now.time_since_epoch() - ran > 2 * interval_ && catchUp().count() > 0;
  }
  // Also fails the group (and throws) if a peer has left the communicator before op `seq`:
  // work that reaches into peers' memory (cuda_ipc kernels) must not start without them.
  void checkPeersStay(uint64_t seq);
  // For timeout messages: the ranks that have not entered op `seq`, left, died or stopped
  // answering, with host, pid and the last op each completed. Empty if none.
  std::string laggards(uint64_t seq, int peer = -1) override;
  // Records a failure this rank found (the first one wins) and sends it to every peer.
  void fail(lockstepResult_t code, int culprit, const std::string& message);
  // lockstepSuccess while healthy, else the first failure's code.
  lockstepResult_t failure() const { return static_cast<lockstepResult_t>(failed_.load()); }
  // Whether the group has failed and `rank` found the failure or is its culprit.
  bool failedBy(int rank) const;
  // A split (this communicator's split number `split`) failed on this rank before the members of
  // its color could hear of it otherwise: they are told (`members`, ranks of this communicator),
  // and ask splitFailure while they wait for this rank. Not a failure of this communicator:
  // other colors go on.
  void failSplit(uint64_t split, std::span<const int> members, lockstepResult_t code, const std::string& text);
  bool splitFailure(uint64_t split, int from, lockstepResult_t* code, std::string* text) const;
  // Called once, from whichever thread records the group's first failure (the watchdog, mostly):
  // how work the executor does not run (cuda_ipc kernels) learns of it. Cleared with nullptr;
  // after set() or clear returns, the old hook is not running and will not run.
  void setFailureHook(std::function<void()> hook);
  // The goodbye the destructor sends says "aborted" rather than "left".
  void markAborted() { aborted_.store(true); }

  // The send or receive this rank is in (kind "send", "recv" or another for a group of them,
  // with one of its peers), or none (peer < 0): carried by the heartbeat, so that a peer waiting
  // at a collective can say why this rank never came.
  void inPointToPoint(const char* kind, int peer) { p2p_.store(p2pState(kind, peer), std::memory_order_relaxed); }

  // "rank 3 (host:pid) left the communicator after op #k" if `peer` said goodbye, else empty.
  std::string departed(int peer) override;
  // What became of the first of `ranks` (sorted) that died (not one that left: a member whose
  // split returned may destroy this communicator while the others still build theirs), else
  // empty: whether a communicator split off with those ranks can still form.
  std::string lostAmong(std::span<const int> ranks);

  // Without news for this long, a live peer counts as not responding: 2 s, or half the op
  // timeout where that is shorter (so that a timeout can name a stopped rank), but never under
  // a few heartbeats.
  static std::chrono::milliseconds unresponsiveAfter(std::chrono::milliseconds timeout);

 private:
  // tests/fuzz/fuzz_control.cc: feeds a peer's control connection hostile bytes, whole
  // messages (a header of controlHeaderBytes() that starts with controlMagic(), and the text it
  // announces) among them.
  friend struct HealthFuzz;
  friend struct ControlWireTest;  // tests/unit/control_wire_test.cc: crafted messages, one at a time
  static size_t controlHeaderBytes();
  static size_t controlTextBytesAt();  // where the header says how much text follows
  static uint32_t controlMagic();
  enum class PeerState { kAlive, kLeft, kLost };
  // How many of its latest ops a heartbeat names (what the message's text field holds): those
  // since the last one, so that each op is compared with the peers' though the heartbeats of a
  // rank making progress go only every 500 ms (broadcastStatus).
  static constexpr uint64_t kBeatOps = 16;
  // A peer's op that a heartbeat named, compared once with this rank's op of that number.
  struct HeardOp {
    Fingerprint fp;
    bool checked = false;
  };
  struct Peer {
    int rank;
    Fd fd;
    std::string name;  // "rank 3 (host:pid)"
    std::string inbox, outbox;
    std::string textHead;  // what kText messages carried, for the next report's text
    PeerState state = PeerState::kAlive;
    uint64_t entered = 0, completed = 0;
    Fingerprint fp;
    Fingerprint prevFp;                   // the op it entered before fp: a peer one op ahead is still comparable
    std::array<HeardOp, kBeatOps> ops{};  // its op s in slot s % kBeatOps, as its heartbeats named them
    uint32_t p2p = 0;                     // the send/recv it is in (p2pState), from its last status
    bool aborted = false;                 // its goodbye said it aborted (state kLeft)
    bool exiting = false;                 // ... that its process is ending
    Clock::time_point lastHeard;
  };

  void watch();
  void notifyFailed();  // runs the failure hook (which must not take mu_)
  void readFrom(Peer& p);
  void handle(Peer& p, const struct ControlMsg& m);
  // A message of `type` with what this rank last entered and completed (a heartbeat, a goodbye),
  // and the fingerprints of the ops it entered since the last heartbeat (kBeatOps at most; the
  // last one they name in `named`).
  struct ControlMsg progress(uint32_t type, uint64_t* named = nullptr) const;
  static void remember(Peer& p, const Fingerprint& fp);
  void lost(Peer& p, const std::string& why);
  void queue(Peer& p, const struct ControlMsg& m, const std::string& text = {});
  void flush(Peer& p);
  static std::string brokenBy(int err);
  void broadcastStatus();
  // What the last heartbeat said, and when it went; what the last tick saw (broadcastStatus;
  // watchdog thread only).
  struct Beat {
    uint64_t entered = 0, completed = 0;
    MessageTag fp, prevFp;
    uint32_t p2p = 0;
    bool operator==(const Beat&) const = default;
  } lastBeat_, lastSample_;
  Clock::time_point lastBeatAt_{};
  uint64_t namedThrough_ = 0;  // the ops the last heartbeat named, and those before it
  // How often an unchanged heartbeat goes, as a keepalive: a quarter of the silence after which
  // a peer counts as not responding (500 ms by default), never more often than interval_.
  std::chrono::milliseconds keepAlive() const { return std::max(interval_, unresponsive_ / 4); }
  void sendFailure();  // once, to every peer
  void sendSplitReports();
  // The failure as this rank tells it: "rank R (host:pid) reports: " first where R found it (mu_).
  std::string failureText() const;
  void checkDelivered();  // sets failureDelivered_ once the report has left for every live peer
  void awaitDelivery();   // a failing call's brief wait for it (not on the watchdog thread)
  void evaluate();        // departures and mismatches against what this rank is doing
  // A departure's consequence: fails ops after op `after` only (mu_ held; see health.cc).
  void failAfterOp(lockstepResult_t code, int culprit, int origin, const std::string& text, uint64_t after);
  bool applyPending(bool force);      // the pending one, if this rank is past its op or force (mu_)
  bool pastOp(uint64_t after) const;  // this rank is in an op after `after`, or idle at or past it
  std::string leftBefore(const Peer& p, uint64_t seq) const;  // "rank 3 (...) left ... after op #k ..."
  // This rank's current op (previous = false) or the one before it.
  Fingerprint myFingerprint(bool previous = false) const;
  // This rank's op `seq`, if it entered it among its last kHistory ops (else seq 0).
  Fingerprint myFingerprintAt(uint64_t seq) const;
  void wake();

  const int rank_;
  const std::chrono::milliseconds interval_;
  // After reading its peers, the watchdog leaves their sockets for this long (health.cc, watch).
  const std::chrono::microseconds readGap_;
  const std::chrono::milliseconds unresponsive_;
  // How long a leaving watchdog lets its goodbye reach the peers and waits for them to close: on
  // a link of long round trips and losses, a retransmitted goodbye needs a few RTOs.
  const std::chrono::milliseconds goodbyeWait_;
  std::vector<Peer> peers_;  // every other rank; owned by the watchdog thread (mu_ for readers)
  Fd wakeFd_;                // eventfd: fail() and the destructor wake the watchdog

  // This rank's progress, written by the executor thread. The fingerprints are guarded by a
  // sequence counter (odd while being written) so the watchdog never reads a torn one. The last
  // kHistory ops entered, op s in slot s % kHistory: a peer that is still at an op this rank
  // has left behind (count-0 calls, or rooted ops, finish without it) is compared with it here.
  // What every op touches first, together; the history after it.
  static constexpr uint64_t kHistory = 64;
  std::atomic<uint64_t> fpVersion_{0};
  std::atomic<uint64_t> entered_{0}, completed_{0};
  bool serialProgress_ = false;
  std::atomic<int> failed_{lockstepSuccess};
  std::atomic<uint32_t> p2p_{0};
  std::atomic<uint64_t> fpWords_[3 * kHistory] = {};
  static uint32_t p2pState(const char* kind, int peer);
  static std::string p2pText(uint32_t state);  // ", in a receive from rank 2", or ""

  std::atomic<bool> failureSent_{false}, stop_{false}, aborted_{false}, exiting_{false};
  mutable std::mutex mu_;  // guards failure text and peers_' status for laggards()
  std::mutex hookMu_;      // held while the failure hook runs or changes
  std::function<void()> failureHook_;
  std::string failureRaw_;                  // as the rank that found it said it, which relays pass on
  std::optional<uint64_t> failureAfterOp_;  // set: a departure's, sparing ops up to this one
  struct PendingFailure {
    lockstepResult_t code;
    int culprit, origin;
    std::string text;
    uint64_t after;
  };
  std::optional<PendingFailure> pending_;  // a departure's, until this rank is past `after` (mu_)
  int failureOrigin_ = -1;                 // that rank
  int failureCulprit_ = -1;
  Clock::time_point failureSentAt_;  // watchdog thread only
  struct SplitFailure {
    uint64_t split;
    int from;
    lockstepResult_t code;
    std::string text;
  };
  std::vector<SplitFailure> splitFailures_;  // the last few peers reported (mu_)
  struct SplitReport;
  std::vector<SplitReport> splitReports_;  // this rank's, for the watchdog to send (mu_)
  std::atomic<bool> failureDelivered_{false};
  std::atomic<int64_t> deliveryDeadlineNs_{0};  // the failing calls' wait ends then (steady clock)
  // When the watchdog last woke (steady clock, ns). It wakes at least every interval_, so a far
  // older mark means this process was not running (SIGSTOP, or starved of CPU) and what the
  // peers said meanwhile is unread.
  std::atomic<int64_t> watchdogRanNs_{0};
  // Lets an overdue watchdog catch up before laggards() judges the peers by it; returns how
  // long it had not run (zero when it was on time).
  std::chrono::milliseconds catchUp();
  std::thread thread_;
  std::atomic<std::thread::id> watchdogId_{};  // the watchdog thread's, once it runs
};

}  // namespace lockstep
