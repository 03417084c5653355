#include "src/core/communicator.h"

#include <sys/prctl.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <system_error>
#include <unordered_set>

#include "bootstrap/root_service.h"
#include "bootstrap/tcp_bootstrap.h"
#include "kernels/dtype.h"
#include "src/core/errors.h"
#include "src/core/keep.h"
#include "src/core/logging.h"
#include "src/core/thread_name.h"
#include "src/exec/cuda_driver.h"
#include "src/topo/ordering.h"
#include "transport/cuda_ipc/cuda_ipc.h"
#include "transport/fifo_link.h"

namespace lockstep {
namespace {

constexpr int kTagSplit = 0x53500000;  // + the split's sequence number

}  // namespace

Communicator::Communicator(Config config, std::unique_ptr<Bootstrap> bootstrap, uint64_t commId, const Secret& secret,
                           const NetAddr& localAddr)
    : config_(std::move(config)),
      bootstrap_(std::move(bootstrap)),
      rank_(bootstrap_->rank()),
      nranks_(bootstrap_->size()),
      localAddr_(localAddr),
      commId_(commId) {
  preciseTimes_ = !config_.tracePath.empty();
  peers_.resize(nranks_);
  peers_[rank_] = localPeerInfo(rank_, config_, localAddr);
  peers_[rank_].cudaIpc = IpcEngine::locallyAvailable(config_) ? 1 : 0;
  bootstrap_->allGather(peers_.data(), sizeof(PeerInfo));
  for (int r = 0; r < nranks_; ++r) {
    terminateStrings(&peers_[r]);
    // A record is named after its slot: one that says another rank was taken as its word, and
    // named "rank -5" in every later message (helper-77).
    if (peers_[r].rank != r) {
      throw RemoteError(r, "the peer record of rank " + std::to_string(r) + " names it rank " +
                               std::to_string(peers_[r].rank) + " (" + peers_[r].describe() + ")");
    }
  }
  checkPeersAgree(peers_);
  checkCrossHostAddresses(peers_);
  planRing();
  connectLinks(commId, secret, localAddr);
  // cuda_ipc when the whole communicator is on one host and every rank can map device memory:
  // decided from the shared peer table, so every rank takes part in the exchange or none does.
  bool oneHost = true, everyRankCan = true;
  for (const PeerInfo& p : peers_) {
    oneHost = oneHost && p.hostHash == peers_[0].hostHash;
    everyRankCan = everyRankCan && p.cudaIpc == 1;
  }
  if (oneHost && everyRankCan) ipc_ = IpcEngine::connect(config_, *bootstrap_, peers_, rank_);
  tuning_ = parseTunerSettings(config_.algo, config_.deterministic);
  linkCost_ = globalLinkCost();
  for (auto& sizes : loggedChoice_) sizes.fill(Algorithm::kCount);
  if (config_.measuredTuning) {
    measured_ = std::make_unique<MeasuredTuner>(nranks_, linkCost_, tuning_);
    agreeFn_ = [this](double* v, int n) { agreeMax(v, n); };
  }

  std::vector<Link*> raw(nranks_);
  std::vector<std::string> names(nranks_);
  for (int r = 0; r < nranks_; ++r) {
    raw[r] = links_[r].get();
    names[r] = peers_[r].describe();
  }
  executor_ = std::make_unique<HostExecutor>(rank_, std::move(raw), std::move(names), config_.slotBytes,
                                             config_.timeout, aborted_.get());
  health_ = std::make_unique<Health>(TransportContext{config_, *bootstrap_, peers_, rank_, commId, secret, localAddr});
  executor_->setMonitor(health_.get());
  health_->setSerialProgress(ipc_ == nullptr);  // kernels report progress from other threads
  if (ipc_) {
    // A peer that dies (or a failure any rank reports) stops this rank's kernels at once, as it
    // stops host ops; the async error then names the culprit.
    health_->setFailureHook([engine = ipc_.get()] { engine->abort(); });
    if (health_->failure() != lockstepSuccess) ipc_->abort();
    // And a kernel's own failure (a timeout, a mismatch) reaches the group, as a host op's does.
    ipc_->setFailureSink([health = health_.get()](lockstepResult_t code, int culprit, const std::string& text) {
      health->fail(code, culprit, text);
    });
    ipc_->setCompletionSink([this](uint64_t token, uint64_t seq, lockstepResult_t code) {
      if (code == lockstepSuccess && seq) health_->completed(seq);
      if (code == lockstepTimeout) kernelTimedOut_.store(true);
      std::lock_guard<std::mutex> lock(kernelRecordMu_);
      kernelRecorder_.ended(token, code, Clock::now());
    });
  }
  // How waits spin and yield follows how full this host is (src/exec/backoff.h).
  const uint64_t host = peers_[rank_].hostHash;
  const int ranksHere = ranksOn(host);
  const int cpus = hostCpus(peers_, host);
  inlineWait_ = waitProfileFor(ranksHere, cpus, /*background=*/false);
  backgroundWait_ = waitProfileFor(ranksHere, cpus, /*background=*/true);
  if (ranksHere >= cpus) {
    LS_INFO(rank_,
            ranksHere
                << " ranks on this host's " << cpus << " CPU(s): waits "
                << (ranksHere > cpus
                        ? "yield at once"
                        : "spin briefly, then yield (background ops: yield at once while a caller waits, else sleep)"));
  }
  for (InlinePlan& p : inline_) {
    p.work.schedule.steps.reserve(4 * static_cast<size_t>(nranks_));
    p.work.schedule.laneEnds.reserve(2 * static_cast<size_t>(nranks_) + 2);
  }
  bootstrap_->endSetup();
}

Communicator::~Communicator() {
  // Kernels still queued hold this rank's segment and pinned programs, and their host functions
  // call back into the engine: wait for them, with the failure hook still on (a peer failing
  // meanwhile stops them). A stream that never runs leaves them queued: the engine is then kept.
  if (ipc_ && !ipc_->drain(config_.timeout + std::chrono::seconds(1), aborted_.get())) {
    LS_WARN(rank_, "cuda_ipc kernels still queued at destroy (on a stream that never ran?): their memory is kept");
    ipc_->setFailureSink(nullptr);
    ipc_->setCompletionSink(nullptr);
    keepForever(ipc_.release());  // reachable: a leak checker tells it from a real leak
  }
  health_->setFailureHook(nullptr);  // the watchdog outlives ipc_
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (progress_.joinable()) progress_.join();
  // An abort that came while this destroy drained the queue (through the shared flag) is
  // announced as one: peers are told this rank aborted, not that it left.
  if (aborted_->load()) health_->markAborted();
  // Nothing executes any more: the recorder can be read. A kernel that timed out dumps here,
  // not on the driver's callback thread, which must not read the host track while it is written.
  if (aborted_->load() || kernelTimedOut_.load() || !config_.tracePath.empty()) dumpTrace();
}

void Communicator::planRing() {
  std::vector<uint64_t> hosts;
  for (const PeerInfo& p : peers_) hosts.push_back(p.hostHash);
  ringOrder_ = RingOrder(hostContiguousOrder(peers_));
  if (rank_ == 0 && nranks_ > 1) {
    std::vector<uint64_t> distinct = hosts;
    std::sort(distinct.begin(), distinct.end());
    const auto hostCount = std::unique(distinct.begin(), distinct.end()) - distinct.begin();
    LS_INFO(rank_, "ring: " << describeRing(hosts, ringOrder_.rankAt) << " (" << hostCount << " host(s), "
                            << hostCrossings(hosts, ringOrder_.rankAt) << " host crossing(s); "
                            << (ringOrder_.isIdentity() ? "rank order" : "reordered to keep each host's ranks together")
                            << ")");
  }
}

const char* Communicator::transportBetween(int a, int b) const {
  if (a == b) return "self";
  for (const auto& t : transports_) {
    if (t->canConnect(peers_[a], peers_[b])) return t->name();
  }
  return "none";
}

void Communicator::dumpTrace() {
  // Dumps nobody asked for (no LOCKSTEP_TRACE: a timeout's, an abort's) are capped per process:
  // a job that aborts and rebuilds its communicators wrote a file per communicator and rank each
  // time, without end (helper-80). The first ones hold the failure that started it.
  static std::atomic<int> unasked{0};
  if (const int n = config_.tracePath.empty() ? unasked.fetch_add(1) : 0; n >= kMaxUnaskedDumps) {
    if (n == kMaxUnaskedDumps) {
      LS_WARN(rank_, "flight recorder: " << kMaxUnaskedDumps
                                         << " dumps written by this process already; no more without LOCKSTEP_TRACE");
    }
    return;
  }
  std::lock_guard<std::mutex> lock(kernelRecordMu_);
  // The job names the communicator too: two made by init in one process have the same name and
  // rank 0, and lockstep-trace mixed their dumps without noticing (helper-69).
  char id[17];
  std::snprintf(id, sizeof(id), "%016llx", static_cast<unsigned long long>(commId_));
  FlightRecorder::dump(claimTracePath(tracePath(config_, rank_, traceName_), commId_), rank_, peers_[rank_].describe(),
                       traceName_, peers_[0].describe() + ", communicator " + id, {&recorder_, &kernelRecorder_});
}

void Communicator::connectLinks(uint64_t commId, const Secret& secret, const NetAddr& localAddr) {
  TransportContext ctx{config_, *bootstrap_, peers_, rank_, commId, secret, localAddr};
  using Factory = std::unique_ptr<Transport> (*)(const TransportContext&);
  // Preference order: the first transport that can reach a peer wins.
  const std::pair<const char*, Factory> kinds[] = {
      {"inproc", makeInprocTransport}, {"shm", makeShmTransport}, {"socket", makeSocketTransport}};
  links_.resize(nranks_);
  transportNames_.assign(nranks_, "self");
  // A rank's sends to itself: not pre-faulted (see HeapFifo).
  auto self = std::make_shared<HeapFifo>(config_.slots, config_.slotBytes, /*prefault=*/false);
  links_[rank_] = std::make_unique<FifoLink>(self->header, self->header, config_.slots, config_.slotBytes, self, Fd(),
                                             "rank " + std::to_string(rank_), rank_);
  std::vector<int> chosen(nranks_, -1);
  for (const auto& [name, factory] : kinds) {
    // Every rank has the same allowed list (checked with the wire config), so every rank creates
    // the same transports in the same order, as connect() is collective.
    if (config_.transportAllowed(name)) transports_.push_back(factory(ctx));
  }
  for (int p = 0; p < nranks_; ++p) {
    if (p == rank_) continue;
    for (size_t t = 0; t < transports_.size() && chosen[p] < 0; ++t) {
      if (transports_[t]->canConnect(peers_[rank_], peers_[p])) chosen[p] = static_cast<int>(t);
    }
    if (chosen[p] < 0) {
      // The one reason shm may refuse a peer on this host that a user can change.
      const bool otherUser = peers_[p].hostHash == peers_[rank_].hostHash && peers_[p].euid != peers_[rank_].euid;
      throw InvalidUsage("no allowed transport reaches " + peers_[p].describe() + " from rank " +
                         std::to_string(rank_) + " (" + config_.wireSummary() + ")" +
                         (otherUser ? ": it runs as another user (uid " + std::to_string(peers_[p].euid) +
                                          ", this rank " + std::to_string(peers_[rank_].euid) +
                                          "), whose shared memory this rank cannot open; allow socket in "
                                          "LOCKSTEP_TRANSPORTS"
                                    : std::string()));
    }
  }
  for (size_t t = 0; t < transports_.size(); ++t) {
    std::vector<int> peers;
    for (int p = 0; p < nranks_; ++p) {
      if (chosen[p] == static_cast<int>(t)) peers.push_back(p);
    }
    auto links = transports_[t]->connect(peers);
    for (size_t i = 0; i < peers.size(); ++i) {
      links_[peers[i]] = std::move(links[i]);
      transportNames_[peers[i]] = transports_[t]->name();
      const PeerInfo& peer = peers_[peers[i]];
      if (std::strcmp(transports_[t]->name(), "socket") == 0) {
        const PeerInfo& me = peers_[rank_];
        LS_INFO(rank_, "rank " << rank_ << " -> " << peer.describe() << " via socket (" << me.ifnameStr() << " "
                               << me.addr.hostStr() << " -> " << peer.ifnameStr() << " " << peer.addr.hostStr() << ", "
                               << (me.hostHash == peer.hostHash ? "same host" : "another host") << ")");
      } else {
        LS_INFO(rank_, "rank " << rank_ << " -> " << peer.describe() << " via " << transports_[t]->name());
      }
    }
  }
}

namespace {
// Fitted with the shm costs (perf/tuner_check.sh, 2 and 4 ranks on 2 vCPUs, waiting by yielding):
// a dependent step then waits for the peer to be scheduled again, a yield round trip (~1.6 us
// in all, not 0.05), and each message a one-shot algorithm sends costs a few yields of its own.
// Added, not multiplied: a socket step's 8 us already includes its own wake-ups.
constexpr double kYieldStepUs = 1.55;
constexpr double kYieldGapUs = 0.3;
}  // namespace

int Communicator::ranksOn(uint64_t host) const {
  return static_cast<int>(
      std::count_if(peers_.begin(), peers_.end(), [&](const PeerInfo& p) { return p.hostHash == host; }));
}

bool Communicator::hostIsFull(uint64_t host) const { return ranksOn(host) >= hostCpus(peers_, host); }

LinkCost Communicator::globalLinkCost() const {
  // The slowest transport any pair of ranks uses. Every rank computes it from the same PeerInfo
  // table, so every rank's tuner sees the same costs and picks the same algorithms.
  LinkCost worst = kFreeLink;
  bool any = false;
  for (int i = 0; i < nranks_; ++i) {
    for (int j = i + 1; j < nranks_; ++j) {
      for (const auto& t : transports_) {
        if (!t->canConnect(peers_[i], peers_[j])) continue;
        worst = slowerOf(worst, defaultLinkCost(t->name()));
        any = true;
        break;
      }
    }
  }
  if (!any) worst = defaultLinkCost("shm");
  // Ranks waiting by yielding (on some full host): every dependent step of a schedule waits for
  // a rank to be scheduled again. Every rank sees the same table, so all add it or none does.
  std::unordered_set<uint64_t> hosts;
  for (const PeerInfo& p : peers_) hosts.insert(p.hostHash);
  if (std::any_of(hosts.begin(), hosts.end(), [&](uint64_t h) { return hostIsFull(h); })) {
    worst.alphaUs += kYieldStepUs;
    worst.gapUs += kYieldGapUs;
  }
  if (config_.linkLatencyUs > 0) worst.alphaUs = config_.linkLatencyUs;
  if (config_.linkGBps > 0) worst.gbps = config_.linkGBps;
  worst.sliceBytes = static_cast<double>(config_.slotBytes);  // what trees and chains forward whole
  return worst;
}

// ---- execution ----

void Communicator::finish(Work& w, lockstepResult_t result, const std::string& error) {
  if (w.gate.active) streamOrder_->done(w.gate);  // the stream goes on, whatever the outcome
  w.result = result;
  if (result != lockstepSuccess) {
    // Ranks in the message are this communicator's; a program with several says which one (the
    // name its trace files carry: "split2c0", its parent's second split, color 0).
    w.error = traceName_.empty() ? error : error + " [communicator " + traceName_ + "]";
  }
  // Only queued work has waiters (lockstepWait, a blocking call queued behind it): an op run
  // inline, the small-message path, keeps a plain release store, without markDone's fence.
  if (w.queued == Clock::time_point{}) {
    w.done.store(true, std::memory_order_release);
  } else {
    w.markDone();
  }
}

void Communicator::execute(Work& w, bool background) {
  if (aborted_->load()) return finish(w, lockstepAborted, w.info.label() + ": communicator aborted");
  if (brokenCode_ != lockstepSuccess) {
    return finish(w, brokenCode_, "communicator unusable after an earlier failure: " + brokenReason());
  }
  const uint64_t seq = w.info.fp.seq;  // 0 for send/recv: not tracked by the group
  MessageCounts self;
  if (!seq && isPointToPoint(static_cast<OpKind>(w.info.fp.kind))) {
    self = messagesWith(w.schedule, rank_, config_.slotBytes);  // send/recv Works move bytes
    // Refused before anything moves, so the communicator stays usable.
    if (std::string why = selfDeadlock(w, self); !why.empty()) return finish(w, lockstepInvalidUsage, why);
  }
  // The measured tuner times a queued call from here, not from the call: the wait for the work
  // ahead of it made a 64-byte all-reduce "take" milliseconds (helper-80, helper-84).
  if (background) w.ranAt = Clock::now();
  const Clock::time_point start = stamp();  // the op's deadline and its flight-recorder entry
  recorder_.started(w.info, w.peers, w.queued == Clock::time_point{} ? start : w.queued, start);
  try {
    Deadline deadline(start + config_.timeout);
    if (w.gate.active) {
      // The input exists once the stream has reached the op; the op's own time starts then.
      streamOrder_->awaitOpened(w.gate, deadline, *aborted_, w.info.label());
      deadline = Deadline::after(config_.timeout);
    }
    // The copy of an in-place input, for the algorithms that need one (bindBuffers): taken now,
    // once every op before this one has run.
    allocateOwnBuffers(&w, rank_);
    if (w.stagedFrom) std::memcpy(w.staging.data(), w.stagedFrom, w.stagingBytes);
    health_->catchUpIfStalled(start);
    health_->check();
    if (seq) health_->entered(w.info.fp);
    // A send or receive takes no number; the heartbeat says where this rank waits instead,
    // until the op ends however it ends.
    struct InPointToPoint {
      Health* health;
      ~InPointToPoint() {
        if (health) health->inPointToPoint("", -1);
      }
    } p2p{!seq && w.peers.n > 0 ? health_.get() : nullptr};
    if (p2p.health) p2p.health->inPointToPoint(w.info.kind, w.peers.rank[0]);
    executor_->setWaitProfile(background ? backgroundWait_ : inlineWait_);
    executor_->run(w.schedule, w.buffers, w.info, deadline);
    const Clock::time_point end = stamp();
    // Stopped inside the op, this rank may find it done (its peers' data waited in shared
    // memory) where they failed it, for want of this rank: their report says so.
    if (health_->catchUpIfStalled(end)) health_->check();
    if (seq) health_->completed(seq);
    selfHeld_ += self.sent - self.received;
    recorder_.ended(lockstepSuccess, end);
    if (!w.gate.failure.empty()) {
      // The op ran, but its result cannot reach the device buffers. This rank refuses later
      // work, so the group must hear it now: its peers would otherwise wait for it at their next
      // op until the timeout.
      markBroken(lockstepSystemError, w.gate.failure);
      health_->fail(lockstepSystemError, rank_, "rank " + std::to_string(rank_) + ": " + w.gate.failure);
      return finish(w, lockstepSystemError, w.gate.failure);
    }
    finish(w);
  } catch (const Error& e) {
    lockstepResult_t code = e.code();
    std::string text = e.what();
    int culprit = -1;
    if (auto* r = dynamic_cast<const RemoteError*>(&e)) culprit = r->rank;
    if (auto* m = dynamic_cast<const Mismatch*>(&e)) culprit = m->rank;
    if (code == lockstepRemoteError && health_->failure() == lockstepSuccess) {
      // A peer that vanished may only have been reacting to an earlier failure (it found another
      // rank dead and left): give the watchdog a moment to hear the root cause and report that.
      // Or it destroyed its communicator and lives on: its goodbye, sent before it closed its
      // data connections, says so, where a closed socket alone reads as a process that exited.
      auto left = [&] { return culprit >= 0 ? health_->departed(culprit) : std::string(); };
      Deadline grace = Deadline::after(std::chrono::milliseconds(100));
      std::string goodbye;
      while (health_->failure() == lockstepSuccess && (goodbye = left()).empty() && !grace.expired()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (!goodbye.empty() && text.find("left the communicator") == std::string::npos) {
        text = std::string(w.info.label()) + ": " + goodbye + " (" + text + ")";
      }
    }
    try {
      health_->check();
    } catch (const Error& g) {
      code = g.code();
      text = g.what();
      // A peer timed out first, waiting for this rank's data. If the network drops what this
      // rank sends it, that is the cause, and only this end sees it: the peer can only say it
      // waits (netns case mtu, where the report reached rank 0 before its own timeout).
      // Said as this rank's: inside the peer's report, "this rank" would read as the peer.
      if (code == lockstepTimeout) {
        const std::string stalls = executor_->stallNotes();
        if (!stalls.empty() && text.find(stalls) == std::string::npos) {
          text += ". Here on rank " + std::to_string(rank_) + ": " + stalls.substr(2);
        }
      }
    }
    // The links may be mid-message: refuse later work rather than risk wrong data.
    markBroken(code, text);
    // Tell the group, so every rank fails now with this culprit (the first failure wins, so a
    // failure heard from a peer is not sent back). An abort reaches peers as this rank's goodbye.
    if (code != lockstepAborted) health_->fail(code, culprit, text);
    recorder_.ended(code, stamp());
    // The state of every op this rank saw, for lockstep-trace: on a timeout always; on any other
    // failure where LOCKSTEP_TRACE asks for dumps, now and not only at destroy, which a program
    // that exits on the error, or a launcher that stops it, never reaches (destroy rewrites it).
    if (code == lockstepTimeout || !config_.tracePath.empty()) dumpTrace();
    finish(w, code, text);
  } catch (const std::exception& e) {
    // Out of memory, or a bug: as for any failure, later work is refused and the group told.
    const std::string text = "rank " + std::to_string(rank_) + ": internal error: " + e.what();
    markBroken(lockstepInternalError, text);
    health_->fail(lockstepInternalError, rank_, text);
    recorder_.ended(lockstepInternalError, stamp());
    finish(w, lockstepInternalError, text);
  }
}

std::string Communicator::selfDeadlock(const Work& w, const MessageCounts& self) {
  if (self.sent == 0 && self.received == 0) return {};  // only its peers: nothing to do with itself
  const std::string why = selfDeadlockReason(w, self);
  if (why.empty()) return why;
  // A group's sends and receives are one Work: its peers' part is refused with it, and their
  // matching calls wait. Said here, since the refusal otherwise speaks of this rank alone.
  for (int i = 0; i < w.peers.n; ++i) {
    if (w.peers.rank[i] != rank_) {
      return why +
             " (this group's sends and receives to other ranks were refused with it, and their matching calls "
             "there will wait until LOCKSTEP_TIMEOUT: post those to itself in a group of their own)";
    }
  }
  return why;
}

std::string Communicator::selfDeadlockReason(const Work& w, const MessageCounts& self) {
  const size_t slots = static_cast<size_t>(config_.slots);
  if (selfReceiveRefused_) {
    return w.info.label() + ": sends and receives to rank " + std::to_string(rank_) +
           " (itself) are refused since a receive from itself was: what they move could no longer be matched "
           "(a send queued behind that receive would be taken by the next receive)";
  }
  if (self.received > selfHeld_ + self.sent) {
    selfReceiveRefused_ = true;
    return w.info.label() + ": a receive from rank " + std::to_string(rank_) +
           " (itself) that no send to itself matches: it would wait for ever, since this rank's sends run "
           "one call after another. Post the send first, or both in one lockstepGroupStart/End";
  }
  if (selfHeld_ + self.sent - self.received > slots) {
    return w.info.label() + ": sending to rank " + std::to_string(rank_) + " (itself) can never end: it needs " +
           std::to_string(self.sent) + " messages of at most " + std::to_string(config_.slotBytes) +
           " bytes in the link to itself, which holds " + std::to_string(slots) + " (LOCKSTEP_SLOTS), " +
           std::to_string(selfHeld_) +
           " of them taken by earlier sends to itself, and only this rank's own receive, after the call, "
           "can free them. Post the send and its receive in one lockstepGroupStart/End (as NCCL requires)";
  }
  return {};
}

void Communicator::progressLoop() {
  // Its waits beside the caller's compute sleep in short steps on the link instead of yielding
  // (src/exec/backoff.h): the default 50 us timer slack made a 20 us step last 70.
  prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return (!queue_.empty() && !busy_) || (stop_ && queue_.empty()); });
    if (queue_.empty()) return;  // stopping, and nothing left to do
    std::shared_ptr<Work> w = std::move(queue_.front());
    queue_.pop_front();
    queued_.store(queue_.size());
    busy_.store(true);
    lock.unlock();
    execute(*w, /*background=*/true);
    lock.lock();
    busy_.store(false);
    cv_.notify_all();
  }
}

