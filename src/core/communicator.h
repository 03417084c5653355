// A communicator: this rank's view of a group of ranks, its links to each peer, and the machinery
// that runs its operations in issue order.
//
// Execution: a blocking call runs inline on the caller's thread when nothing else is queued (the
// fast path: no thread hand-off). Non-blocking calls, and blocking calls made while earlier work
// is still queued, go to a queue served by a progress thread, started on first use. Either way,
// one Work runs at a time, in the order the calls were made, on every rank.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/unique_id.h"
#include "src/algo/measured_tuner.h"
#include "src/algo/ring_order.h"
#include "src/algo/tuner.h"
#include "src/core/config.h"
#include "src/core/flight_recorder.h"
#include "src/core/health.h"
#include "src/core/work.h"
#include "src/exec/host_executor.h"
#include "src/topo/peer_info.h"
#include "transport/transport.h"

namespace lockstep {

class IpcEngine;

class Communicator {
 public:
  // Flight-recorder dumps a process writes without LOCKSTEP_TRACE (timeouts, aborts), at most.
  static constexpr int kMaxUnaskedDumps = 100;
  // Collective over the bootstrap's ranks: exchanges PeerInfo, checks that versions and wire
  // config agree, picks a transport per peer and connects every link.
  Communicator(Config config, std::unique_ptr<Bootstrap> bootstrap, uint64_t commId, const Secret& secret,
               const NetAddr& localAddr);
  // Finishes queued work (each op is bounded by its deadline), then stops the progress thread.
  ~Communicator();

  int rank() const { return rank_; }
  int size() const { return nranks_; }
  const Config& config() const { return config_; }
  // The transport that reaches `peer` ("self" for this rank).
  const char* transportTo(int peer) const { return transportNames_[peer]; }
  // Whether another rank of this communicator lives in this process (its threads drive it),
  // whatever transport joins them.
  bool sharesProcessWithAPeer() const {
    for (int p = 0; p < nranks_; ++p) {
      if (p != rank_ && peers_[p].processToken == peers_[rank_].processToken) return true;
    }
    return false;
  }
  // The transport ranks a and b use between them ("self" if a == b): every rank can tell, as
  // the choice is a function of the shared peer table.
  const char* transportBetween(int a, int b) const;
  const std::vector<PeerInfo>& peers() const { return peers_; }
  // What the tuner prices a message at on this communicator (the same on every rank).
  const LinkCost& linkCost() const { return linkCost_; }
  // The measured tuner of blocking calls (null: LOCKSTEP_TUNER=model), for tools that report
  // its choices.
  const MeasuredTuner* measuredTuner() const { return measured_.get(); }
  // Ring positions of the ranks (host-contiguous; src/topo/ordering.h).
  const RingOrder& ringOrder() const { return ringOrder_; }

  // Runs one op and returns when it is complete. Throws on failure.
  void run(const OpDesc& op);
  // Queues one op and returns at once; the returned Work reports completion.
  std::shared_ptr<Work> submit(const OpDesc& op);
  // A group's ops on this communicator, as Works in posted order: each collective one Work, each
  // run of consecutive sends/receives fused into one. workOf[i] indexes the Work of ops[i].
  // Queued with enqueue(), or run by runNow().
  // forKernels: for cuda_ipc (chooseForKernels).
  std::vector<std::shared_ptr<Work>> planGroup(std::span<const OpDesc> ops, std::vector<size_t>* workOf,
                                               bool forKernels = false);
  void enqueue(std::span<const std::shared_ptr<Work>> works);
  // Starts the thread that runs queued Works, if it is not running. Throws SystemError when the
  // system refuses it; enqueue() then cannot fail on it. A group launching on several
  // communicators starts every one's first, so a refusal leaves nothing queued anywhere.
  void startProgress();
  // Ends Works that will not run with `why`, for the requests and waits that hold them.
  void abandon(std::span<const std::shared_ptr<Work>> works, const Error& why);
  // Runs a planned Work: inline if the communicator is idle, else after the queued work.
  void runNow(Work& work);
  // Queues ops (one call, or a group's calls on this communicator) ordered with a CUDA stream,
  // their device buffers staged through pinned host memory (src/exec/stream_order.h); returns
  // without waiting for the stream or the peers.
  void postOnStream(std::span<const OpDesc> ops, void* stream);
  // Whether device calls run as cuda_ipc kernels (transport/cuda_ipc/cuda_ipc.h).
  bool cudaIpc() const { return ipc_ != nullptr; }

