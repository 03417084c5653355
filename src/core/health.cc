#include "src/core/health.h"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <future>
#include <mutex>
#include <unordered_set>

#include "src/core/errors.h"
#include "src/core/logging.h"
#include "src/core/named_peers.h"
#include "src/core/thread_name.h"
#include "transport/socket/mesh.h"

namespace lockstep {

// One message on a control connection: a fixed header, then textBytes of its last field (at most
// the field's size, so a reader never trusts a peer's length further). Every field is checked
// before use. Sent whole, the field made every heartbeat 480 bytes, of which an idle rank's used
// none.
struct ControlMsg {
  uint32_t magic;
  uint32_t type;                // kStatus, kFailure, kGoodbye
  uint64_t entered, completed;  // kSplitFailed: entered is the split's index
  MessageTag fp;                // the fingerprint of the op last entered (kStatus, kGoodbye)
  MessageTag prevFp;            // and of the op entered before it
  int32_t code;                 // kFailure: lockstepResult_t
  int32_t culprit;
  int32_t origin;      // kFailure: the rank that found it (a relay passes it on unchanged)
  uint32_t flags;      // kGoodbye: kByeAborted, kByeExiting; kFailure: kFailAfterOp
  uint32_t p2p;        // kStatus: Health::p2pState (the send/recv it is in), 0 if none
  uint32_t textBytes;  // how much of text follows the header on the wire
  // kFailure, kSplitFailed, kText: (a piece of) the message, NUL-padded; kStatus, kGoodbye: the
  // tags of the ops entered since the last heartbeat, oldest first.
  char text[384];
};
constexpr size_t kHeaderBytes = offsetof(ControlMsg, text);

struct Health::SplitReport {
  ControlMsg msg{};
  std::string text;
  std::vector<int> to;  // the split's members it goes to
};

namespace {

constexpr uint32_t kControlMagic = 0x54434c53u;  // "SLCT"
constexpr uint32_t kStatus = 1, kFailure = 2, kGoodbye = 3, kSplitFailed = 4;
// The head of the next kFailure's or kSplitFailed's text, where it is longer than one message's
// field: a timeout's list of laggards was once cut in its middle by a relay (helper-91). A peer
// of an older version ignores it and reads the text's end.
constexpr uint32_t kText = 5;
constexpr size_t kMaxText = 4096;  // a report's text at most, head and tail kept
// A goodbye's flags: the rank aborted rather than left; its process is ending (an exit without
// destroy: its split children are going too). A failure's: it follows from a rank's departure
// after op `completed`, and fails only later ops (Health::failAfterOp).
constexpr uint32_t kByeAborted = 1, kByeExiting = 2, kFailAfterOp = 4;
constexpr size_t kMaxOutbox = 64 * 1024;  // a peer that reads nothing for this long loses status news

// The watchdog's tick: how often it looks at its rank's progress, and sends news of it that has
// held since the last tick (broadcastStatus). Unchanged, a heartbeat goes as a keepalive, every
// quarter of the silence after which a rank counts as stopped (a few hundred ms).
constexpr auto kInterval = std::chrono::milliseconds(200);

// The peers' heartbeats arrive each at its own phase: read as each came, a rank woke N - 1 times
// an interval and polled every peer at each wake, a cost that grew as N^2 (1-1.6 % of a core per
// idle rank at 64 ranks, a core at 1024 by helper-99's model). Once it has read, the watchdog
// leaves the sockets for a gap that grows with N, so a wake reads many: at most 1/gap wakes a
// second. What it delays, a peer's failure report or a broken connection, waits at most the gap:
// 0.25 ms per rank, so 2 ms at 8 ranks and 25 ms from 100.
std::chrono::microseconds readGapFor(size_t nranks) {
  return std::min<std::chrono::microseconds>(std::chrono::microseconds(250) * nranks, std::chrono::milliseconds(25));
}

// How long a rank that fails lets its report reach its peers before the error returns to the
// program, which may exit at once (below).
constexpr auto kDeliveryWait = std::chrono::milliseconds(200);

// A report's text within kMaxText: the head and the tail, where a timeout names the ranks it
// waited for.
std::string fitText(const std::string& text) {
  if (text.size() <= kMaxText) return text;
  static constexpr char kCut[] = " [...] ";
  const size_t head = (kMaxText - (sizeof(kCut) - 1)) / 2, tail = kMaxText - head - (sizeof(kCut) - 1);
  return text.substr(0, head) + kCut + text.substr(text.size() - tail);
}

// The text of a message that carries one (kFailure, kSplitFailed), with what kText messages
// before it carried.
std::string textOf(const ControlMsg& m, std::string* head) {
  std::string text = std::move(*head) + std::string(m.text, strnlen(m.text, sizeof(m.text)));
  head->clear();
  return printable(std::move(text));
}

// The watchdogs of this process's live communicators. A program that returns from main (or
// calls exit) without destroying its communicators, as scripts and many trainers do, used to
// leave without a goodbye: its peers heard only the control connection close, "lost ... (no
// goodbye)", and failed an op whose data the leaver had sent and they had yet to read (a send
// followed by the end of main; helper-87, across hosts, and on one host whenever the receiver
// came to it later). At exit, each says its goodbye, as a destroy would: what the rank
// completed is final for its peers. A forked child's copy is its parent's (and its threads are
// not there): it says nothing, as with the rendezvous services (root_service.cc).
struct LiveWatchdogs {
  const pid_t owner;
  std::mutex mu;
  std::unordered_set<Health*> live;
};
std::atomic<LiveWatchdogs*> gWatchdogs{nullptr};

void goodbyesAtExit() {
  LiveWatchdogs* w = gWatchdogs.load();
  if (!w || w->owner != getpid()) return;
  // Not forever: exit() called from a signal handler that interrupted this thread while it held
  // the lock (a communicator being created or destroyed) would wait for itself. Then the peers
  // hear the connections close, as before the goodbyes at exit. Tried, not a timed lock: GCC's
  // ThreadSanitizer does not see pthread_mutex_clocklock, and reported the unlock of an unlocked
  // mutex at every exit (helper-97).
  std::unique_lock<std::mutex> lock(w->mu, std::defer_lock);
  for (int i = 0; !lock.try_lock(); ++i) {
    if (i == 1000) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // All at once: each waits up to its goodbye deadline for a stopped peer, and one after another
  // 50 communicators took 50 s to exit beside one (helper-90).
  for (Health* h : w->live) h->requestStop(/*exiting=*/true);
  for (Health* h : w->live) h->stopWatching();
}

LiveWatchdogs& liveWatchdogs() {
  static const bool registered = std::atexit(goodbyesAtExit) == 0;
  (void)registered;
  LiveWatchdogs* w = gWatchdogs.load();
  while (!w || w->owner != getpid()) {
    auto* mine = new LiveWatchdogs{getpid(), {}, {}};  // never freed: a thread may leave during exit
    if (gWatchdogs.compare_exchange_strong(w, mine)) return *mine;
    delete mine;
  }
  return *w;
}

}  // namespace

std::chrono::milliseconds Health::unresponsiveAfter(std::chrono::milliseconds timeout) {
  return std::clamp(timeout / 2, 3 * kInterval, std::chrono::milliseconds(2000));
}

Health::Health(const TransportContext& ctx)
    : rank_(ctx.rank),
      interval_(kInterval),
      readGap_(readGapFor(ctx.peers.size())),
      unresponsive_(unresponsiveAfter(ctx.config.timeout)),
      goodbyeWait_(std::clamp<std::chrono::milliseconds>(ctx.config.timeout / 4, std::chrono::milliseconds(100),
                                                         std::chrono::seconds(2))) {
  const int nranks = static_cast<int>(ctx.peers.size());
  std::vector<int> others;
  for (int r = 0; r < nranks; ++r) {
    if (r != rank_) others.push_back(r);
  }
  // The watchdog's thread first, held until its peers are connected: where the system refuses
  // it (a thread limit), this rank fails before the control mesh, which tells the peers, and
  // their inits fail naming it. Started after, it failed when their inits had succeeded, and
  // they learned of it at their first call (helper-96).
  std::promise<bool> go;
  if (!others.empty()) {
    try {
      thread_ = std::thread([this, ready = go.get_future()]() mutable {
        nameThisThread("lockstep-watch");
        if (ready.get()) watch();
      });
    } catch (const std::system_error& e) {
      ctx.bootstrap.failSetup(
          std::make_exception_ptr(SystemError(
              "pthread_create", e.code().value(),
              "rank " + std::to_string(rank_) +
                  " was starting its communicator's watchdog thread (a thread limit: ulimit -u or a pids cgroup?)")),
          /*heard=*/false);
    }
  }
  try {
    // Collective even for one rank, so every rank makes the same bootstrap calls.
    std::map<int, Fd> fds = connectMesh(ctx, others, Purpose::kControl, "control connections");
    for (int r : others) {
      Peer p;
      p.rank = r;
      p.fd = std::move(fds[r]);
      // A failure or a goodbye leaves at once, not after the acknowledgement of the last heartbeat.
      int one = 1;
      setsockopt(p.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      p.name = ctx.peers[r].describe();
      p.lastHeard = Clock::now();
      peers_.push_back(std::move(p));
    }
    if (!others.empty()) wakeFd_ = Fd(static_cast<int>(checkSys(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), "eventfd")));
  } catch (...) {
    if (thread_.joinable()) {
      go.set_value(false);
      thread_.join();
    }
    throw;
  }
  if (others.empty()) return;
  go.set_value(true);
  try {
    LiveWatchdogs& w = liveWatchdogs();
    std::lock_guard<std::mutex> lock(w.mu);
    w.live.insert(this);
  } catch (...) {
    stopWatching();  // no destructor runs for a constructor that throws
    throw;
  }
}

Health::~Health() {
  {
    LiveWatchdogs& w = liveWatchdogs();
    std::lock_guard<std::mutex> lock(w.mu);
    w.live.erase(this);
  }
  stopWatching();
}

void Health::requestStop(bool exiting) {
  if (exiting) exiting_.store(true);
  stop_.store(true);
  wake();
}

void Health::stopWatching() {
  requestStop();
  if (thread_.joinable()) thread_.join();
}

void Health::wake() {
  if (!wakeFd_.valid()) return;
  uint64_t one = 1;
  (void)!::write(wakeFd_.get(), &one, sizeof(one));
}

// ---- executor side ----

void Health::entered(const Fingerprint& fp) {
  // Two threads may enter ops: the progress thread (host path) and the thread that enqueues
  // cuda_ipc kernels, which enters an op when it posts it, possibly before an earlier staged op
  // has started. So the writer claims the sequence counter (odd while writing), and an op older
  // than the one entered only fills its own slot of the history: peers see this rank's progress
  // only move forward.
  MessageTag t = fp.tag();
  uint64_t v = fpVersion_.load(std::memory_order_relaxed);
  if (serialProgress_) {
    fpVersion_.store(v + 1, std::memory_order_relaxed);  // the only writer: a plain claim
  } else {
    for (;;) {
      if (!(v & 1) && fpVersion_.compare_exchange_weak(v, v + 1, std::memory_order_acquire)) break;
      if (v & 1) v = fpVersion_.load(std::memory_order_relaxed);
    }
  }
  std::atomic_thread_fence(std::memory_order_release);
  // An op older than the history (a staged op entered after 64 later kernels) would overwrite
  // the slot of a newer one, maybe the current: it is left out.
  const uint64_t newest = entered_.load(std::memory_order_relaxed);
  if (fp.seq + kHistory > newest) {
    const size_t slot = 3 * (fp.seq % kHistory);
    for (int i = 0; i < 3; ++i) fpWords_[slot + i].store(t.words[i], std::memory_order_relaxed);
  }
  if (fp.seq > newest) entered_.store(fp.seq, std::memory_order_relaxed);
  fpVersion_.store(v + 2, std::memory_order_release);
}

void Health::completed(uint64_t seq) {
  // Kernels finish on the driver's callback thread, staged ops on the progress thread, and ops
  // on different streams in any order: the highest finished counts.
  uint64_t c = completed_.load(std::memory_order_relaxed);
  if (serialProgress_) {
    if (c < seq) completed_.store(seq, std::memory_order_release);
    return;
  }
  while (c < seq && !completed_.compare_exchange_weak(c, seq, std::memory_order_release)) {
  }
}

Fingerprint Health::myFingerprint(bool previous) const {
  const uint64_t entered = entered_.load(std::memory_order_acquire);
  return entered > (previous ? 1u : 0u) ? myFingerprintAt(entered - (previous ? 1 : 0)) : Fingerprint{};
}

Fingerprint Health::myFingerprintAt(uint64_t seq) const {
  MessageTag t;
  const size_t slot = 3 * (seq % kHistory);
  for (;;) {
    uint64_t v1 = fpVersion_.load(std::memory_order_acquire);
    for (int i = 0; i < 3; ++i) t.words[i] = fpWords_[slot + i].load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (!(v1 & 1) && fpVersion_.load(std::memory_order_relaxed) == v1) break;
  }
  Fingerprint fp;
  if (!Fingerprint::fromTag(t, &fp) || fp.seq != seq) fp = Fingerprint{};  // not entered, or overwritten
  return fp;
}

void Health::check() {
  if (failed_.load(std::memory_order_relaxed) == lockstepSuccess) return;
  awaitDelivery();
  std::lock_guard<std::mutex> lock(mu_);
  auto code = static_cast<lockstepResult_t>(failed_.load());
  const std::string text = failureText();
  if (code == lockstepRemoteError) throw RemoteError(failureCulprit_, text);
  if (code == lockstepMismatch) throw Mismatch(text, failureCulprit_);
  throw Error(code, text);
}

void Health::fail(lockstepResult_t code, int culprit, const std::string& message) {
  bool heardFirst = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_.load() != lockstepSuccess) return;  // the first failure wins
    // A departure heard earlier is the cause where it applies already, or where what failed
    // here is that rank's going (its data connection closing); otherwise this rank's own
    // failure wins: the departed rank completed the op this rank is in, so cannot have failed
    // it (a timeout or a death here was told as its abort: helper-92).
    if (pending_ && (pastOp(pending_->after) || culprit == pending_->culprit)) heardFirst = applyPending(true);
    if (!heardFirst) {
      failureRaw_ = message;
      failureCulprit_ = culprit;
      failureOrigin_ = rank_;
      failed_.store(code);
    }
  }
  if (!heardFirst) {
    LS_WARN(rank_, "communicator failed: " << message);
    notifyFailed();
  }
  wake();  // the watchdog tells every peer
  awaitDelivery();
}