void Communicator::assignSeq(Work& w) {
  // Only collectives count: ranks that take no part in a send/recv must agree on the numbers.
  if (!isPointToPoint(static_cast<OpKind>(w.info.fp.kind))) w.info.fp.seq = ++seq_;
}

void Communicator::startProgress() {
  std::lock_guard<std::mutex> lock(mu_);
  if (progress_.joinable()) return;
  try {
    progress_ = std::thread([this] {
      nameThisThread("lockstep-prog");
      progressLoop();
    });
  } catch (const std::system_error& e) {
    throw SystemError("pthread_create", e.code().value(),
                      "starting the communicator's progress thread for non-blocking and queued work (a thread "
                      "limit: ulimit -u or a pids cgroup?)");
  }
}

void Communicator::abandon(std::span<const std::shared_ptr<Work>> works, const Error& why) {
  for (const auto& w : works) finish(*w, why.code(), why.what());
}

void Communicator::enqueue(std::span<const std::shared_ptr<Work>> works) {
  // The thread first: when the system refuses it, nothing is queued and no sequence number
  // taken, so no op runs after its call has failed, and the next call is numbered as on the
  // other ranks. The Works end with the error, for the requests and waits that hold them.
  try {
    startProgress();
  } catch (const SystemError& e) {
    abandon(works, e);
    throw;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& w : works) {
      assignSeq(*w);
      if (w->queued == Clock::time_point{}) w->queued = stamp();
      queue_.push_back(w);
    }
    queued_.store(queue_.size());
  }
  cv_.notify_all();
}

