// The TCP bootstrap: rendezvous at the root, then a ring of persistent connections for allGather,
// plus short-lived authenticated connections for point-to-point messages.
#pragma once

#include <chrono>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/unique_id.h"
#include "src/net/socket.h"

namespace lockstep {

class TcpBootstrap : public Bootstrap {
 public:
  // Collective: returns once this rank is connected into the ring and knows every rank's address.
  // `local` is the address (port ignored) this rank listens on for its peers.
  TcpBootstrap(const UniqueIdInfo& id, uint64_t commId, int rank, int nranks, const NetAddr& local,
               std::chrono::milliseconds timeout);

  int rank() const override { return rank_; }
  int size() const override { return nranks_; }
  void allGather(void* data, size_t bytes) override;
  void send(int peer, int tag, const void* data, size_t bytes) override;
  void recv(int peer, int tag, void* data, size_t bytes) override;
  void barrier() override;

  NetAddr listenAddress() const { return peers_[rank_]; }
  // Largest point-to-point message: an unexpected message is buffered, so its size is capped.
  static constexpr size_t kMaxMessageBytes = 1 << 20;

 private:
  struct Stashed {
    int peer;
    int tag;
    std::vector<char> data;
  };
  Deadline deadline() const { return Deadline::after(timeout_); }
  void rendezvous(const UniqueIdInfo& id, Deadline deadline);
  // Accepts one connection on the listener and handles it: the ring predecessor, or a
  // point-to-point message (stashed). Bad connections are logged and dropped.
  void serveIncoming(Deadline deadline);
  [[noreturn]] void fail(const std::exception& e, int peer, const std::string& doing);

  Secret secret_;
  uint64_t commId_;
  int rank_, nranks_;
  std::chrono::milliseconds timeout_;
  Fd listen_, next_, prev_;
  std::vector<NetAddr> peers_;
  std::vector<Stashed> stash_;
};

}  // namespace lockstep