// A program often exits as soon as a call fails (an uncaught exception, exit after printing, the
// launcher's SIGTERM), without a destroy. Its watchdog may not have sent the report yet, and a
// process that exits with unread heartbeats resets its connections, taking unsent bytes with it:
// the peers then blamed this rank's exit ("lost ... no goodbye"), and the rank that found a
// mismatch was named as its culprit. So the failing call waits briefly (up to kDeliveryWait, one
// deadline for every thread) until the report has left for every live peer (checkDelivered);
// bytes that arrived before the reset are still read.
void Health::awaitDelivery() {
  // The watchdog itself never reads thread_, which its creator assigns after the thread has
  // started (TSan: a race with a failure the watchdog met at once).
  if (std::this_thread::get_id() == watchdogId_.load(std::memory_order_relaxed) || !thread_.joinable()) return;
  // One deadline for every thread that meets the failure (the failing call, a thread polling
  // lockstepCommGetAsyncError): once it passes, later calls go at once.
  const auto now = [] { return Clock::now().time_since_epoch().count(); };
  int64_t deadline = 0;
  const int64_t mine = now() + std::chrono::duration_cast<Clock::duration>(kDeliveryWait).count();
  if (deliveryDeadlineNs_.compare_exchange_strong(deadline, mine)) deadline = mine;
  while (!failureDelivered_.load(std::memory_order_acquire) && now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void Health::failSplit(uint64_t split, std::span<const int> members, lockstepResult_t code, const std::string& text) {
  SplitReport r;
  r.msg.type = kSplitFailed;
  r.msg.entered = split;
  r.msg.code = code;
  r.msg.culprit = r.msg.origin = rank_;
  r.text = fitText(text);
  r.to.assign(members.begin(), members.end());
  {
    std::lock_guard<std::mutex> lock(mu_);
    splitReports_.push_back(std::move(r));
  }
  wake();
}

void Health::sendSplitReports() {
  std::vector<SplitReport> reports;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reports.swap(splitReports_);
  }
  for (const SplitReport& r : reports) {
    for (Peer& p : peers_) {
      if (std::find(r.to.begin(), r.to.end(), p.rank) != r.to.end()) queue(p, r.msg, r.text);
    }
  }
}

bool Health::splitFailure(uint64_t split, int from, lockstepResult_t* code, std::string* text) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const SplitFailure& f : splitFailures_) {
    if (f.split == split && f.from == from) {
      *code = f.code;
      *text = f.text;
      return true;
    }
  }
  return false;
}