void Communicator::runNow(Work& w) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!busy_.load(std::memory_order_relaxed) && queue_.empty()) {
    busy_.store(true, std::memory_order_relaxed);  // read under mu_ by the progress thread
    assignSeq(w);
    w.queued = Clock::time_point{};  // inline: queued when it starts
    lock.unlock();
    execute(w, /*background=*/false);
    // Only the progress thread waits on busy_, and only with work queued behind this op. Either
    // this load sees what enqueue() queued, or the progress thread, woken by enqueue(), sees
    // busy_ false (both seq_cst). The destructor cannot run during a call.
    busy_.store(false);
    if (queued_.load() != 0) {
      lock.lock();  // not while the progress thread is between its check and its wait
      lock.unlock();
      cv_.notify_all();
    }
  } else {
    // Earlier work is queued: this op must wait its turn. Hand it to the progress thread.
    lock.unlock();
    auto shared = std::shared_ptr<Work>(&w, [](Work*) {});
    const CallerWaits waits;  // from before the op starts (src/exec/backoff.h)
    enqueue({&shared, 1});
    waitWork(w, Deadline::never());  // the op itself is bounded by its deadline
  }
  if (w.result != lockstepSuccess) throw Error(w.result, w.error);
}

void Communicator::run(const OpDesc& op) {
  // Training loops repeat the same calls: the same shape reuses its plan (a schedule is a pure
  // function of the shape) and only points it at the new buffers.
  Algorithm a = choose(op);
  MeasuredTuner::Pick pick{a};
  if (measured_ && !op.device && !isPointToPoint(op.kind)) {
    pick = measured_->pick(op.kind, tunerBytes(op), a, agreeFn_);  // inline unless a trial is on
    if (pick.decided) logDecision(op, a);
    a = pick.algorithm;
  }
  const InlineShape shape{op.kind, op.count, op.dtype, op.op, op.root, a};
  InlinePlan* plan = nullptr;
  if (!isPointToPoint(op.kind)) {
    plan = &inline_[lastInline_];  // a loop's calls mostly repeat the last one
    if (!(plan->shape == shape)) {
      plan = nullptr;
      for (InlinePlan& p : inline_) plan = p.shape == shape ? &p : plan;
    }
  }
  if (plan) {
    plan->work.resetCompletion();
    bindBuffers(op, rank_, nranks_, a, &plan->work);
  } else {
    plan = &inline_[0];
    for (InlinePlan& p : inline_) plan = p.used < plan->used ? &p : plan;
    // Claimed for no shape first: a plan that fails half-built must not be found under the
    // shape it had (it ran the failed call's schedule on the next call's buffers: helper-81).
    plan->shape = InlineShape{};
    plan->work.reset();
    planOp(op, rank_, nranks_, a, &plan->work, &ringOrder_);
    if (!isPointToPoint(op.kind)) plan->shape = shape;
  }
  plan->used = ++inlineUses_;
  lastInline_ = static_cast<size_t>(plan - inline_.data());
  if (!pick.sample) return runNow(plan->work);
  // A trial call: timed to the microsecond (the coarse clock of stamp() is far too coarse). A
  // failed call adds nothing; the error goes to the caller as usual.
  const Clock::time_point start = Clock::now();
  runNow(plan->work);
  const Clock::time_point from = std::max(start, plan->work.ranAt);  // queued: when it began
  *pick.sample += std::chrono::duration<double, std::micro>(Clock::now() - from).count();
}

