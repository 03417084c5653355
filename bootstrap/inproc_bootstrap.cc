#include "bootstrap/inproc_bootstrap.h"

#include <cstring>

#include "src/core/errors.h"

namespace lockstep {

void InprocBootstrap::allGather(void* data, size_t bytes) {
  InprocWorld& w = *world_;
  std::unique_lock<std::mutex> lock(w.mu_);
  uint64_t generation = w.generation_;
  if (w.arrived_ == 0) w.gather_.assign(bytes * w.nranks_, 0);
  if (w.gather_.size() != bytes * w.nranks_) throw Mismatch("inproc allGather: ranks passed different block sizes");
  std::memcpy(w.gather_.data() + bytes * rank_, static_cast<char*>(data) + bytes * rank_, bytes);
  if (++w.arrived_ == w.nranks_) {
    // The result goes to a separate buffer: the next round may start filling gather_ before
    // every thread has copied this one out.
    w.gathered_.swap(w.gather_);
    w.arrived_ = 0;
    ++w.generation_;
    w.cv_.notify_all();
  } else if (!w.cv_.wait_for(lock, timeout_, [&] { return w.generation_ != generation; })) {
    throw Timeout("inproc bootstrap allGather: rank " + std::to_string(rank_) + " waited " +
                  std::to_string(timeout_.count()) + " ms for the other ranks");
  }
  std::memcpy(data, w.gathered_.data(), bytes * w.nranks_);
}

void InprocBootstrap::send(int peer, int tag, const void* data, size_t bytes) {
  InprocWorld& w = *world_;
  std::lock_guard<std::mutex> lock(w.mu_);
  auto* p = static_cast<const char*>(data);
  w.mail_[{rank_, peer, tag}].emplace_back(p, p + bytes);
  w.cv_.notify_all();
}

void InprocBootstrap::recv(int peer, int tag, void* data, size_t bytes) {
  InprocWorld& w = *world_;
  std::unique_lock<std::mutex> lock(w.mu_);
  auto& q = w.mail_[{peer, rank_, tag}];
  if (!w.cv_.wait_for(lock, timeout_, [&] { return !q.empty(); })) {
    throw Timeout("inproc bootstrap: rank " + std::to_string(rank_) + " got no message from rank " +
                  std::to_string(peer) + " (tag " + std::to_string(tag) + ")");
  }
  if (q.front().size() != bytes) {
    throw RemoteError(peer, "inproc bootstrap: rank " + std::to_string(peer) + " sent " +
                                std::to_string(q.front().size()) + " bytes, expected " + std::to_string(bytes));
  }
  std::memcpy(data, q.front().data(), bytes);
  q.pop_front();
}

void InprocBootstrap::barrier() {
  std::vector<char> b(world_->size());
  allGather(b.data(), 1);
}

}  // namespace lockstep