std::string Health::failureText() const {
  if (failureOrigin_ == rank_) return failureRaw_;
  for (const Peer& p : peers_) {
    if (p.rank == failureOrigin_) return p.name + " reports: " + failureRaw_;
  }
  return failureRaw_;
}

bool Health::failedBy(int rank) const {
  if (failed_.load() == lockstepSuccess) return false;
  std::lock_guard<std::mutex> lock(mu_);
  return failureOrigin_ == rank || failureCulprit_ == rank;
}

void Health::checkDelivered() {
  bool all = true;
  for (const Peer& p : peers_) {
    if (!p.fd.valid() || p.state != PeerState::kAlive) continue;
    // SIOCOUTQNSD: bytes the kernel has not put on the wire yet. Sent is enough: what is on the
    // wire arrives ahead of the reset an exit may send (a loopback send is delivered at once).
    // Waiting for the acknowledgements (SIOCOUTQ) took ~40 ms, the peer's delayed ACK.
    int unsent = 0;
    if (!p.outbox.empty() || (::ioctl(p.fd.get(), SIOCOUTQNSD, &unsent) == 0 && unsent > 0)) {
      all = false;
      break;
    }
  }
  if (all || Clock::now() - failureSentAt_ > kDeliveryWait) failureDelivered_.store(true, std::memory_order_release);
}