void Communicator::logDecision(const OpDesc& op, Algorithm model) const {
  LS_INFO(rank_, "tuner: " << opKindName(op.kind) << " of " << tunerBytes(op) << " bytes on " << nranks_
                           << " ranks, measured: " << measured_->decision() << " (model: " << algorithmName(model)
                           << ")");
}

void Communicator::agreeMax(double* values, int n) {
  if (n != static_cast<int>(agreeIn_.size())) throw InternalError("tuner agreement of an unexpected size");
  std::copy(values, values + n, agreeIn_.begin());
  OpDesc d;
  d.kind = OpKind::kAllReduce;
  d.send = agreeIn_.data();
  d.recv = values;
  d.count = agreeIn_.size();
  d.dtype = lockstepFloat64;
  d.op = lockstepMax;
  const Algorithm a = chooseAlgorithm(d.kind, nranks_, sizeof(agreeIn_), linkCost_, TunerSettings{});
  if (agreePlanned_) {
    agree_.resetCompletion();
    bindBuffers(d, rank_, nranks_, a, &agree_);
  } else {
    planOp(d, rank_, nranks_, a, &agree_, &ringOrder_);
    // Said for what it is where it fails, and in traces: the program made no such all-reduce,
    // and "allreduce #101" in a program of broadcasts sent its reader looking for one
    // (helper-84). It takes a number of the sequence all the same, as every collective does.
    agree_.info.kind = "allreduce (the measured tuner's agreement, inside a blocking call)";
    agreePlanned_ = true;
  }
  runNow(agree_);
}

