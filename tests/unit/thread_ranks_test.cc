// Communicators whose ranks are threads of this process: the real executor over the real inproc
// transport, driven by the in-process bootstrap (as Gloo's tests do): a large sum, bit for bit
// on every rank, for rank counts up to 16, and init's failures. Every collective x dtype x op x
// count is in collectives_test.cc.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <thread>

#include "bootstrap/inproc_bootstrap.h"
#include "bootstrap/unique_id.h"
#include "kernels/dtype.h"
#include "src/core/communicator.h"
#include "transport/transport.h"

namespace lockstep {
namespace {

// Runs fn(rank) on n threads; rethrows the first failure.
void onThreads(int n, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(n);
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

std::vector<std::unique_ptr<Communicator>> makeComms(int n, const Config& config) {
  auto world = std::make_shared<InprocWorld>(n);
  Secret secret = randomSecret();
  std::vector<std::unique_ptr<Communicator>> comms(n);
  onThreads(n, [&](int r) {
    auto boot = std::make_unique<InprocBootstrap>(world, r, config.timeout);
    comms[r] =
        std::make_unique<Communicator>(config, std::move(boot), commIdFromSecret(secret), secret, NetAddr::loopback());
  });
  return comms;
}

class ThreadRanks : public ::testing::TestWithParam<int> {};

TEST_P(ThreadRanks, LargeBufferIsBitIdenticalAcrossRanks) {
  const int n = GetParam();
  Config c;  // default slots: the production pipeline shape
  auto comms = makeComms(n, c);
  for (int r = 0; r < n; ++r) ASSERT_STREQ(comms[r]->transportTo((r + 1) % n), n == 1 ? "self" : "inproc");
  const size_t count = (1 << 20) + 3;
  std::vector<std::vector<float>> out(n, std::vector<float>(count));
  onThreads(n, [&](int r) {
    std::vector<float> in(count);
    for (size_t i = 0; i < count; ++i) in[i] = 1.0f / (1 + (i * 7 + r * 13) % 101);  // inexact sums
    comms[r]->run(OpDesc{OpKind::kAllReduce, in.data(), out[r].data(), count, lockstepFloat32, lockstepSum, -1});
    comms[r]->run(OpDesc{OpKind::kBarrier});
  });
  for (int r = 1; r < n; ++r) ASSERT_EQ(std::memcmp(out[0].data(), out[r].data(), count * 4), 0) << "rank " << r;
}

INSTANTIATE_TEST_SUITE_P(Ranks, ThreadRanks, ::testing::Values(1, 2, 3, 5, 8, 16));

TEST(ThreadRanks, VersionOrConfigMismatchFailsInitOnEveryRank) {
  auto world = std::make_shared<InprocWorld>(3);
  Secret secret = randomSecret();
  std::vector<std::string> errors(3);
  onThreads(3, [&](int r) {
    Config c;
    c.timeout = std::chrono::seconds(20);
    if (r == 2) c.slotBytes = 128 * 1024;
    try {
      Communicator comm(c, std::make_unique<InprocBootstrap>(world, r, c.timeout), commIdFromSecret(secret), secret,
                        NetAddr::loopback());
    } catch (const Mismatch& e) {
      errors[r] = e.what();
    }
  });
  for (const auto& e : errors) {
    EXPECT_NE(e.find("slotBytes=131072"), std::string::npos) << "the message shows the difference: " << e;
    EXPECT_NE(e.find("rank 2"), std::string::npos) << e;
  }
}

// A rank that never comes fails the others' inproc setup at its barrier; what they registered
// for it must not stay in the process-wide registry (two 2 MiB FIFOs per failed setup, forever).
TEST(ThreadRanks, AnInprocSetupThatFailsLeavesNothingRegistered) {
  Config c;
  const int n = 3;
  std::vector<PeerInfo> peers(n);
  for (int r = 0; r < n; ++r) {
    std::memset(&peers[r], 0, sizeof(PeerInfo));
    peers[r].rank = r;
  }
  auto world = std::make_shared<InprocWorld>(n);
  const size_t before = inprocFifosRegistered();
  std::vector<std::string> errors(n - 1);
  onThreads(n - 1, [&](int r) {  // rank 2 never comes
    InprocBootstrap boot(world, r, std::chrono::milliseconds(300));
    TransportContext ctx{c, boot, peers, r, 0x51de, Secret{}, NetAddr::loopback()};
    std::vector<int> others;
    for (int p = 0; p < n; ++p) {
      if (p != r) others.push_back(p);
    }
    try {
      makeInprocTransport(ctx)->connect(others);
    } catch (const Error& e) {
      errors[r] = e.what();
    }
  });
  for (int r = 0; r < n - 1; ++r) EXPECT_FALSE(errors[r].empty()) << "rank " << r << " connected without rank 2";
  EXPECT_EQ(inprocFifosRegistered(), before);
}

}  // namespace
}  // namespace lockstep
