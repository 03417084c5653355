// Communicators whose ranks are threads of this process: the real executor over the real inproc
// transport, driven by the in-process bootstrap (as Gloo's tests do): a large sum, bit for bit
// on every rank, for rank counts up to 16, and init's failures. Every collective x dtype x op x
// count is in collectives_test.cc.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/inproc_bootstrap.h"
#include "bootstrap/unique_id.h"
#include "kernels/dtype.h"
#include "src/algo/collective.h"
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

// A rank chooses, per op and size, whether to fill its send slots with ordinary or with
// streaming stores by timing both (src/exec/slot_stores.h): calls 2 and 4 of a size (counting
// from 0) always stream, calls 1 and 3 never. A fresh communicator for each op: sum and avg of
// one size share the count (the reduction is not part of an op's shape). Every call must give the same bytes, on every
// rank, for every algorithm of every collective, below and above the size whose output is
// streamed too (8 MiB at most), for sum and for avg (which scales the input where it enters).
// Below that size the choice is made from 32 KiB where each rank has a CPU: 2 ranks here (3 on
// this 2-CPU machine cover the larger size and the steps a ring of 2 has not).
TEST(ThreadRanks, EveryCallGivesTheSameBytesWhicheverStoresFillTheSlots) {
  constexpr int kCalls = 6;
  const std::pair<OpKind, const char*> table[] = {{OpKind::kAllReduce, "ring"},
                                                  {OpKind::kAllReduce, "tree"},
                                                  {OpKind::kAllReduce, "recursive_doubling"},
                                                  {OpKind::kAllReduce, "rabenseifner"},
                                                  {OpKind::kAllReduce, "direct"},
                                                  {OpKind::kReduceScatter, "ring"},
                                                  {OpKind::kAllGather, "ring"},
                                                  {OpKind::kBroadcast, "tree"},
                                                  {OpKind::kBroadcast, "chain"},
                                                  {OpKind::kReduce, "tree"},
                                                  {OpKind::kReduce, "chain"},
                                                  {OpKind::kAllToAll, "direct"}};
  // Runs kCalls ops of each count on fresh communicators; every call must match the first.
  auto check = [&](int n, OpKind kind, const char* algo, lockstepRedOp_t op) {
    Config c;
    c.algo = std::string(opKindName(kind)) + "=" + algo;
    auto comms = makeComms(n, c);
    // count: NCCL's (the per-rank block of reduce-scatter, all-gather and all-to-all).
    // LOCKSTEP_TEST_QUICK (sanitizers, 10-50x slower): the sizes below the streamed output only.
    std::vector<size_t> counts{12'289, 80'000, (9 << 20) / 4 + 5};
    if (getenv("LOCKSTEP_TEST_QUICK")) counts.pop_back();
    for (size_t count : counts) {
      const bool blocks = kind == OpKind::kReduceScatter || kind == OpKind::kAllGather || kind == OpKind::kAllToAll;
      const size_t inCount = kind == OpKind::kReduceScatter || kind == OpKind::kAllToAll ? count * n : count;
      const size_t outCount = blocks && kind != OpKind::kReduceScatter ? count * n : count;
      std::vector<std::vector<std::vector<float>>> out(n, std::vector<std::vector<float>>(kCalls));
      onThreads(n, [&](int r) {
        std::vector<float> in(inCount);
        for (size_t i = 0; i < inCount; ++i) in[i] = 1.0f / (1 + (i * 7 + r * 13) % 101);  // inexact sums
        for (int k = 0; k < kCalls; ++k) {
          out[r][k].assign(outCount, -1.0f);
          comms[r]->run(OpDesc{kind, in.data(), out[r][k].data(), count, lockstepFloat32, op, 1});
        }
      });
      const std::string what = std::to_string(n) + " ranks, " + opKindName(kind) + " " + algo + " count " +
                               std::to_string(count) + " op " + redOpName(op);
      for (int r = 0; r < n; ++r) {
        if (kind == OpKind::kReduce && r != 1) continue;  // only the root's output is defined
        EXPECT_NE(out[r][0], std::vector<float>(outCount, -1.0f)) << what << ": rank " << r << " got nothing";
        for (int k = 1; k < kCalls; ++k)
          ASSERT_EQ(std::memcmp(out[r][0].data(), out[r][k].data(), outCount * 4), 0)
              << what << ": rank " << r << ", call " << k << " differs from call 0";
      }
    }
  };
  for (int n : {2, 3}) {
    for (const auto& [kind, algo] : table) {
      check(n, kind, algo, lockstepSum);
      const bool reduces = kind == OpKind::kAllReduce || kind == OpKind::kReduceScatter || kind == OpKind::kReduce;
      if (reduces) check(n, kind, algo, lockstepAvg);  // elsewhere the op plays no part
    }
  }
}

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

// Ranks that disagree on the world size: the rendezvous names those that never came, and tells
// apart one that came saying another size (it was "never connected" beside the disagreement).
TEST(ThreadRanks, AWorldSizeDisagreementSaysWhoCameWithAnotherSize) {
  setenv("LOCKSTEP_TIMEOUT", "2", 1);
  lockstepUniqueId id;
  ASSERT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  std::vector<std::string> errors(2);
  onThreads(2, [&](int r) {
    lockstepComm_t comm = nullptr;
    if (lockstepCommInitRank(&comm, r == 0 ? 2 : 3, id, r) == lockstepSuccess) {
      lockstepCommDestroy(comm);
      return;
    }
    errors[r] = lockstepGetLastError(nullptr);
  });
  unsetenv("LOCKSTEP_TIMEOUT");
  EXPECT_NE(errors[0].find("rank(s) 1 connected saying the world has another size"), std::string::npos) << errors[0];
  EXPECT_EQ(errors[0].find("never connected"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("rank(s) 2 never connected; rank(s) 0 connected saying the world has another size"),
            std::string::npos)
      << errors[1];
  for (const auto& e : errors) EXPECT_NE(e.find("ranks disagree on the world size"), std::string::npos) << e;
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