std::shared_ptr<Work> Communicator::submit(const OpDesc& op) {
  auto w = std::make_shared<Work>();
  planOp(op, rank_, nranks_, choose(op), w.get(), &ringOrder_);
  enqueue({&w, 1});
  return w;
}

bool Communicator::postIpc(std::span<const OpDesc> ops, void* stream) {
  if (ipc_->error() != lockstepSuccess) throw Error(ipc_->error(), ipc_->errorText());
  // Every rank decides alike (the same calls, the same tuner). Kernels reach device memory only:
  // host buffers on a stream, and the barrier (whose bytes are host scratch), take the staged
  // path, as do the algorithms that need a copy of the input (chooseForKernels).
  // A call with nothing to move (count 0, whose buffers may be NULL on some ranks) goes where
  // the rest goes on every rank. Groups of more than 32 peers, and all-to-all beyond 32 ranks,
  // would need more lanes than a segment has barriers: staged, decided from the size alone.
  std::vector<OpDesc> kernelOps;
  for (const OpDesc& op : ops) {
    if (op.kind == OpKind::kBarrier) return false;
    if (!op.device && op.count != 0) return false;
    if ((isPointToPoint(op.kind) || op.kind == OpKind::kAllToAll) && nranks_ > 32) return false;
    if (!isPointToPoint(op.kind) && chooseForKernels(op) == Algorithm::kCount) return false;
    // A send or receive of nothing moves no bytes, and the kernels carry no empty messages: it
    // is left out, as its matching call on the peer is. (Sending the whole group down the staged
    // path instead split an all-to-all-v pattern: the peers whose groups had no empty message
    // ran the same exchange as kernels, and both sides timed out.) A 0-count call against a
    // non-empty one is then not named as a mismatch here: the peer's kernel times out.
    if (isPointToPoint(op.kind) && op.count == 0) continue;
    kernelOps.push_back(op);
  }
  if (kernelOps.empty()) return true;  // nothing to move, so nothing to order on the stream
  std::vector<size_t> workOf;
  std::vector<std::shared_ptr<Work>> works = planGroup(kernelOps, &workOf, /*forKernels=*/true);
  uint64_t last = 0;
  {
    // The group's numbering, shared with the staged path (the two interleave on one stream).
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& w : works) {
      assignSeq(*w);
      w->info.fp.path = 1;
      last = std::max(last, w->info.fp.seq);
    }
  }
  // A kernel writes into its peers' segments from its first step: not into a departed one's.
  if (last) health_->checkPeersStay(last);
  for (const auto& w : works) {
    // Entered when enqueued: the control plane then compares this rank's op with its peers'
    // (a peer on the host path for it is a mismatch) and knows a peer that left before it.
    if (w->info.fp.seq) health_->entered(w->info.fp);
    // Recorded when enqueued (the stream may start it later) and ended when its result is read
    // back.
    uint64_t record;
    {
      const Clock::time_point now = Clock::now();
      std::lock_guard<std::mutex> lock(kernelRecordMu_);
      record = kernelRecorder_.started(w->info, w->peers, now, now);
    }
    bool posted = false;
    try {
      posted = ipc_->post(w->schedule, w->buffers, w->info, stream, record);
    } catch (const Error& e) {
      std::lock_guard<std::mutex> lock(kernelRecordMu_);
      kernelRecorder_.ended(record, e.code(), Clock::now());
      throw;
    }
    // At most 2 x 32 lanes (two per peer), as checked above.
    if (!posted) throw InternalError("cuda_ipc: a schedule with too many lanes");
  }
  return true;
}

