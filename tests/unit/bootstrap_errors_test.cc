// What the TCP bootstrap says when a rank is misconfigured or a peer dies during setup: the
// cause, and the rank that caused it.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/handshake.h"
#include "bootstrap/root_service.h"
#include "bootstrap/tcp_bootstrap.h"
#include "src/core/errors.h"

namespace lockstep {
namespace {

constexpr auto kTimeout = std::chrono::seconds(20);

// A second process started with an existing rank's number (or a different world size) is told
// why by the rendezvous, and the ranks that were right still form their communicator.
TEST(BootstrapErrors, TheRendezvousTellsAMisconfiguredRankWhy) {
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, kTimeout);
  UniqueIdInfo info{root.address(), secret};
  const uint64_t commId = commIdFromSecret(secret);
  std::unique_ptr<TcpBootstrap> first;
  std::thread t([&] { first = std::make_unique<TcpBootstrap>(info, commId, 0, 2, NetAddr::loopback(), kTimeout); });
  for (int i = 0; i < 2000 && root.registered() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(root.registered(), 1) << "rank 0 never reached the rendezvous";

  auto refusal = [&](int rank, int nranks) -> std::string {
    try {
      TcpBootstrap wrong(info, commId, rank, nranks, NetAddr::loopback(), kTimeout);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), lockstepInvalidUsage) << e.what();
      return e.what();
    }
    return "no error";
  };
  const std::string twice = refusal(0, 2);
  EXPECT_NE(twice.find("rank 0 registered twice"), std::string::npos) << twice;
  const std::string size = refusal(1, 3);
  EXPECT_NE(size.find("3"), std::string::npos) << size;
  EXPECT_EQ(size.find("bad magic"), std::string::npos) << size;

  TcpBootstrap second(info, commId, 1, 2, NetAddr::loopback(), kTimeout);
  t.join();
  ASSERT_TRUE(first);
  int blocks[2] = {0, 1};
  std::thread g([&] { first->allGather(blocks, sizeof(int)); });
  int mine[2] = {0, 1};
  second.allGather(mine, sizeof(int));
  g.join();
}

// Three ranks; rank 2 goes away. Rank 1, whose successor it was, fails sending to it, while it
// still waits for rank 0's block: the error names rank 2, the one that left, not rank 0.
TEST(BootstrapErrors, AnAllGatherBlamesTheSuccessorThatLeft) {
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, kTimeout);
  UniqueIdInfo info{root.address(), secret};
  const int n = 3;
  std::vector<std::unique_ptr<TcpBootstrap>> boots(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      boots[r] = std::make_unique<TcpBootstrap>(info, commIdFromSecret(secret), r, n, NetAddr::loopback(), kTimeout);
    });
  }
  for (auto& t : threads) t.join();
  for (auto& b : boots) ASSERT_TRUE(b);
  boots[2].reset();  // its connections close, as at a process's exit

  // Rank 0 never sends: rank 1 is left waiting for it when its own send to rank 2 fails. (A
  // large block, so the send cannot all fit the dead connection's buffer before the reset.)
  std::vector<char> block(size_t{8} << 20);
  int culprit = -2;
  std::string what;
  try {
    boots[1]->allGather(block.data(), block.size() / n);
  } catch (const RemoteError& e) {
    culprit = e.rank;
    what = e.what();
  } catch (const Error& e) {
    what = e.what();
  }
  EXPECT_EQ(culprit, 2) << what;
  EXPECT_NE(what.find("rank 2"), std::string::npos) << what;
}

}  // namespace
}  // namespace lockstep
