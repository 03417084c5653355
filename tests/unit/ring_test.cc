// Ring arithmetic and the ring all-reduce schedule, for every N from 1 to 64 and beyond, run in
// the simulator: correct results, bit-identical ranks, no deadlock with 2 credits, and exactly
// 2(N-1)/N of the buffer sent per rank.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "src/algo/ring.h"
#include "src/algo/ring_math.h"
#include "src/algo/simulator.h"

namespace lockstep {
namespace {

// Chunks tile the buffer from grain boundaries; whole chunks differ by at most one grain, and
// only the chunk that holds the end is shorter (or chunks after it empty).
TEST(RingMath, ChunksTileTheBufferOnGrainsAndDifferByAtMostOneGrain) {
  for (int n = 1; n <= 64; ++n) {
    for (size_t count :
         {size_t(0), size_t(1), size_t(n - 1), size_t(n), size_t(n + 1), size_t(16 * n + 3), size_t(1000003)}) {
      size_t next = 0, lo = ~size_t(0), hi = 0;
      for (int c = 0; c < n; ++c) {
        Range r = chunkRange(count, n, c);
        ASSERT_EQ(r.offset, next) << "n=" << n << " count=" << count << " chunk " << c;
        if (r.offset < count)
          ASSERT_EQ(r.offset % kChunkGrain, 0u) << "n=" << n << " count=" << count << " chunk " << c;
        next += r.count;
        if (next < count) {  // a whole chunk: the end is further on
          lo = std::min(lo, r.count);
          hi = std::max(hi, r.count);
        } else if (r.count > 0) {
          ASSERT_LE(r.count, hi == 0 ? r.count : hi) << "the last chunk is no longer than the others";
        }
      }
      ASSERT_EQ(next, count);
      if (hi > 0) ASSERT_LE(hi - lo, kChunkGrain) << "n=" << n << " count=" << count;
    }
  }
}

TEST(RingMath, NeighboursAndModulo) {
  for (int n = 1; n <= 64; ++n) {
    for (int r = 0; r < n; ++r) {
      EXPECT_EQ(ringNext(r, n), (r + 1) % n);
      EXPECT_EQ(ringPrev(ringNext(r, n), n), r);
      EXPECT_EQ(ringMod(r - 3 * n, n), r);
    }
  }
}

TEST(RingSchedule, HasTwoNMinusOneStepsWithTheRightPeers) {
  for (int n = 2; n <= 64; ++n) {
    for (int r = 0; r < n; ++r) {
      Schedule s;
      ringAllReduce(r, n, 1000 * n, &s);
      ASSERT_EQ(s.steps.size(), size_t(2 * n - 1));  // 2(N-1) hops, as 2N-1 fused primitives
      int sends = 0, recvs = 0, finishes = 0;
      for (const Step& st : s.steps) {
        if (primSends(st.prim)) {
          ++sends;
          EXPECT_EQ(st.sendPeer, (r + 1) % n);
        }
        if (primRecvs(st.prim)) {
          ++recvs;
          EXPECT_EQ(st.recvPeer, (r + n - 1) % n);
        }
        finishes += st.finish;
      }
      EXPECT_EQ(sends, 2 * (n - 1));
      EXPECT_EQ(recvs, 2 * (n - 1));
      EXPECT_EQ(finishes, 1) << "each rank finishes exactly its own chunk";
      // What the flight recorder keeps: the next rank (the first step sends), then the previous.
      const PeerList peers = peersOf(s);
      ASSERT_EQ(peers.n, n == 2 ? 1 : 2) << "n=" << n << " r=" << r;
      EXPECT_EQ(peers.rank[0], (r + 1) % n);
      if (n > 2) EXPECT_EQ(peers.rank[1], (r + n - 1) % n);
    }
  }
}

TEST(RingSchedule, PeerListStopsAtItsCapacity) {
  Schedule s;
  for (int p = 1; p <= 2 * PeerList::kMax; ++p) s.add(Step{.prim = Prim::kSend, .sendPeer = p});
  const PeerList peers = peersOf(s);
  ASSERT_EQ(peers.n, PeerList::kMax);
  for (int k = 0; k < PeerList::kMax; ++k) EXPECT_EQ(peers.rank[k], k + 1);
}

struct SimRun {
  std::vector<std::vector<int32_t>> out;
  SimStats stats;
};

SimRun runRing(int n, size_t count, size_t sliceBytes, int slots, bool inPlace, uint32_t seed,
               std::vector<std::vector<int32_t>>* inputs) {
  std::mt19937 rng(seed);
  inputs->assign(n, std::vector<int32_t>(count));
  for (auto& v : *inputs) {
    for (auto& x : v) x = static_cast<int32_t>(rng());
  }
  SimRun run;
  run.out = inPlace ? *inputs : std::vector<std::vector<int32_t>>(n, std::vector<int32_t>(count, -1));
  std::vector<Schedule> schedules(n);
  std::vector<std::vector<char*>> bufs(n);
  for (int r = 0; r < n; ++r) {
    ringAllReduce(r, n, count, &schedules[r]);
    char* in = reinterpret_cast<char*>(inPlace ? run.out[r].data() : (*inputs)[r].data());
    bufs[r] = {in, reinterpret_cast<char*>(run.out[r].data())};
  }
  run.stats = simulate(schedules, bufs, lockstepInt32, lockstepSum, sliceBytes, slots);
  return run;
}

TEST(RingSimulator, EveryNFrom1To64IsExactWithTwoCredits) {
  for (int n = 1; n <= 64; ++n) {
    for (size_t count : {size_t(0), size_t(1), size_t(n - 1), size_t(n + 1), size_t(997)}) {
      for (bool inPlace : {false, true}) {
        std::vector<std::vector<int32_t>> inputs;
        SimRun run = runRing(n, count, /*sliceBytes=*/64, /*slots=*/2, inPlace, n * 131 + count, &inputs);
        for (size_t i = 0; i < count; ++i) {
          uint32_t sum = 0;  // int32 sum wraps: compute it in unsigned arithmetic
          for (int r = 0; r < n; ++r) sum += static_cast<uint32_t>(inputs[r][i]);
          for (int r = 0; r < n; ++r) {
            ASSERT_EQ(static_cast<uint32_t>(run.out[r][i]), sum)
                << "n=" << n << " count=" << count << " inPlace=" << inPlace << " rank " << r << " element " << i;
          }
        }
      }
    }
  }
}

TEST(RingSimulator, SendsTwoNMinusOneOverNOfTheBufferPerRank) {
  for (int n : {2, 3, 8, 17, 64}) {
    size_t count = 64 * n * 10;
    std::vector<std::vector<int32_t>> inputs;
    SimRun run = runRing(n, count, 256, 4, false, 7, &inputs);
    for (int r = 0; r < n; ++r) {
      EXPECT_EQ(run.stats.bytesSent[r], 2 * (n - 1) * count / n * sizeof(int32_t)) << "n=" << n << " rank " << r;
    }
  }
}

TEST(RingSimulator, ScalesTo1024Ranks) {
  const int n = 1024;
  std::vector<std::vector<int32_t>> inputs;
  SimRun run = runRing(n, 3 * n + 5, 64, 2, false, 99, &inputs);
  for (size_t i = 0; i < inputs[0].size(); i += 37) {
    uint32_t sum = 0;
    for (int r = 0; r < n; ++r) sum += static_cast<uint32_t>(inputs[r][i]);
    for (int r = 0; r < n; r += 97) ASSERT_EQ(static_cast<uint32_t>(run.out[r][i]), sum);
  }
}

TEST(RingSimulator, FloatResultsAreBitIdenticalOnEveryRank) {
  for (int n : {3, 5, 8, 13}) {
    const size_t count = 5003;
    std::mt19937 rng(n);
    std::normal_distribution<float> d(0, 1000);
    std::vector<std::vector<float>> in(n, std::vector<float>(count)), out(n, std::vector<float>(count));
    std::vector<Schedule> schedules(n);
    std::vector<std::vector<char*>> bufs(n);
    for (int r = 0; r < n; ++r) {
      for (auto& x : in[r]) x = d(rng);
      ringAllReduce(r, n, count, &schedules[r]);
      bufs[r] = {reinterpret_cast<char*>(in[r].data()), reinterpret_cast<char*>(out[r].data())};
    }
    simulate(schedules, bufs, lockstepFloat32, lockstepSum, 128, 2);
    for (int r = 1; r < n; ++r) ASSERT_EQ(std::memcmp(out[0].data(), out[r].data(), count * 4), 0) << "rank " << r;
  }
}

}  // namespace
}  // namespace lockstep