  // Collective: ranks with the same color form a new communicator, ordered by (key, old rank).
  // color < 0 (LOCKSTEP_SPLIT_NOCOLOR) takes part but gets nullptr. `refusal`: this rank's call
  // is bad (said why); it still takes part in the exchange, so that every rank fails together,
  // naming it, and none is left waiting to pair with a later split. `inGroup`: the refusal is
  // for a call made inside a group, which the others' message says.
  std::unique_ptr<Communicator> split(int color, int key, const std::string& refusal = "", bool inGroup = false);

  // The flag abort() sets: running and queued host work fails with lockstepAborted once it is
  // set, whoever sets it.
  std::shared_ptr<std::atomic<bool>> abortFlag() const { return aborted_; }

  // Makes running and queued work fail with lockstepAborted within milliseconds; peers learn
  // that this rank aborted.
  void abort();
  // lockstepSuccess, or the first failure of this communicator or of its group.
  // The communicator's failure, if any, and (into *why) what it was.
  lockstepResult_t asyncError(std::string* why) const;

 private:
  void planRing();  // ringOrder_ from peers_, logged at INFO
  void connectLinks(uint64_t commId, const Secret& secret, const NetAddr& localAddr);
  // On the caller's thread (a blocking call), or in the background (the progress thread).
  void execute(Work& w, bool background);
  // The host path's op times: to the microsecond when LOCKSTEP_TRACE asks for a timeline, else
  // to the kernel's tick (src/core/clock.h), enough for deadlines and post-mortem dumps.
  Clock::time_point stamp() const { return preciseTimes_ ? Clock::now() : coarseNow(); }
  void assignSeq(Work& w);                    // call with mu_ held
  Algorithm choose(const OpDesc& op);         // the tuner, for this communicator
  size_t tunerBytes(const OpDesc& op) const;  // the size the tuner prices (nccl-tests' size)
  // Logs the measured tuner's latest agreement (src/algo/measured_tuner.h) at INFO.
  void logDecision(const OpDesc& op, Algorithm model) const;
  // values[0..n) <- their maximum over the ranks: the measured tuner's agreement, run as an
  // all-reduce of its own on the data path (an op like any other: deadline, abort, culprit).
  void agreeMax(double* values, int n);
  // The tuner for cuda_ipc kernels: the one-shot all-reduce the host tuner picks for small sizes
  // needs a copy of the input, which the kernels do not take, so recursive doubling (as few
  // steps, no copy) stands in for it unless LOCKSTEP_ALGO forced it. kCount: the op must take
  // the staged path (a forced one-shot; the rank-ordered algorithms of deterministic mode).
  Algorithm chooseForKernels(const OpDesc& op);
  LinkCost globalLinkCost() const;
  // `host` has as many ranks as CPUs they may use between them, or more: the tuner prices a
  // dependent step as a wait for a rank to be scheduled again.
  bool hostIsFull(uint64_t host) const;
  int ranksOn(uint64_t host) const;  // this communicator's ranks on `host`
  void dumpTrace();
  // Marks w done. Success leaves w.error as resetCompletion() left it (empty): no string is built
  // on the fast path.
  void finish(Work& w, lockstepResult_t result = lockstepSuccess, const std::string& error = {});
  void progressLoop();
  // postOnStream's cuda_ipc path: false (nothing enqueued) when some op must take the staged one.
  bool postIpc(std::span<const OpDesc> ops, void* stream);

