// The rendezvous at scale: 256 ranks (threads, each with a real TCP bootstrap over loopback)
// meet at one root. The root must serve O(N): one connection, one hello and two answers per
// rank; the ranks then build the table among themselves over a ring, each accepting one
// connection (its predecessor's). O(N^2) anywhere would show up in these counts.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "bootstrap/root_service.h"
#include "bootstrap/tcp_bootstrap.h"

namespace lockstep {
namespace {

TEST(RendezvousScale, RootServes256RanksWithLinearMessages) {
  const int n = 256;
  const auto timeout = std::chrono::seconds(60);
  UniqueIdInfo id;
  id.secret = randomSecret();
  RootService root(NetAddr::loopback(), id.secret, timeout);
  id.root = root.address();
  const uint64_t commId = commIdFromSecret(id.secret);

  std::vector<std::unique_ptr<TcpBootstrap>> boots(n);
  std::vector<std::string> errors(n);
  std::vector<std::vector<int32_t>> tables(n, std::vector<int32_t>(n, -1));
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        boots[r] = std::make_unique<TcpBootstrap>(id, commId, r, n, NetAddr::loopback(), timeout);
        tables[r][r] = r * 3 + 1;
        boots[r]->allGather(tables[r].data(), sizeof(int32_t));
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (int r = 0; r < n; ++r) {
    ASSERT_TRUE(errors[r].empty()) << "rank " << r << ": " << errors[r];
    for (int q = 0; q < n; ++q) ASSERT_EQ(tables[r][q], q * 3 + 1) << "rank " << r << " entry " << q;
  }
  // The root's thread counts a reply after sending it: let it finish first.
  for (int i = 0; i < 500 && !root.finished(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(root.finished());
  RootService::Stats s = root.stats();
  int64_t accepted = 0;
  for (const auto& b : boots) accepted += b->acceptedConnections();
  std::printf(
      "rendezvous of %d ranks: %.2f s; root served %lld connections, %lld messages in, %lld out; ranks "
      "accepted %lld connections in all\n",
      n, seconds, static_cast<long long>(s.connections), static_cast<long long>(s.messagesIn),
      static_cast<long long>(s.messagesOut), static_cast<long long>(accepted));
  EXPECT_EQ(s.connections, n);
  EXPECT_EQ(s.messagesIn, n);
  EXPECT_EQ(s.messagesOut, 2 * n);  // the handshake answer and the successor's address
  EXPECT_EQ(root.rejected(), 0);
  EXPECT_EQ(accepted, n) << "each rank accepts its ring predecessor, and nothing else";
}

}  // namespace
}  // namespace lockstep