void Communicator::postOnStream(std::span<const OpDesc> ops, void* stream) {
  std::lock_guard<std::mutex> lock(streamMu_);
  // Neither path can be captured into a CUDA graph: cuda_ipc fixes message numbers per call and
  // the staged path hands its op to the progress thread once; a replay would run neither again.
  const CudaDriver* driver = cudaDriver();
  int capturing = 0;
  if (driver && driver->streamIsCapturing && driver->streamIsCapturing(stream, &capturing) == 0 && capturing != 0) {
    throw InvalidUsage("the stream is being captured into a CUDA graph, which Lockstep calls do not support yet");
  }
  // A communicator that failed or was aborted takes no more work, on either path. A staged op
  // would fail without running, and the stream, already given its copy-out, would copy into the
  // caller's buffer whatever the recycled staging held (an earlier call's result), while the
  // call returned success.
  if (aborted_->load()) throw Error(lockstepAborted, "communicator aborted");
  health_->check();  // the group's failure, naming its culprit
  if (const lockstepResult_t broken = brokenCode_.load(); broken != lockstepSuccess) {
    throw Error(broken, "communicator unusable after an earlier failure (lockstepCommGetAsyncError returns it)");
  }
  if (ipc_ && postIpc(ops, stream)) return;
  if (!streamOrder_) streamOrder_ = std::make_unique<StreamOrder>(*cudaDriver(), config_.timeout, aborted_);
  std::vector<StagedOp> staged;
  staged.reserve(ops.size());
  try {
    for (size_t i = 0; i < ops.size(); ++i) staged.push_back(streamOrder_->stage(ops[i], rank_, nranks_));
  } catch (...) {
    for (StagedOp& s : staged) streamOrder_->unstage(s);
    throw;
  }
  std::vector<OpDesc> hostOps;
  for (const StagedOp& s : staged) hostOps.push_back(s.op);
  std::vector<size_t> workOf;
  std::vector<std::shared_ptr<Work>> works = planGroup(hostOps, &workOf);
  // planGroup keeps posted order, so each Work's ops are a contiguous run.
  size_t ordered = 0, first = 0;
  try {
    for (; ordered < works.size(); ++ordered) {
      size_t end = first;
      while (end < ops.size() && workOf[end] == ordered) ++end;
      works[ordered]->gate = streamOrder_->order(stream, std::span<StagedOp>(staged).subspan(first, end - first));
      first = end;
    }
  } catch (...) {
    // The Works already ordered hold waits on the stream: they must still run and release it.
    for (size_t i = 0; i < ops.size(); ++i) {
      if (workOf[i] > ordered) streamOrder_->unstage(staged[i]);
    }
    works.resize(ordered);
    enqueue(works);
    throw;
  }
  enqueue(works);
}

std::vector<std::shared_ptr<Work>> Communicator::planGroup(std::span<const OpDesc> ops, std::vector<size_t>* workOf,
                                                           bool forKernels) {
  std::vector<std::shared_ptr<Work>> works;
  workOf->assign(ops.size(), 0);
  for (size_t i = 0; i < ops.size();) {
    works.push_back(std::make_shared<Work>());
    if (!isPointToPoint(ops[i].kind)) {
      planOp(ops[i], rank_, nranks_, forKernels ? chooseForKernels(ops[i]) : choose(ops[i]), works.back().get(),
             &ringOrder_);
      (*workOf)[i++] = works.size() - 1;
      continue;
    }
    // A run of consecutive sends/receives becomes one Work; its order relative to the
    // collectives around it is kept, so a peer that posts the same calls without a group
    // still matches them. (A group brings all of its sends and receives together first.)
    size_t end = i;
    while (end < ops.size() && isPointToPoint(ops[end].kind)) (*workOf)[end++] = works.size() - 1;
    planPointToPoint(ops.subspan(i, end - i), rank_, nranks_, works.back().get());
    i = end;
  }
  return works;
}

size_t Communicator::tunerBytes(const OpDesc& op) const {
  size_t bytes = op.kind == OpKind::kBarrier ? 1 : op.count * dataTypeSize(op.dtype);
  if (op.kind == OpKind::kReduceScatter || op.kind == OpKind::kAllGather) bytes *= static_cast<size_t>(nranks_);
  return bytes;
}