  Config config_;
  std::unique_ptr<Bootstrap> bootstrap_;
  int rank_, nranks_;
  NetAddr localAddr_;
  std::vector<PeerInfo> peers_;
  std::vector<std::unique_ptr<Transport>> transports_;
  std::vector<std::unique_ptr<Link>> links_;  // by rank; links_[rank_] is a loopback for self send/recv
  std::shared_ptr<void> selfFifo_;
  // Messages in the link to itself that no receive has taken yet. Only this rank's own receives
  // drain it, and it runs one Work at a time: a Work that needs more room there than its own
  // receives make, or receives more than is there, can never end (selfDeadlock).
  size_t selfHeld_ = 0;
  // A receive from itself was refused: sends to itself queued behind it (an Irecv then an Isend)
  // would leave messages a later receive took as its own, so every later one to itself is
  // refused too (those to its peers go on).
  bool selfReceiveRefused_ = false;
  std::string selfDeadlock(const Work& w, const MessageCounts& self);
  // The reason alone; selfDeadlock adds what the refusal costs a group's peers.
  std::string selfDeadlockReason(const Work& w, const MessageCounts& self);
  std::vector<const char*> transportNames_;
  RingOrder ringOrder_;
  TunerSettings tuning_;
  LinkCost linkCost_{};
  struct Choice {
    size_t bytes = SIZE_MAX;
    Algorithm algorithm = Algorithm::kCount;
  };
  std::array<Choice, kOpKinds> lastChoice_{};  // per collective: reused for the same size
  // The model's choice last logged per collective and power-of-two size (kCount: none yet), so a
  // program alternating two sizes (DDP's full and last buckets) logs each once, not every call.
  std::array<std::array<Algorithm, 65>, kOpKinds> loggedChoice_;
  std::unique_ptr<MeasuredTuner> measured_;  // null: LOCKSTEP_TUNER=model
  MeasuredTuner::AgreeMax agreeFn_;          // agreeMax, made once (not per call)
  std::unique_ptr<Health> health_;
  FlightRecorder recorder_;  // written by whichever thread executes (one at a time)
  // cuda_ipc ops: started by the posting thread, ended by the driver's callback thread.
  std::mutex kernelRecordMu_;
  FlightRecorder kernelRecorder_{"cuda_ipc"};
  std::atomic<bool> kernelTimedOut_{false};  // a kernel timed out: dump at destroy
  std::unique_ptr<HostExecutor> executor_;
  WaitProfile inlineWait_, backgroundWait_;   // how the executor waits (src/exec/backoff.h)
  bool preciseTimes_ = false;                 // LOCKSTEP_TRACE is set: see stamp()
  std::mutex streamMu_;                       // orders stream posts with their gens
  std::unique_ptr<StreamOrder> streamOrder_;  // on the first stream-ordered call
  std::unique_ptr<IpcEngine> ipc_;            // every rank on one host with CUDA: kernels over cuda_ipc
  // Shared with the API's handle, so that an abort can still reach a communicator whose destroy
  // is under way (the handle refuses every other call by then).
  std::shared_ptr<std::atomic<bool>> aborted_ = std::make_shared<std::atomic<bool>>(false);

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Work>> queue_;
  // A Work is executing (inline or on the progress thread). Set under mu_; an inline op clears it
  // without mu_ (seq_cst, then reads queued_): the progress thread needs waking only when
  // work is queued, and a lock pair per call costs a small all-reduce about 5 %.
  std::atomic<bool> busy_{false};
  std::atomic<size_t> queued_{0};  // queue_.size(), changed under mu_
  bool stop_ = false;
  std::thread progress_;
  uint64_t seq_ = 0;
  uint32_t splits_ = 0;
  std::string traceName_;  // tracePath's `comm`: "" from init, "split<k>c<color>" from a split
  uint64_t commId_ = 0;    // from the id's secret: tells this communicator's dumps from another's
  // The shape a blocking call's plan was made for (count == SIZE_MAX: none).
  struct InlineShape {
    OpKind kind = OpKind::kBarrier;
    size_t count = SIZE_MAX;
    lockstepDataType_t dtype = lockstepUint8;
    lockstepRedOp_t op = lockstepSum;
    int root = -1;
    Algorithm algorithm = Algorithm::kCount;
    bool operator==(const InlineShape&) const = default;
  };
  // Blocking calls reuse their plans (no allocation per call): one per shape, for as many shapes
  // as the measured tuner alternates in a trial, the least recently used replaced.
  struct InlinePlan {
    Work work;
    InlineShape shape;
    uint64_t used = 0;
  };
  std::array<InlinePlan, MeasuredTuner::kMaxCandidates> inline_;
  uint64_t inlineUses_ = 0;
  size_t lastInline_ = 0;  // the plan of the last blocking call
  Work agree_;             // the measured tuner's agreement (agreeMax), planned once
  std::array<double, MeasuredTuner::kMaxCandidates> agreeIn_{};
  bool agreePlanned_ = false;
  // After a transport failure the links may be mid-message: later ops fail with the first error.
  // Set once, by the first failure (markBroken); brokenBy_ is read and written under brokenMu_,
  // since the code is read without it on every call and the text by any thread that fails.
  std::atomic<lockstepResult_t> brokenCode_{lockstepSuccess};
  mutable std::mutex brokenMu_;
  std::string brokenBy_;
  void markBroken(lockstepResult_t code, const std::string& why);
  std::string brokenReason() const;
};

}  // namespace lockstep
