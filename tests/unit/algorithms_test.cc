// Every all-reduce algorithm, run in the simulator for every N from 1 to 64 (and 1024) with two
// credits per link: exact results (int32 sums wrap, so any order gives the same bits), float
// results bit-identical on every rank, no deadlock. Also the fold arithmetic, the trees' depth,
// the rooted variants, and the rank-ordered reductions of deterministic mode.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "src/algo/fold.h"
#include "src/algo/registry.h"
#include "src/algo/simulator.h"
#include "src/algo/tree.h"
#include "src/exec/apply.h"

namespace lockstep {
namespace {

const Algorithm kAllReduceAlgorithms[] = {Algorithm::kRing,         Algorithm::kTree,   Algorithm::kRecursiveDoubling,
                                          Algorithm::kRabenseifner, Algorithm::kDirect, Algorithm::kOrdered};

// Two ranks that both combine the pair (in0, in1) from their own input and the other's message
// (recursive doubling's first round, the one-shot's first step) must compute in0 (op) in1 in that
// order on both, even for a sum or an avg: which NaN comes out depends on the order. Rank 0 has
// its input first (localFirst), rank 1 the message; float32 NaNs with distinct payloads.
TEST(ApplyPrim, BothEndsOfAPairwiseCombineGetTheSameBitsForEveryOp) {
  constexpr size_t kCount = 64;
  std::vector<uint32_t> bits[2];
  for (int r = 0; r < 2; ++r) {
    for (size_t i = 0; i < kCount; ++i) {
      // Every other element a NaN on both ranks, each with its own payload; the rest plain values.
      bits[r].push_back(i % 2 ? 0x7fc00000u | static_cast<uint32_t>(r + 1) << 8 | static_cast<uint32_t>(i)
                              : 0x3f800000u + static_cast<uint32_t>(i * 977 + r * 131));
    }
  }
  for (lockstepRedOp_t op : {lockstepSum, lockstepAvg, lockstepProd, lockstepMax, lockstepMin}) {
    const SliceKernels sk{reduceKernels(lockstepFloat32, op), sizeof(float), 2};
    std::vector<uint32_t> result[2];
    for (int r = 0; r < 2; ++r) {
      // What the peer sent: its input, scaled by its kSend for a floating avg.
      std::vector<uint32_t> msg(kCount), out(kCount, 0);
      Step send{};
      send.prim = Prim::kSend;
      send.src = kInput;
      send.count = kCount;
      const char* peerBuffers[] = {reinterpret_cast<const char*>(bits[1 - r].data()), nullptr};
      applyPrim(send, 0, kCount, peerBuffers, nullptr, msg.data(), sk);
      Step combine{};
      combine.prim = Prim::kRecvReduceCopy;
      combine.src = kInput;
      combine.dst = kOutput;
      combine.count = kCount;
      combine.localFirst = r == 0;
      combine.finish = true;
      const char* buffers[] = {reinterpret_cast<const char*>(bits[r].data()), reinterpret_cast<char*>(out.data())};
      applyPrim(combine, 0, kCount, buffers, msg.data(), nullptr, sk);
      result[r] = out;
    }
    EXPECT_EQ(result[0], result[1]) << redOpName(op);
  }
}

// Ops may fill their send slots with streaming stores, reductions bound for a slot made in a
// scratch buffer first, or in an output written with ordinary stores (src/exec/slot_stores.h):
// every prim that writes a slot must leave the same bytes in the slot and the output either way,
// for every op (avg scales and divides), whether the output streams (large ops) or not.
TEST(ApplyPrim, StreamingSlotsWriteTheSameBytes) {
  constexpr size_t kCount = 1000;  // not a multiple of the vector width: the tails too
  std::vector<float> input(kCount), received(kCount);
  for (size_t i = 0; i < kCount; ++i) {
    input[i] = 0.5f + static_cast<float>(i) * 0.25f;
    received[i] = 3.0f - static_cast<float>(i) * 0.125f;
  }
  for (bool streamOutput : {true, false}) {
    for (lockstepRedOp_t op : {lockstepSum, lockstepAvg, lockstepMax}) {
      for (Prim prim : {Prim::kSend, Prim::kRecvReduceSend, Prim::kRecvReduceCopySend, Prim::kRecvCopySend}) {
        for (bool finish : {false, true}) {
          std::vector<float> slot[2], out[2];
          for (int streaming = 0; streaming < 2; ++streaming) {
            SliceKernels sk{reduceKernels(lockstepFloat32, op), sizeof(float), 4};
            sk.streamOutput = streamOutput;
            std::vector<float> scratch(kCount);
            if (streaming) sk.slotScratch = scratch.data();
            slot[streaming].assign(kCount, -1.0f);
            out[streaming].assign(kCount, -2.0f);
            Step step{};
            step.prim = prim;
            step.count = kCount;
            step.finish = finish;
            const char* buffers[] = {reinterpret_cast<const char*>(input.data()),
                                     reinterpret_cast<char*>(out[streaming].data())};
            applyPrim(step, 0, kCount, buffers, received.data(), slot[streaming].data(), sk);
          }
          const std::string what = std::string(primName(prim)) + " " + redOpName(op) + " finish " +
                                   std::to_string(finish) + " streamOutput " + std::to_string(streamOutput);
          EXPECT_EQ(slot[0], slot[1]) << what;
          EXPECT_EQ(out[0], out[1]) << what;
        }
      }
    }
  }
}

TEST(Fold, MapsEveryRankOntoAPowerOfTwo) {
  for (int n = 1; n <= 64; ++n) {
    std::set<int> real;
    int sittingOut = 0;
    for (int r = 0; r < n; ++r) {
      Fold f(r, n);
      EXPECT_EQ(f.p + f.r, n);
      EXPECT_LT(f.r, f.p);
      if (f.sitsOut()) {
        ++sittingOut;
        EXPECT_EQ(Fold(f.partner, n).partner, r) << "fold partners point at each other";
      } else {
        EXPECT_EQ(f.real(f.newRank), r);
        real.insert(f.newRank);
      }
    }
    EXPECT_EQ(static_cast<int>(real.size()), Fold(0, n).p);
    EXPECT_EQ(sittingOut, Fold(0, n).r);
  }
}

TEST(Trees, HeapTreeIsConnectedAndLogDeep) {
  for (int n = 1; n <= 1024; n = n < 64 ? n + 1 : n * 2) {
    int maxDepth = 0;
    for (int p = 0; p < n; ++p) {
      int depth = 0;
      for (int q = p; q != 0; q = heapTreeNode(q, n).parent) ++depth;
      maxDepth = std::max(maxDepth, depth);
      TreeNode t = heapTreeNode(p, n);
      for (int i = 0; i < t.nchildren; ++i) EXPECT_EQ(heapTreeNode(t.children[i], n).parent, p);
    }
    EXPECT_LE(maxDepth, static_cast<int>(std::log2(n)) + 1) << "n=" << n;
  }
}

// The second tree is a permutation of the ranks whose leaves are the first tree's interior nodes
// (complementary), and it shares no link with the first wherever that is possible: every n
// except 2, 3, 5 and 6 (the tuner's treeLanesShareLinks relies on this list).
TEST(Trees, SecondTreeIsComplementaryAndSharesNoLink) {
  auto linkedInFirst = [](int a, int b) { return (b > 0 && a == (b - 1) / 2) || (a > 0 && b == (a - 1) / 2); };
  for (int n = 2; n <= 4096; n = n < 130 ? n + 1 : n * 2 + 1) {
    std::vector<int> second = secondTree(n);
    std::set<int> ranks(second.begin(), second.end());
    ASSERT_EQ(ranks.size(), static_cast<size_t>(n));
    ASSERT_EQ(*ranks.begin(), 0);
    ASSERT_EQ(*ranks.rbegin(), n - 1);
    int shared = 0, interiorInBoth = 0;
    for (int p = 1; p < n; ++p) shared += linkedInFirst(second[p], second[(p - 1) / 2]);
    for (int p = 0; 2 * p + 1 < n; ++p) interiorInBoth += 2 * second[p] + 1 < n;
    const bool smallException = n == 2 || n == 3 || n == 5 || n == 6;
    EXPECT_EQ(shared > 0, smallException) << "n=" << n;
    EXPECT_LE(interiorInBoth, n % 2 ? 1 : 0) << "n=" << n;  // odd n: one rank is interior twice
  }
}

// Runs one all-reduce of random int32 data through the simulator and checks every rank.
void checkAllReduce(Algorithm a, int n, size_t count, size_t sliceBytes, int slots, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> in(n, std::vector<int32_t>(count)), out(n, std::vector<int32_t>(count, -7));
  for (auto& v : in) {
    for (auto& x : v) x = static_cast<int32_t>(rng());
  }
  std::vector<Schedule> schedules(n);
  std::vector<std::vector<char*>> bufs(n);
  for (int r = 0; r < n; ++r) {
    buildSchedule(a, OpKind::kAllReduce, r, n, count, -1, &schedules[r]);
    bufs[r] = {reinterpret_cast<char*>(in[r].data()), reinterpret_cast<char*>(out[r].data())};
  }
  simulate(schedules, bufs, lockstepInt32, lockstepSum, sliceBytes, slots);
  for (size_t i = 0; i < count; ++i) {
    uint32_t sum = 0;
    for (int r = 0; r < n; ++r) sum += static_cast<uint32_t>(in[r][i]);
    for (int r = 0; r < n; ++r) {
      ASSERT_EQ(static_cast<uint32_t>(out[r][i]), sum)
          << algorithmName(a) << " n=" << n << " count=" << count << " rank " << r << " element " << i;
    }
  }
}

class AllReduceAlgorithms : public ::testing::TestWithParam<Algorithm> {};

TEST_P(AllReduceAlgorithms, ExactForEveryNFrom1To64WithTwoCredits) {
  for (int n = 1; n <= 64; ++n) {
    for (size_t count : {size_t(0), size_t(1), size_t(n - 1), size_t(n + 1), size_t(997)}) {
      checkAllReduce(GetParam(), n, count, /*sliceBytes=*/64, /*slots=*/2, n * 7 + count);
    }
  }
}

TEST_P(AllReduceAlgorithms, ScalesTo1024Ranks) {
  // The one-shot moves N-1 copies of everything: keep its buffer small.
  checkAllReduce(GetParam(), 1024, GetParam() == Algorithm::kDirect ? 67 : 2053, 256, 2, 5);
}

TEST_P(AllReduceAlgorithms, FloatResultsAreBitIdenticalOnEveryRank) {
  for (int n : {2, 3, 5, 6, 8, 13}) {
    const size_t count = 3001;
    std::mt19937 rng(n);
    std::normal_distribution<float> d(0, 1000);
    std::vector<std::vector<float>> in(n, std::vector<float>(count)), out(n, std::vector<float>(count));
    std::vector<Schedule> schedules(n);
    std::vector<std::vector<char*>> bufs(n);
    for (int r = 0; r < n; ++r) {
      for (auto& x : in[r]) x = d(rng);
      buildSchedule(GetParam(), OpKind::kAllReduce, r, n, count, -1, &schedules[r]);
      bufs[r] = {reinterpret_cast<char*>(in[r].data()), reinterpret_cast<char*>(out[r].data())};
    }
    for (lockstepRedOp_t op : {lockstepSum, lockstepAvg, lockstepMax}) {
      simulate(schedules, bufs, lockstepFloat32, op, 512, 2);
      for (int r = 1; r < n; ++r) {
        ASSERT_EQ(std::memcmp(out[0].data(), out[r].data(), count * 4), 0)
            << algorithmName(GetParam()) << " n=" << n << " op " << op << " rank " << r;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, AllReduceAlgorithms, ::testing::ValuesIn(kAllReduceAlgorithms),
                         [](const auto& info) { return std::string(algorithmName(info.param)); });

// The slower, labelled sweep: every algorithm at 4096 ranks.
TEST(AllReduceAlgorithmsSlow, DISABLED_Scale4096) {
  for (Algorithm a : kAllReduceAlgorithms) checkAllReduce(a, 4096, 4099, 256, 2, 9);
}

TEST(RootedAlgorithms, TreeAndChainAndOrderedForEveryRoot) {
  for (int n = 1; n <= 17; ++n) {
    for (int root = 0; root < n; ++root) {
      const size_t count = 301;
      for (Algorithm a : {Algorithm::kChain, Algorithm::kTree}) {  // broadcast
        std::vector<std::vector<int32_t>> in(n, std::vector<int32_t>(count, -1)), out(n, std::vector<int32_t>(count));
        for (size_t i = 0; i < count; ++i) in[root][i] = static_cast<int32_t>(i * 31 + root);
        std::vector<Schedule> s(n);
        std::vector<std::vector<char*>> bufs(n);
        for (int r = 0; r < n; ++r) {
          buildSchedule(a, OpKind::kBroadcast, r, n, count, root, &s[r]);
          bufs[r] = {reinterpret_cast<char*>(in[r].data()), reinterpret_cast<char*>(out[r].data())};
        }
        simulate(s, bufs, lockstepInt32, lockstepSum, 64, 2);
        for (int r = 0; r < n; ++r) ASSERT_EQ(out[r][count - 1], in[root][count - 1]) << algorithmName(a) << " n=" << n;
      }
      for (Algorithm a : {Algorithm::kChain, Algorithm::kTree, Algorithm::kOrdered}) {  // reduce
        std::vector<std::vector<int32_t>> in(n, std::vector<int32_t>(count)), out(n, std::vector<int32_t>(count, 0));
        for (int r = 0; r < n; ++r) {
          for (size_t i = 0; i < count; ++i) in[r][i] = static_cast<int32_t>(r * 1000 + i);
        }
        std::vector<Schedule> s(n);
        std::vector<std::vector<char*>> bufs(n);
        for (int r = 0; r < n; ++r) {
          buildSchedule(a, OpKind::kReduce, r, n, count, root, &s[r]);
          bufs[r] = {reinterpret_cast<char*>(in[r].data()), reinterpret_cast<char*>(out[r].data())};
        }
        simulate(s, bufs, lockstepInt32, lockstepSum, 64, 2);
        int32_t want = 0;
        for (int r = 0; r < n; ++r) want += r * 1000 + static_cast<int32_t>(count - 1);
        ASSERT_EQ(out[root][count - 1], want) << algorithmName(a) << " n=" << n << " root " << root;
      }
    }
  }
}

TEST(OrderedReductions, SumInRankOrderWhateverTheSlicing) {
  // Values whose float sum depends on the order: only one order may ever be used.
  for (int n : {2, 3, 5, 7}) {
    const size_t count = 2000;
    std::vector<std::vector<float>> in(n, std::vector<float>(count));
    for (int r = 0; r < n; ++r) {
      for (size_t i = 0; i < count; ++i) in[r][i] = (r % 2 ? 1e8f : 1.0f) * (1.0f + 0.001f * ((i + r) % 17));
    }
    std::vector<float> want(count);
    for (size_t i = 0; i < count; ++i) {
      float acc = in[0][i];
      for (int r = 1; r < n; ++r) acc = acc + in[r][i];
      want[i] = acc;
    }
    for (Algorithm a : {Algorithm::kOrdered, Algorithm::kDirect}) {
      for (size_t slice : {64, 4096, 1 << 20}) {
        std::vector<std::vector<float>> out(n, std::vector<float>(count));
        std::vector<Schedule> s(n);
        std::vector<std::vector<char*>> bufs(n);
        for (int r = 0; r < n; ++r) {
          buildSchedule(a, OpKind::kAllReduce, r, n, count, -1, &s[r]);
          bufs[r] = {reinterpret_cast<char*>(in[r].data()), reinterpret_cast<char*>(out[r].data())};
        }
        simulate(s, bufs, lockstepFloat32, lockstepSum, slice, 2);
        for (int r = 0; r < n; ++r) {
          ASSERT_EQ(std::memcmp(out[r].data(), want.data(), count * 4), 0)
              << algorithmName(a) << " n=" << n << " slice " << slice << " rank " << r;
        }
      }
    }
  }
}

}  // namespace
}  // namespace lockstep
