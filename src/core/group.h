// lockstepGroupStart/End: calls between them are recorded per thread, nothing runs or blocks
// until the outermost GroupEnd, which hands each communicator its share (collectives in posted
// order, then its sends and receives fused so they cannot deadlock) and waits for the blocking
// ones. One thread can drive several communicators in one group: each runs on its own progress
// thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lockstep/lockstep.h"
#include "src/core/op.h"

namespace lockstep {

class Communicator;
struct Work;

// Where a non-blocking call's Work lands; shared by the request handle and an open group, so
// either may go first.
// Atomic: the thread ending the group sets it while another may ask lockstepRequestLaunched or
// test the request (both allowed from any thread); a plain shared_ptr published the Work with no
// ordering for its fields (TSan saw the race).
struct RequestSlot {
  std::atomic<std::shared_ptr<Work>> work;  // null until the group the call was posted in has ended
};

class Group {
 public:
  // This thread's group state.
  static Group& current();

  bool active() const { return depth_ > 0; }
  void start() { ++depth_; }
  // Records a call. For a non-blocking call, request->work is set at GroupEnd. A call ordered
  // with a CUDA stream (onStream) must share its communicator's group calls with others on the
  // same stream: throws InvalidUsage otherwise.
  // The group records the handle, not the communicator: GroupEnd holds each communicator for
  // its launch (a destroy or abort from another thread waits for it) and fails cleanly if one
  // was destroyed in between.
  void add(lockstepComm_t comm, const OpDesc& op, std::shared_ptr<RequestSlot> request, bool onStream = false,
           void* stream = nullptr);
  // A call inside the group failed (bad argument...): the outermost GroupEnd then launches
  // nothing, returns this error, and the group's requests complete with it (as in NCCL).
  void recordFailure(lockstepResult_t code, const std::string& message);
  // Closes one level; the outermost launches everything. Throws the first failure among the
  // blocking calls (non-blocking ones report through their requests).
  void end();
  // True if `comm` has calls recorded in the open group (it must not be destroyed or split).
  bool uses(lockstepComm_t comm) const;
  // A communicator initialised inside the group: `shell` (pending) gets what `build` makes at the
  // outermost end, before the group's calls launch. The inits of one group run at once, each on
  // a thread of its own, so one thread can create all the ranks of a communicator (as NCCL's
  // ncclCommInitRank does between ncclGroupStart and ncclGroupEnd). `what` names it in errors.
  // `commKey` and `rank` say which communicator and rank it is: a rank of one whose handle was
  // destroyed before the end leaves the group's other ranks of it nothing to wait for.
  void addInit(lockstepComm_t shell, std::function<std::unique_ptr<Communicator>()> build, uint64_t commKey, int rank,
               std::string what);

 private:
  struct Call {
    lockstepComm_t comm;
    OpDesc op;
    std::shared_ptr<RequestSlot> request;  // null for a blocking call
    bool onStream = false;
    void* stream = nullptr;
  };
  struct Init {
    lockstepComm_t shell;
    std::function<std::unique_ptr<Communicator>()> build;
    uint64_t commKey;
    int rank;
    std::string what;
  };
  // Builds every recorded communicator; throws the first failure (each failed shell keeps its own).
  static void runInits(std::vector<Init> inits);
  static void failInits(const std::vector<Init>& inits, lockstepResult_t code, const std::string& why);
  void launch(std::vector<Call> calls);
  // Completes the requests among `calls` with this error (the group, or what is left of it,
  // was not launched), so that no lockstepWait waits for work that will never run.
  static void failRequests(const std::vector<Call>& calls, lockstepResult_t code, const std::string& text);
  int depth_ = 0;
  std::vector<Call> calls_;
  std::vector<Init> inits_;
  lockstepResult_t failure_ = lockstepSuccess;
  std::string failureText_;
};

}  // namespace lockstep