void Health::setFailureHook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(hookMu_);
  failureHook_ = std::move(hook);
}

void Health::notifyFailed() {
  std::lock_guard<std::mutex> lock(hookMu_);
  if (failureHook_) failureHook_();
}

std::chrono::milliseconds Health::catchUp() {
  auto sinceRun = [&] { return Clock::now().time_since_epoch() - std::chrono::nanoseconds(watchdogRanNs_.load()); };
  const auto missed = sinceRun();
  if (!thread_.joinable() || missed <= 2 * interval_) return std::chrono::milliseconds(0);
  // The peers' heartbeats and reports wait in the control connections: the watchdog reads them
  // on waking. A process continued after SIGSTOP finds its op's deadline passed and every peer
  // "silent" for as long as it was stopped, and blamed them, unless it reads first.
  wake();
  const Deadline by = Deadline::after(std::chrono::milliseconds(200));
  while (sinceRun() >= missed && !by.expired()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return std::chrono::duration_cast<std::chrono::milliseconds>(missed);
}

std::string Health::laggards(uint64_t seq, int peer) {
  const uint64_t mine = entered_.load(std::memory_order_acquire);
  const std::chrono::milliseconds stalled = catchUp();
  std::lock_guard<std::mutex> lock(mu_);
  NamedPeers notArrived, silent, gone, inCollective;
  auto now = Clock::now();
  for (const Peer& p : peers_) {
    // Where it waits, when it is in a send or receive (which take no number): a rank there
    // while its peers wait at a collective is why they wait (calls in another order).
    std::string last = " (last completed op #" + std::to_string(p.completed) + p2pText(p.p2p) + ")";
    if (p.state == PeerState::kLost) {
      gone.add(p.rank, p.name, " is gone" + last);
    } else if (p.state == PeerState::kLeft) {
      gone.add(p.rank, p.name, " left the communicator" + last);
    } else if (now - p.lastHeard > unresponsive_) {
      // Checked before "not arrived": what a silent rank last said is stale.
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - p.lastHeard).count();
      silent.add(p.rank, p.name + " silent for " + std::to_string(ms) + " ms", last);
    } else if (p.entered < seq) {
      notArrived.add(p.rank, p.name, last);
    } else if (seq == 0 && p.rank == peer && p.entered > p.completed && p.fp.seq == p.entered && p.entered > mine) {
      // A send or receive waiting on the rank that is inside a collective this rank has not
      // entered: neither can go on.
      inCollective.add(p.rank, p.name, " in " + p.fp.describe());
    }
  }
  std::string out;
  // Said first: the wait timed out because this rank did not run, whatever the others did.
  if (stalled > unresponsive_) {
    out +=
        "this rank's process did not run for " + std::to_string(stalled.count()) + " ms (stopped, or starved of CPU?)";
  }
  if (!notArrived.empty())
    out += std::string(out.empty() ? "" : "; ") + "not arrived at op #" + std::to_string(seq) + ": " + notArrived.str();
  if (!inCollective.empty()) {
    out += std::string(out.empty() ? "" : "; ") +
           "inside a collective this rank has not called (calls in another order?): " + inCollective.str();
  }
  if (!silent.empty()) out += std::string(out.empty() ? "" : "; ") + "not responding: " + silent.str();
  if (!gone.empty()) out += std::string(out.empty() ? "" : "; ") + gone.str();
  return out;
}

uint32_t Health::p2pState(const char* kind, int peer) {
  if (peer < 0) return 0;
  const uint32_t what = std::strcmp(kind, "send") == 0 ? 1u : std::strcmp(kind, "recv") == 0 ? 2u : 3u;
  return 1u << 31 | what << 28 | (static_cast<uint32_t>(peer) & ((1u << 28) - 1));
}

std::string Health::p2pText(uint32_t state) {
  if (!(state >> 31)) return "";
  const uint32_t what = (state >> 28) & 7, peer = state & ((1u << 28) - 1);
  return std::string(what == 1   ? ", in a send to"
                     : what == 2 ? ", in a receive from"
                                 : ", in sends/receives with") +
         " rank " + std::to_string(peer);
}

