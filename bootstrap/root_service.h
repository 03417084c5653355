// The rendezvous service. Every rank connects once, authenticates with the id's secret and gives
// its bootstrap address; when all have arrived, the root tells each rank only the addresses of
// its ring neighbours (successor and predecessor). That is N connections and 2N small messages:
// the ranks then build the full table among themselves with a ring allGather, so nothing costs
// O(N^2) at the root.
//
// Connections that fail the handshake are logged and dropped without disturbing the others.
// Connections are served concurrently (poll), so a slow or silent client cannot stall the rest.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "bootstrap/handshake.h"
#include "bootstrap/unique_id.h"
#include "src/net/socket.h"

namespace lockstep {

// What a rank sends the root: its Hello, then its bootstrap address, packed (no padding: a
// struct of the two is 4 bytes longer than the bytes the root reads, and a socket closed with
// unread bytes is reset, which can destroy the reply still in flight).
constexpr size_t kRootHelloBytes = sizeof(Hello) + sizeof(NetAddr);

// What the root answers each rank once everyone has arrived (or the deadline passed).
struct RootReply {
  int32_t status;  // lockstepResult_t
  uint32_t reserved;
  NetAddr next;       // the ring successor's bootstrap address
  NetAddr prev;       // the ring predecessor's: to tell whether it is gone while it is awaited
  char message[256];  // why, when status != lockstepSuccess
};

class RootService {
 public:
  // Binds now, so address() is valid on return; serves one rendezvous in a background thread.
  // `timeout` counts from the first rank's arrival; before that it waits without limit.
  RootService(const NetAddr& bind, const Secret& secret, std::chrono::milliseconds timeout);
  ~RootService();  // stops the thread (at most ~100 ms) and joins it
  RootService(const RootService&) = delete;
  RootService& operator=(const RootService&) = delete;

  NetAddr address() const { return address_; }
  bool finished() const { return finished_.load(); }
  // A launcher serving the rendezvous saw one of its ranks exit (`how`: "exited with code 0"). If
  // the rendezvous has not formed, it cannot: every rank registered, and every rank that comes
  // later, is told so at once, instead of waiting out the timeout for a rank that is gone.
  void rankExited(int rank, const std::string& how);
  // For tests: handshakes that were rejected, and ranks registered.
  int rejected() const { return rejected_.load(); }
  int registered() const { return registered_.load(); }
  // For tests: what the root served (the rendezvous must cost O(N), never O(N^2)).
  struct Stats {
    int64_t connections;  // accepted
    int64_t messagesIn;   // hellos read to the end
    int64_t messagesOut;  // handshake answers and replies sent
  };
  Stats stats() const { return Stats{accepted_.load(), messagesIn_.load(), messagesOut_.load()}; }

 private:
  void serve(std::chrono::milliseconds timeout);

  Fd listen_;
  NetAddr address_;
  Secret secret_;
  std::atomic<bool> stop_{false}, finished_{false};
  std::atomic<int> rejected_{0}, registered_{0};
  std::atomic<int64_t> accepted_{0}, messagesIn_{0}, messagesOut_{0};
  std::mutex exitsMu_;
  std::string exits_;  // rankExited's news, for the serving thread
  std::thread thread_;
};

// Starts a service for lockstepGetUniqueId and keeps it alive (process-wide) until it finishes.
void startDetachedRoot(const NetAddr& bind, const Secret& secret, std::chrono::milliseconds timeout, NetAddr* address);
// RootService::rankExited for every such service of this process still serving (lockstep-run's).
void detachedRootsRankExited(int rank, const std::string& how);

}  // namespace lockstep
