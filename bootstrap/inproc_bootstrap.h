// A bootstrap for ranks that are threads of one process (tests, simulator): shared memory and a
// condition variable instead of sockets.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "bootstrap/bootstrap.h"

namespace lockstep {

// State shared by the thread-ranks of one communicator.
class InprocWorld {
 public:
  explicit InprocWorld(int nranks) : nranks_(nranks) {}
  int size() const { return nranks_; }

 private:
  friend class InprocBootstrap;
  const int nranks_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<char> gather_, gathered_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  std::map<std::tuple<int, int, int>, std::deque<std::vector<char>>> mail_;  // (src, dst, tag)
};

class InprocBootstrap : public Bootstrap {
 public:
  InprocBootstrap(std::shared_ptr<InprocWorld> world, int rank, std::chrono::milliseconds timeout)
      : world_(std::move(world)), rank_(rank), timeout_(timeout) {}
  int rank() const override { return rank_; }
  int size() const override { return world_->size(); }
  void allGather(void* data, size_t bytes) override;
  void send(int peer, int tag, const void* data, size_t bytes) override;
  void recv(int peer, int tag, void* data, size_t bytes) override;
  void barrier() override;

 private:
  std::shared_ptr<InprocWorld> world_;
  int rank_;
  std::chrono::milliseconds timeout_;
};

}  // namespace lockstep