std::string Health::departed(int peer) {
  // Its goodbye carries the last ops it entered: compared first (the watchdog may not have yet),
  // so that a rank that finished a mismatched call alone and left is named for the mismatch,
  // which the caller's check() then throws, rather than for leaving.
  evaluate();
  std::lock_guard<std::mutex> lock(mu_);
  for (const Peer& p : peers_) {
    if (p.rank == peer && p.state == PeerState::kLeft) {
      return p.name + (p.aborted ? " aborted its communicator" : " left the communicator") + " (after op #" +
             std::to_string(p.completed) + ")";
    }
  }
  return {};
}

std::string Health::lostAmong(std::span<const int> ranks) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Peer& p : peers_) {
    // A goodbye said at the process's exit counts: its communicators, a split's child among
    // them, are going too (one that destroyed the parent and lives on keeps its child).
    const bool gone = p.state == PeerState::kLost || (p.state == PeerState::kLeft && p.exiting);
    if (gone && std::binary_search(ranks.begin(), ranks.end(), p.rank))
      return p.name + " is gone (it exited or lost its connection)";
  }
  return {};
}

// ---- the watchdog ----

void Health::watch() {
  watchdogId_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  Clock::time_point nextBeat = Clock::now();
  watchdogRanNs_.store(std::chrono::nanoseconds(Clock::now().time_since_epoch()).count());
  // Rounded up: cut to whole milliseconds, the last one before each heartbeat was spent in
  // poll(..., 0) after poll(..., 0), 171 of 211 polls in 4 s (helper-99).
  auto msUntil = [](Clock::time_point t) {
    return static_cast<int>(
        std::max<int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(t - Clock::now()).count()));
  };
  std::vector<pollfd> fds;
  Clock::time_point readAt{};  // when peers' sockets were last read
  while (!stop_.load()) {
    // A failing call waits for its report to leave (awaitDelivery): look every millisecond.
    const bool delivering = failureSent_.load() && !failureDelivered_.load();
    // The gap after a read (readGapFor): only the wake event (a failure here, a stop, catchUp)
    // ends it early, and is then read below.
    if (const Clock::time_point quietUntil = std::min(readAt + readGap_, nextBeat);
        !delivering && Clock::now() < quietUntil) {
      pollfd wakeOnly{wakeFd_.get(), POLLIN, 0};
      ::poll(&wakeOnly, 1, msUntil(quietUntil));
    }
    fds.assign(1, pollfd{wakeFd_.get(), POLLIN, 0});
    for (const Peer& p : peers_) {
      short ev = p.state == PeerState::kAlive ? POLLIN : 0;
      if (p.fd.valid() && !p.outbox.empty()) ev |= POLLOUT;
      fds.push_back({p.fd.valid() ? p.fd.get() : -1, ev, 0});
    }
    ::poll(fds.data(), fds.size(), delivering ? std::min(msUntil(nextBeat), 1) : msUntil(nextBeat));
    const int64_t wokeNs = std::chrono::nanoseconds(Clock::now().time_since_epoch()).count();
    if (fds[0].revents & POLLIN) {
      uint64_t n;
      (void)!::read(wakeFd_.get(), &n, sizeof(n));
    }
    bool read = false;
    for (size_t i = 0; i < peers_.size(); ++i) {
      if (fds[i + 1].revents & (POLLIN | POLLERR | POLLHUP)) {
        readFrom(peers_[i]);
        read = true;
      }
      if (fds[i + 1].revents & POLLOUT) flush(peers_[i]);
    }
    if (read) readAt = Clock::now();
    evaluate();
    sendFailure();
    sendSplitReports();
    if (failureSent_.load() && !failureDelivered_.load()) checkDelivered();
    if (Clock::now() >= nextBeat) {
      broadcastStatus();
      // The next tick, or the keepalive's time where that comes first: checked only at 200 ms
      // ticks, a 500 ms keepalive went every 600 ms (helper-101).
      nextBeat = std::min(Clock::now() + interval_, lastBeatAt_ + keepAlive());
    }
    // After reading: catchUp() waits for a mark newer than the stall, set once what arrived
    // meanwhile has been read.
    watchdogRanNs_.store(wokeNs);
  }
  sendFailure();  // a failure found just before destroy still reaches the peers, before the goodbye
  sendSplitReports();
  // Goodbye: the last op completed here, so peers still finishing it know they lose nothing; and
  // the last ops entered, as in a heartbeat: a call this rank finished alone (a rooted op, or
  // count 0) made with other arguments than a peer still waiting in it, and left at once, may
  // never have been in a heartbeat (one every 200 ms), and that peer could only say it left.
  ControlMsg bye = progress(kGoodbye);
  bye.flags = (aborted_.load() ? kByeAborted : 0) | (exiting_.load() ? kByeExiting : 0);
  // Best effort: a peer that does not read its control connection is gone anyway. Peers close
  // at once on reading it, so this waits only for a stopped or unreachable peer: up to 2 s (a
  // quarter of LOCKSTEP_TIMEOUT where that is less), 100 ms for an abort. With 100 ms for every
  // leave, a goodbye lost once on a link of 100 ms each way and 10 % loss was retransmitted after
  // the close: the peer's next heartbeat drew a reset, and it reported a clean leave as "lost
  // ... (no goodbye)" in about one run of six.
  const Deadline by = Deadline::after(aborted_.load() ? std::chrono::milliseconds(100) : goodbyeWait_);
  // A peer silent past the unresponsive mark (stopped, hung, or beyond a cut link) is not waited
  // for: it gets what its socket takes at once. Waited for, it cost every destroy, and an exit
  // per communicator, the whole deadline after a partition (2 s each: helper-91).
  const Deadline now = Deadline::after(std::chrono::milliseconds(0));
  const Clock::time_point silentSince = Clock::now() - unresponsive_;
  std::vector<Fd> open, silent;
  for (Peer& p : peers_) {
    queue(p, bye);
    if (!p.fd.valid()) continue;
    const bool isSilent = p.lastHeard < silentSince;
    try {
      sendAll(p.fd.get(), p.outbox.data(), p.outbox.size(), isSilent ? now : by);
    } catch (const std::exception&) {
    }
    (isSilent ? silent : open).push_back(std::move(p.fd));
  }
  // A peer closes its end once it has read the goodbye. Closing ours first, with its latest
  // status unread, reset the connection and could take the goodbye with it: that peer then
  // reported this rank lost ("no goodbye") although it left cleanly. (What a silent peer sent
  // is read before the close, so the goodbye still waits for it in order.)
  closeGracefully(silent, now);
  closeGracefully(open, by);
}