Algorithm Communicator::choose(const OpDesc& op) {
  if (isPointToPoint(op.kind) || op.kind == OpKind::kAllToAll) return Algorithm::kDirect;
  const size_t bytes = tunerBytes(op);
  // Training loops repeat their sizes: the last choice per collective is kept (the tuner costs
  // ~0.05 us, a tenth of a small all-reduce).
  Choice& last = lastChoice_[static_cast<int>(op.kind)];
  if (last.bytes == bytes) return last.algorithm;
  Algorithm a = chooseAlgorithm(op.kind, nranks_, bytes, linkCost_, tuning_);
  last.bytes = bytes;
  last.algorithm = a;
  // Logged when the choice for a collective at this power-of-two size changes, not on every call.
  Algorithm& logged = loggedChoice_[static_cast<int>(op.kind)][std::bit_width(bytes)];
  if (logged != a) {
    logged = a;
    LS_INFO(rank_, "tuner: " << opKindName(op.kind) << " of " << bytes << " bytes on " << nranks_ << " ranks -> "
                             << algorithmName(a) << (tuning_.forced[static_cast<int>(op.kind)] ? " (forced)" : "")
                             << (tuning_.deterministic ? " (deterministic)" : ""));
  }
  return a;
}

Algorithm Communicator::chooseForKernels(const OpDesc& op) {
  const Algorithm a = choose(op);
  if (op.kind == OpKind::kAllToAll || a == Algorithm::kCount) return a;  // all-to-all copies nothing
  if (a == Algorithm::kOrdered) return Algorithm::kCount;
  // A reduce's tree keeps partial results in the output of a non-root node with two children
  // (N >= 5), which on the host path is a buffer of the Work's own (bindBuffers) and here would
  // be the caller's recvbuff, which a non-root may pass as anything: staged, decided alike on
  // every rank.
  if (op.kind == OpKind::kReduce && a == Algorithm::kTree && nranks_ >= 5) return Algorithm::kCount;
  // The one-shot needs the input copy the kernels do not take. Recursive doubling stands in for
  // it, but not where the one-shot was asked for, nor in deterministic mode: it sums (a+b)+(c+d)
  // on 4 ranks, where the one-shot sums in rank order.
  if (a == Algorithm::kDirect) {
    return tuning_.forced[static_cast<int>(op.kind)] || tuning_.deterministic ? Algorithm::kCount
                                                                              : Algorithm::kRecursiveDoubling;
  }
  return a;
}

void Communicator::abort() {
  aborted_->store(true);
  if (ipc_) ipc_->abort();
  health_->markAborted();
  // A split waiting for queued work to finish (split()) wakes now. Taking mu_ orders the store
  // before the waiter's check or after its wait begins: the notify is never lost between them.
  { std::lock_guard<std::mutex> lock(mu_); }
  cv_.notify_all();
}

lockstepResult_t Communicator::asyncError(std::string* why) const {
  if (aborted_->load()) return *why = "communicator aborted", lockstepAborted;
  lockstepResult_t group = health_->failure();
  if (group != lockstepSuccess) {
    try {
      health_->check();  // throws the group's first failure, with the culprit named
    } catch (const std::exception& e) {
      *why = e.what();
    }
    return group;
  }
  if (ipc_ && ipc_->error() != lockstepSuccess) return *why = ipc_->errorText(), ipc_->error();
  const lockstepResult_t broken = brokenCode_.load();
  if (broken != lockstepSuccess) *why = brokenReason();
  return broken;
}

void Communicator::markBroken(lockstepResult_t code, const std::string& why) {
  std::lock_guard<std::mutex> lock(brokenMu_);
  if (brokenCode_.load() != lockstepSuccess) return;  // the first failure stands
  brokenBy_ = why;
  brokenCode_.store(code);
}

std::string Communicator::brokenReason() const {
  std::lock_guard<std::mutex> lock(brokenMu_);
  return brokenBy_;
}

// ---- split ----

