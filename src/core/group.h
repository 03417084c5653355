// lockstepGroupStart/End: calls between them are recorded per thread, nothing runs or blocks
// until the outermost GroupEnd, which hands each communicator its share (collectives in posted
// order, then its sends and receives fused so they cannot deadlock) and waits for the blocking
// ones. One thread can drive several communicators in one group: each runs on its own progress
// thread.
#pragma once

#include <memory>
#include <vector>

#include "src/core/op.h"

namespace lockstep {

class Communicator;
struct Work;

class Group {
 public:
  // This thread's group state.
  static Group& current();

  bool active() const { return depth_ > 0; }
  void start() { ++depth_; }
  // Records a call. For a non-blocking call, *request receives its Work at GroupEnd.
  void add(Communicator* comm, const OpDesc& op, std::shared_ptr<Work>* request);
  // Closes one level; the outermost launches everything. Throws the first failure among the
  // blocking calls (non-blocking ones report through their requests).
  void end();
  // True if `comm` has calls recorded in the open group (it must not be destroyed or split).
  bool uses(const Communicator* comm) const;

 private:
  struct Call {
    Communicator* comm;
    OpDesc op;
    std::shared_ptr<Work>* request;  // null for a blocking call
  };
  void launch(std::vector<Call> calls);
  int depth_ = 0;
  std::vector<Call> calls_;
};

}  // namespace lockstep