void Health::sendFailure() {
  if (failed_.load() == lockstepSuccess || failureSent_.exchange(true)) return;
  ControlMsg m{};
  m.type = kFailure;
  std::string text;
  {
    std::lock_guard<std::mutex> lock(mu_);
    m.code = failed_.load();
    m.culprit = failureCulprit_;
    m.origin = failureOrigin_;
    if (failureAfterOp_) {
      m.flags = kFailAfterOp;
      m.completed = *failureAfterOp_;
    }
    // The finder's own words: each relay once put "rank R (host:pid) reports: " in front, and
    // after a few relays the cut at the message's end took the culprit's name.
    text = fitText(failureRaw_);
  }
  failureSentAt_ = Clock::now();
  for (Peer& p : peers_) queue(p, m, text);
}

ControlMsg Health::progress(uint32_t type, uint64_t* named) const {
  ControlMsg m{};
  m.type = type;
  m.entered = entered_.load(std::memory_order_acquire);
  m.completed = completed_.load(std::memory_order_acquire);
  m.fp = myFingerprint().tag();
  m.prevFp = myFingerprint(/*previous=*/true).tag();
  // Every op since the last heartbeat, so that peers compare each (evaluate): sampled every 500
  // ms, a rank stepping every 100-200 ms had ops no heartbeat named, and a count-0 call made
  // with other arguments there went unreported (helper-103). Up to the first op not entered yet
  // (a staged op behind a cuda_ipc kernel's), which the next heartbeat names.
  static_assert(sizeof(m.text) == kBeatOps * sizeof(MessageTag));
  uint64_t seq = std::max(namedThrough_, m.entered > kBeatOps ? m.entered - kBeatOps : 0) + 1;
  for (; seq <= m.entered; ++seq) {
    const Fingerprint fp = myFingerprintAt(seq);
    if (fp.seq != seq) break;
    const MessageTag tag = fp.tag();
    std::memcpy(m.text + m.textBytes, &tag, sizeof(tag));
    m.textBytes += sizeof(tag);
  }
  if (named) *named = seq - 1;
  return m;
}

void Health::broadcastStatus() {
  uint64_t named = 0;
  ControlMsg m = progress(kStatus, &named);
  m.p2p = p2p_.load(std::memory_order_relaxed);
  // Nothing new since the last one (an idle rank, or one waiting in an op): only a keepalive,
  // every quarter of the silence after which a peer counts as not responding. Every interval
  // an idle rank of N sent N - 1 messages that said what the last ones had.
  // News goes once it has held for a tick: a rank that waits (for a peer that called another
  // collective, or never came) is the one whose state its peers need, and it has stopped
  // changing. A rank making progress changes it between every two ticks, and what it is in now
  // is stale at the next: it sends only the keepalive, which carries it too. It sent every
  // peer every tick before, N^2 messages a tick across a busy job (five a second per peer).
  const Clock::time_point now = Clock::now();
  const Beat beat{m.entered, m.completed, m.fp, m.prevFp, m.p2p};
  const bool held = beat == lastSample_;
  lastSample_ = beat;
  if ((beat == lastBeat_ || !held) && now - lastBeatAt_ < keepAlive()) return;
  lastBeat_ = beat;
  lastBeatAt_ = now;
  namedThrough_ = named;
  for (Peer& p : peers_) {
    if (p.outbox.size() < kMaxOutbox) queue(p, m);
  }
}

void Health::queue(Peer& p, const ControlMsg& m, const std::string& text) {
  if (!p.fd.valid() || p.state == PeerState::kLost) return;
  ControlMsg out = m;
  out.magic = kControlMagic;
  // All but the text's last piece go first, in kText messages, each field full (no NUL).
  constexpr size_t kPiece = sizeof(out.text);
  size_t at = 0;
  for (; text.size() - at > kPiece; at += kPiece) {
    ControlMsg piece{};
    piece.magic = kControlMagic;
    piece.type = kText;
    piece.textBytes = kPiece;
    std::memcpy(piece.text, text.data() + at, kPiece);
    p.outbox.append(reinterpret_cast<const char*>(&piece), kHeaderBytes + kPiece);
  }
  if (!text.empty()) {  // else what the message carries already (a heartbeat's ops), if anything
    out.textBytes = static_cast<uint32_t>(text.size() - at);
    std::memcpy(out.text, text.data() + at, out.textBytes);
  }
  p.outbox.append(reinterpret_cast<const char*>(&out), kHeaderBytes + out.textBytes);
  flush(p);
}

// Why a control connection failed, where the system said: a timeout or an unreachable host is
// the network (TCP gave up retransmitting), not a process that exited.
std::string Health::brokenBy(int err) {
  if (err == 0) return "";
  std::string why = std::string(" (") + std::strerror(err) + ", errno " + std::to_string(err);
  if (isNetworkFailure(err)) why += std::string(": ") + kNetworkFailed;
  return why + ")";
}