std::unique_ptr<Communicator> Communicator::split(int color, int key, const std::string& refusal, bool inGroup) {
  struct Entry {
    int32_t color, key, refused;  // refused: 0 no, 1 for bad arguments, 2 for being made inside a group
  };
  std::vector<Entry> all(nranks_);
  all[rank_] = Entry{color, key, refusal.empty() ? 0 : inGroup ? 2 : 1};
  // Every wait of a split ends at this communicator's abort.
  const auto stopIfAborted = [this] {
    if (aborted_->load()) throw Aborted("lockstepCommSplit: communicator aborted");
  };
  // The split is an op of this communicator for the watchdog: queued work finishes first, then
  // it takes the next number and is entered, so a peer that called a collective instead is a
  // mismatch named within a heartbeat (on both sides: the exchange below watches for it), not a
  // wait for the timeout. An abort ends the wait too (abort() wakes it).
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return (queue_.empty() && !busy_.load()) || aborted_->load(); });
  }
  stopIfAborted();
  health_->check();
  Fingerprint fp;
  fp.kind = static_cast<uint8_t>(OpKind::kSplit);
  {
    std::lock_guard<std::mutex> lock(mu_);
    fp.seq = ++seq_;
  }
  health_->entered(fp);
  // In the flight recorder as the op it is: a split that timed out wrote no dump, and
  // lockstep-trace blamed the ranks inside it for never entering a peer's collective of that
  // number (helper-69). The queue is empty: this thread is the recorder's one writer.
  const OpInfo recorded{"split", "exchange", fp, lockstepUint8, lockstepSum, 0};
  const Clock::time_point started = stamp();
  recorder_.started(recorded, PeerList{}, started, started);
  bootstrap_->setInterrupt([this, stopIfAborted] {
    stopIfAborted();
    health_->check();
  });
  try {
    bootstrap_->allGather(all.data(), sizeof(Entry));
    recorder_.ended(lockstepSuccess, stamp());
  } catch (const Error& e) {
    bootstrap_->setInterrupt(nullptr);
    recorder_.ended(aborted_->load() ? lockstepAborted : e.code(), stamp());
    // This rank's own abort needs no report from anyone (the grace below cost an abort 300 ms).
    stopIfAborted();
    if (e.code() == lockstepAborted) throw;
    // The peer that found the mismatch fails and closes its connections, which can reach this
    // exchange before its report reaches the watchdog: the report names the cause, so it is
    // given a moment (as execute() does for a link that broke).
    const Deadline grace = Deadline::after(std::chrono::milliseconds(300));
    while (health_->failure() == lockstepSuccess && !grace.expired()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    // The cause the watchdog heard (a peer's mismatch, timeout or death) wins; otherwise this
    // rank's own finding (a timeout, a closed connection): the bootstrap names the neighbour it
    // waited for, which may only be waiting for another rank, and the watchdog knows who stopped
    // answering or left. Either way the ranks are out of step now (this split took a number), so,
    // as for a failed op, later work is refused, the group is told, and the recorder is dumped:
    // the heard cause once left by the check itself, before the dump (helper-70).
    lockstepResult_t code = e.code();
    std::string text;
    try {
      health_->check();
      const std::string late = health_->laggards(fp.seq);
      text = std::string("lockstepCommSplit: ") + e.what() + (late.empty() ? "" : "; " + late);
    } catch (const Error& heard) {
      code = heard.code();
      text = heard.what();
    }
    markBroken(code, text);
    health_->fail(code, -1, text);
    if (code == lockstepTimeout || !config_.tracePath.empty()) dumpTrace();  // as a failed op
    throw Error(code, text);
  } catch (...) {
    bootstrap_->setInterrupt(nullptr);
    throw;
  }
  bootstrap_->setInterrupt(nullptr);
  health_->completed(fp.seq);
  const uint32_t splitIndex = splits_++;
  const int tag = kTagSplit + static_cast<int>(splitIndex & 0xfffff);
  if (!refusal.empty()) {
    const std::string text = "lockstepCommSplit: " + refusal + " (no rank split)";
    if (inGroup) throw InvalidUsage(text);
    throw InvalidArgument(text);
  }
  for (int r = 0; r < nranks_; ++r) {
    if (all[r].refused) {
      throw InvalidArgument("lockstepCommSplit: rank " + std::to_string(r) + "'s call was refused (" +
                            (all[r].refused == 2 ? "made inside a group" : "bad arguments") + "), so no rank split");
    }
  }
  // A split serves this communicator's listener again: strangers' silent connections accepted
  // meanwhile are dropped, as at the end of setup (helper-79).
  if (color < 0) {
    bootstrap_->endSetup();
    return nullptr;
  }
  std::vector<int> members;
  for (int r = 0; r < nranks_; ++r) {
    if (all[r].color == color) members.push_back(r);
  }
  std::stable_sort(members.begin(), members.end(), [&](int a, int b) { return all[a].key < all[b].key; });
  const int newRank = static_cast<int>(std::find(members.begin(), members.end(), rank_) - members.begin());
  const int newSize = static_cast<int>(members.size());

  // The new communicator's first rank serves its rendezvous and shares the id with the others
  // over this communicator's bootstrap: the child gets its own secret, sockets and threads, so
  // parent and child never interfere.
  UniqueIdInfo id;
  id.rootListens = true;
  std::unique_ptr<RootService> root;
  if (newRank == 0) {
    id.secret = randomSecret();
    int sent = 1;  // members[1, sent) have the id
    try {
      root = std::make_unique<RootService>(localAddr_, id.secret, config_.timeout);
      id.root = root->address();
      for (; sent < newSize; ++sent) bootstrap_->send(members[sent], tag, &id, sizeof(id));
    } catch (const std::exception& e) {
      // Out of descriptors or threads: the others would wait for the id until the timeout. An
      // id with no address tells them. Each bootstrap send opens a connection, so out of
      // descriptors that may fail too: then this communicator's watchdog, whose connections
      // exist, tells the members still waiting for the id, in a report about this split alone
      // (this communicator and the other colors go on). Members given the id find its
      // rendezvous gone.
      const UniqueIdInfo none{};
      try {
        for (int i = sent; i < newSize; ++i) bootstrap_->send(members[i], tag, &none, sizeof(none));
      } catch (const std::exception&) {
        const auto* error = dynamic_cast<const Error*>(&e);
        health_->failSplit(splitIndex, members, error ? error->code() : lockstepSystemError,
                           "lockstepCommSplit: rank " + std::to_string(rank_) +
                               ", the new communicator's first rank, could not start its rendezvous or send its "
                               "address: " +
                               e.what());
      }
      throw;
    }
  } else {
    // Told of the first rank's failure by its watchdog where it could not send (above), or of
    // its death. (Only its own: a report about another color must not stop this one, whose
    // first rank's rendezvous waits for this member.)
    bootstrap_->setInterrupt([this, stopIfAborted, first = members[0], splitIndex] {
      stopIfAborted();
      lockstepResult_t code;
      std::string text;
      if (health_->splitFailure(splitIndex, first, &code, &text)) throw RemoteError(first, text);
      if (health_->failedBy(first)) health_->check();
    });
    try {
      bootstrap_->recv(members[0], tag, &id, sizeof(id));
    } catch (...) {
      bootstrap_->setInterrupt(nullptr);
      throw;
    }
    bootstrap_->setInterrupt(nullptr);
    if (!id.root.valid()) {
      throw RemoteError(members[0], "lockstepCommSplit: rank " + std::to_string(members[0]) +
                                        ", the new communicator's first rank, could not start its rendezvous (see "
                                        "its error)");
    }
  }
  bootstrap_->endSetup();  // as above
  const uint64_t commId = commIdFromSecret(id.secret);
  // Its setup waits for every member (its rendezvous waited its whole timeout for one that died
  // after the exchange above). This communicator's watchdog knows of a death or an abort at once:
  // the waits ask it, until the child is built.
  std::vector<int> sorted = members;
  std::sort(sorted.begin(), sorted.end());
  auto interrupt = [this, stopIfAborted, sorted] {
    stopIfAborted();
    if (std::string gone = health_->lostAmong(sorted); !gone.empty())
      throw RemoteError(-1, "lockstepCommSplit: " + gone + ", and it was to be a member of the new communicator");
  };
  std::unique_ptr<Communicator> child;
  try {
    auto boot = std::make_unique<TcpBootstrap>(id, commId, newRank, newSize, localAddr_, config_.timeout, interrupt);
    child = std::make_unique<Communicator>(config_, std::move(boot), commId, id.secret, localAddr_);
  } catch (const Error& e) {
    // The new communicator's setup names its ranks by their new numbers, which are other ranks'
    // numbers here: "rank 1 never connected" blamed a healthy rank of another color (helper-61).
    std::string numbering;
    for (int i = 0; i < newSize && i < 16; ++i) {
      numbering += (i ? ", " : "") + std::to_string(i) + " is rank " + std::to_string(members[i]);
    }
    if (newSize > 16) numbering += ", ...";
    throw Error(e.code(), "lockstepCommSplit: setting up the new communicator of color " + std::to_string(color) +
                              " (its ranks, numbered anew: " + numbering + "): " + e.what());
  }
  child->bootstrap_->setInterrupt(nullptr);  // it outlives this communicator's watchdog
  // Alike on every member (the same split of the same parent, the same color), apart from every
  // other communicator: the trace files of its ranks sit beside their parent's.
  child->traceName_ = traceName_ + (traceName_.empty() ? "" : ".") + "split" + std::to_string(splitIndex + 1) + "c" +
                      std::to_string(color);
  return child;
}

}  // namespace lockstep
