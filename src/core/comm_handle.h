// What a lockstepComm_t points to, and how a call holds it. Destroy and abort free the
// Communicator only once no call holds it, so another thread may abort a communicator blocked in
// a collective, or in a group's launch. The shell itself is never freed (keepForever, at
// destroy), so a stale handle is detected rather than followed into freed memory.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lockstep/lockstep.h"
#include "src/core/communicator.h"
#include "src/core/errors.h"

namespace lockstep {

constexpr uint64_t kCommMagic = 0x4c4f434b53544550ull;  // "LOCKSTEP"
constexpr uint64_t kDeadMagic = 0xdeaddeaddeaddeadull;

// How many forks lie between the first communicator's process and this one: a forked child
// holds a copy of its parent's communicators, whose threads, links and peers are the parent's.
inline std::atomic<uint32_t> gForkGeneration{0};

inline uint32_t forkGeneration() {
  static const bool watching = [] {
    pthread_atfork(nullptr, nullptr, [] { gForkGeneration.fetch_add(1, std::memory_order_relaxed); });
    return true;
  }();
  (void)watching;
  return gForkGeneration.load(std::memory_order_relaxed);
}

// Whether this process was forked from the one where forkGeneration() returned `generation`.
inline bool forkedSince(uint32_t generation) { return generation != gForkGeneration.load(std::memory_order_relaxed); }

}  // namespace lockstep

struct lockstepComm {
  std::atomic<uint64_t> magic{lockstep::kCommMagic};
  std::unique_ptr<lockstep::Communicator> impl;
  std::atomic<int> inflight{0};      // calls holding impl right now (CommUse)
  std::atomic<bool> closing{false};  // destroy or abort has begun: no new holds
  std::atomic<bool> aborted{false};  // and it was an abort (lockstepCommAbort)
  // A thread is inside a collective or send/recv call on it (PostGuard).
  std::atomic<bool> posting{false};
  // impl's abort flag, set with impl and kept after it: an abort during a destroy sets it.
  std::shared_ptr<std::atomic<bool>> abortFlag;
  // The process generation that made it (lockstep::forkGeneration()).
  const uint32_t generation = lockstep::forkGeneration();
  // The communicators split from it: an abort of this one aborts them too. Shells are never
  // freed, so these stay valid to look at after the children are destroyed.
  std::mutex childrenMu;
  std::vector<lockstepComm*> children;
  // A communicator initialised inside a group (several made by one thread, as NCCL allows) is
  // built at the group's outermost end: its handle exists from the init call and refuses every
  // use until then, and for ever if its init failed (only destroy and abort are taken then).
  // kPending -> kBuilding (GroupEnd took it) -> kDone or kFailed; kPending -> kFailed when the
  // group is discarded or the handle destroyed first; kBuilding -> kCancelled when another thread
  // aborts it during the build, which stops the build's waits and frees it when it returns.
  enum class Init : int { kDone, kPending, kBuilding, kCancelled, kFailed };
  std::atomic<Init> init{Init::kDone};
  std::string initError;  // kFailed: why (written before `init` is stored)
  // kFailed: the init's code, which lockstepCommGetAsyncError gives, as NCCL's does for a failed
  // non-blocking init (written with initError).
  lockstepResult_t initCode = lockstepSuccess;
  // Shared by the ranks of one communicator created in one group: set by an abort of any of them
  // while GroupEnd builds them, it ends every one's build (set before the handle is returned).
  std::shared_ptr<std::atomic<bool>> groupCancel;
};

namespace lockstep {

// Holds a communicator for one API call, or for one group's launch.
class CommUse {
 public:
  explicit CommUse(lockstepComm_t comm) : comm_(comm) {
    if (comm == nullptr) throw InvalidArgument("comm is NULL");
    comm->inflight.fetch_add(1);
    if (comm->magic.load() != kCommMagic || comm->closing.load()) {
      comm->inflight.fetch_sub(1);
      // A watchdog thread's abort races the training thread's next call: that call is told the
      // abort, with its code, rather than a usage error.
      if (comm->aborted.load()) {
        throw Error(lockstepAborted, "comm was aborted (lockstepCommAbort), which frees it: create a new one");
      }
      throw InvalidUsage("comm is not a live communicator (destroyed or being destroyed)");
    }
    if (const lockstepComm::Init state = comm->init.load(std::memory_order_acquire);
        state != lockstepComm::Init::kDone) {
      comm->inflight.fetch_sub(1);
      if (state == lockstepComm::Init::kPending || state == lockstepComm::Init::kBuilding ||
          state == lockstepComm::Init::kCancelled) {
        throw InvalidUsage(
            "comm was created inside a group that has not ended: it is initialised at the outermost "
            "lockstepGroupEnd, and usable after it");
      }
      throw InvalidUsage("comm's initialisation at the end of its group failed (" + comm->initError +
                         "): only lockstepCommDestroy or lockstepCommAbort may be called on it");
    }
    if (forkedSince(comm->generation)) {
      // Its threads and peers are the parent's: a collective here would stand in for the parent
      // rank, and a destroy would wait for threads that do not exist in this process. Refused,
      // destroy included (the copy is left as it is).
      comm->inflight.fetch_sub(1);
      throw InvalidUsage(
          "comm belongs to the process that created it: this process was forked from it after "
          "the communicator was made; a forked child must create communicators of its own");
    }
  }
  ~CommUse() { comm_->inflight.fetch_sub(1); }
  CommUse(const CommUse&) = delete;
  CommUse& operator=(const CommUse&) = delete;
  Communicator& operator*() const { return *comm_->impl; }
  Communicator* operator->() const { return comm_->impl.get(); }

 private:
  lockstepComm_t comm_;
};

// Marks a thread's collective or send/recv call on a communicator. One thread drives a
// communicator at a time (as in NCCL): two at once shared its reusable plans and sequence
// numbers, and calls returned success with wrong sums. Plain loads and stores (acquire, release:
// no locked instruction on x86), not a read-modify-write, on the small-message path: a race
// between two misusing threads may go unseen, but a correct program, whose calls are ordered,
// can never be refused, and a call that sees the last one's end is ordered after it.
class PostGuard {
 public:
  explicit PostGuard(lockstepComm_t comm) : comm_(comm) {
    if (comm->posting.load(std::memory_order_acquire)) {
      throw InvalidUsage(
          "another thread is inside a call on this communicator: one thread drives a communicator at a "
          "time (as in NCCL); give each thread a communicator of its own (lockstepCommSplit)");
    }
    comm->posting.store(true, std::memory_order_relaxed);
  }
  ~PostGuard() { comm_->posting.store(false, std::memory_order_release); }
  PostGuard(const PostGuard&) = delete;
  PostGuard& operator=(const PostGuard&) = delete;

 private:
  lockstepComm_t comm_;
};

}  // namespace lockstep