void Health::flush(Peer& p) {
  while (!p.outbox.empty() && p.fd.valid()) {
    ssize_t n = ::send(p.fd.get(), p.outbox.data(), p.outbox.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      p.outbox.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    lost(p, "its control connection broke" + brokenBy(n < 0 ? errno : 0));
    return;
  }
}

size_t Health::controlHeaderBytes() { return kHeaderBytes; }
size_t Health::controlTextBytesAt() { return offsetof(ControlMsg, textBytes); }
uint32_t Health::controlMagic() { return kControlMagic; }

void Health::readFrom(Peer& p) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(p.fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      p.inbox.append(buf, static_cast<size_t>(n));
      size_t at = 0;  // what has been taken, erased once: a read holds dozens of heartbeats
      while (p.inbox.size() - at >= kHeaderBytes) {
        ControlMsg m{};
        std::memcpy(static_cast<void*>(&m), p.inbox.data() + at, kHeaderBytes);
        if (m.magic != kControlMagic || m.textBytes > sizeof(m.text)) {
          lost(p, "it sent a malformed control message");
          return;
        }
        if (p.inbox.size() - at < kHeaderBytes + m.textBytes) break;  // its text comes later
        std::memcpy(m.text, p.inbox.data() + at + kHeaderBytes, m.textBytes);
        at += kHeaderBytes + m.textBytes;
        handle(p, m);
        if (p.state != PeerState::kAlive) return;
      }
      p.inbox.erase(0, at);
      // Short: the socket is empty (a stream's recv gives all it holds, up to the buffer), and
      // poll says when more comes. A second recv to hear EAGAIN was a syscall per peer per wake.
      if (static_cast<size_t>(n) < sizeof(buf)) return;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    // EOF or reset without a goodbye: the process died or its connection broke.
    if (n < 0 && errno != ECONNRESET) {
      lost(p, "its control connection broke" + brokenBy(errno));
    } else {
      lost(p, "it exited or its connection broke (no goodbye)");
    }
    return;
  }
}

void Health::handle(Peer& p, const ControlMsg& m) {
  std::lock_guard<std::mutex> lock(mu_);
  p.lastHeard = Clock::now();
  // What a heartbeat or a goodbye says the peer entered and completed, unless it is older than
  // what is known or malformed.
  auto takeProgress = [&] {
    Fingerprint fp;
    if (m.entered < p.entered || m.completed > m.entered || !Fingerprint::fromTag(m.fp, &fp)) return false;
    p.entered = m.entered;
    p.completed = m.completed;
    p.fp = fp;
    // Absent before a rank's second op: then nothing is one op behind it.
    if (!Fingerprint::fromTag(m.prevFp, &p.prevFp)) p.prevFp = Fingerprint{};
    remember(p, p.fp);
    remember(p, p.prevFp);
    // The ops it names besides: recent ones only, whatever a broken peer sends.
    for (size_t at = 0; at + sizeof(MessageTag) <= m.textBytes; at += sizeof(MessageTag)) {
      MessageTag tag;
      std::memcpy(&tag, m.text + at, sizeof(tag));
      Fingerprint op;
      if (Fingerprint::fromTag(tag, &op) && op.seq <= m.entered && op.seq + kBeatOps > m.entered) remember(p, op);
    }
    return true;
  };
  std::string text;
  if (m.type == kFailure || m.type == kSplitFailed) text = textOf(m, &p.textHead);
  switch (m.type) {
    case kStatus:
      if (takeProgress()) p.p2p = m.p2p;
      break;
    case kFailure:
      if (failed_.load() == lockstepSuccess && isFailureCode(m.code)) {
        // Named after the rank that found it, whoever relayed it (a relay keeps the origin).
        const bool known = std::any_of(peers_.begin(), peers_.end(), [&](const Peer& q) { return q.rank == m.origin; });
        const int culprit = m.culprit >= 0 && m.culprit < static_cast<int>(peers_.size()) + 1 ? m.culprit : -1;
        if (m.flags & kFailAfterOp) {
          failAfterOp(static_cast<lockstepResult_t>(m.code), culprit, known ? m.origin : p.rank, text, m.completed);
          break;
        }
        failureRaw_ = text;
        failureOrigin_ = known ? m.origin : p.rank;
        failureCulprit_ = culprit;
        // Relayed to every peer (sendFailure), so each goodbye this rank sends later is
        // preceded by the cause on the same connection: no peer can mistake the consequence
        // (this rank leaving) for the failure.
        failed_.store(m.code);
        LS_WARN(rank_, "communicator failed: " << failureText());
        notifyFailed();
      }
      break;
    case kSplitFailed:
      if (isFailureCode(m.code)) {
        if (splitFailures_.size() >= 16) splitFailures_.erase(splitFailures_.begin());
        splitFailures_.push_back(
            {m.entered, p.rank, static_cast<lockstepResult_t>(m.code), p.name + " reports: " + text});
      }
      break;
    case kText:
      if (p.textHead.size() + sizeof(m.text) <= kMaxText) p.textHead.append(m.text, strnlen(m.text, sizeof(m.text)));
      break;
    case kGoodbye:
      p.state = PeerState::kLeft;
      takeProgress();
      p.completed = std::max(p.completed, m.completed);
      p.fd.reset();
      p.aborted = (m.flags & kByeAborted) != 0;
      p.exiting = (m.flags & kByeExiting) != 0;
      // An abort fails the ops the aborter did not complete, as a goodbye does (checkPeersStay,
      // evaluate), and this communicator once this rank has finished the others: failed at once,
      // a peer's copy of the all-reduce after which a watchdog aborted failed where the
      // aborter's had succeeded (helper-89: 5 of 60 on 3 ranks).
      if (p.aborted) failAfterOp(lockstepRemoteError, p.rank, rank_, p.name + " aborted its communicator", p.completed);
      break;
    default:
      break;
  }
}

void Health::lost(Peer& p, const std::string& why) {
  std::string msg;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (p.state != PeerState::kAlive) return;
    p.state = PeerState::kLost;
    p.fd.reset();
    msg = "lost " + p.name + ": " + why + " while rank " + std::to_string(rank_) + " was at op #" +
          std::to_string(entered_.load()) + " (its last heartbeat reported op #" + std::to_string(p.completed) +
          " done)";
  }
  fail(lockstepRemoteError, p.rank, msg);
}

bool Health::pastOp(uint64_t after) const {
  const uint64_t entered = entered_.load(std::memory_order_acquire);
  const uint64_t completed = completed_.load(std::memory_order_acquire);
  return entered > completed ? entered > after : completed >= after;
}

// A departure's consequence, found here or relayed: it applies once this rank is past op
// `after`, so a peer still finishing an op the departed rank completed finishes it. It is relayed
// with `after` (kFailAfterOp), as every failure is: unrelayed, a rank that left because another
// had left looked like the first one to the peers behind it (helper-90).
void Health::failAfterOp(lockstepResult_t code, int culprit, int origin, const std::string& text, uint64_t after) {
  if (failed_.load() != lockstepSuccess) return;
  // The first one wins, unless this one applies now and it does not yet.
  if (!pending_ || (pastOp(after) && !pastOp(pending_->after)))
    pending_ = PendingFailure{code, culprit, origin, text, after};
  applyPending(/*force=*/false);
}

bool Health::applyPending(bool force) {
  if (!pending_ || failed_.load() != lockstepSuccess || (!force && !pastOp(pending_->after))) return false;
  const PendingFailure f = std::move(*pending_);
  pending_.reset();
  failureRaw_ = f.text;
  failureOrigin_ = f.origin;
  failureCulprit_ = f.culprit;
  failureAfterOp_ = f.after;
  failed_.store(f.code);
  LS_WARN(rank_, "communicator failed: " << failureText());
  notifyFailed();
  return true;
}

std::string Health::leftBefore(const Peer& p, uint64_t seq) const {
  return p.name + (p.aborted ? " aborted its communicator after op #" : " left the communicator after op #") +
         std::to_string(p.completed) + ", so op #" + std::to_string(seq) + " on rank " + std::to_string(rank_) +
         " cannot complete";
}

void Health::checkPeersStay(uint64_t seq) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_ && seq > pending_->after) applyPending(/*force=*/true);  // heard while finishing earlier ops
    for (const Peer& p : peers_) {
      if (p.state == PeerState::kLeft && p.completed < seq) {
        failAfterOp(lockstepRemoteError, p.rank, rank_, leftBefore(p, seq), p.completed);
        break;
      }
    }
  }
  wake();  // the watchdog relays it
  check();
}

void Health::remember(Peer& p, const Fingerprint& fp) {
  if (fp.seq == 0) return;
  HeardOp& h = p.ops[fp.seq % kBeatOps];
  if (h.fp.seq == fp.seq && h.fp.tag() == fp.tag()) return;
  h = HeardOp{fp, false};
}

void Health::evaluate() {
  const uint64_t entered = entered_.load(std::memory_order_acquire);
  const bool inOp = entered > completed_.load(std::memory_order_acquire);
  if (entered == 0 || failed_.load() != lockstepSuccess) return;
  // Idle, the op this rank finished last is still compared: ops that exchange no data (count 0)
  // or let a rank finish alone (a broadcast whose ranks named different roots) complete on both
  // sides, and only this comparison can tell them apart.
  const Fingerprint mine = myFingerprint();
  std::string problem;
  int culprit = -1;
  lockstepResult_t code = lockstepSuccess;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A departure heard while this rank finished ops the departed rank had completed.
    if (applyPending(/*force=*/false)) return;
    for (Peer& p : peers_) {
      if (inOp && p.state == PeerState::kLeft && p.completed < entered) {
        failAfterOp(lockstepRemoteError, p.rank, rank_, leftBefore(p, entered), p.completed);
        return;
      }
      // Same sequence number, different op: the two may never exchange a message to notice.
      // Each op a peer's heartbeats named is compared once this rank has entered its own op of
      // that number: a peer may be ops further (a rooted op let it finish without this rank), or
      // behind, at an op this rank finished without it (count-0 calls move nothing: three of
      // them once left a peer waiting out its timeout), compared from the history.
      for (HeardOp& h : p.ops) {
        const Fingerprint& theirs = h.fp;
        if (h.checked || theirs.seq == 0 || theirs.seq > entered) continue;
        const Fingerprint mineThen = theirs.seq == entered ? mine : myFingerprintAt(theirs.seq);
        // Not this rank's op of that number: gone from the history (checked as far as it can
        // be), or entered after `entered` was read (compared at the next evaluate).
        if (mineThen.seq != theirs.seq) {
          h.checked = theirs.seq + kHistory <= entered;
          continue;
        }
        h.checked = true;
        const char* field = mineThen.firstDifference(theirs);
        if (!field) continue;
        problem = "collective mismatch: rank " + std::to_string(rank_) + " called " + mineThen.describe() + " but " +
                  p.name + " called " + theirs.describe() + "; first difference: " + field +
                  (p.state == PeerState::kLeft ? " (then it left the communicator)" : "");
        culprit = p.rank;
        code = lockstepMismatch;
        break;
      }
      if (code != lockstepSuccess) break;
    }
  }
  if (code != lockstepSuccess) fail(code, culprit, problem);
}

}  // namespace lockstep
