// Ring order (host-contiguous rings): the order computed from hosts and NUMA nodes, and every
// ring-following collective planned through planOp in position space and translated back,
// run in the simulator for every N from 1 to 12 under several orders: exact results, every
// block where NCCL says it goes, and each host boundary crossed once.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <numeric>
#include <random>
#include <set>

#include "src/algo/registry.h"
#include "src/algo/ring_order.h"
#include "src/algo/simulator.h"
#include "src/core/errors.h"
#include "src/core/work.h"
#include "src/topo/ordering.h"

namespace lockstep {
namespace {

TEST(HostOrder, InterleavedHostsBecomeContiguous) {
  // Ranks 0,2 on host A, 1,3 on host B (a launcher that deals ranks round-robin).
  std::vector<uint64_t> hosts = {0xA, 0xB, 0xA, 0xB};
  std::vector<int> order = hostContiguousOrder(hosts, {0, 0, 0, 0});
  EXPECT_EQ(order, (std::vector<int>{0, 2, 1, 3}));
  EXPECT_EQ(hostCrossings(hosts, order), 2);
  std::vector<int> identity = {0, 1, 2, 3};
  EXPECT_EQ(hostCrossings(hosts, identity), 4);
  EXPECT_EQ(describeRing(hosts, order), "0 2 | 1 3");
}

TEST(HostOrder, ContiguousJobsKeepRankOrder) {
  std::vector<uint64_t> hosts = {7, 7, 7, 9, 9, 9, 3, 3};
  std::vector<int> order = hostContiguousOrder(hosts, std::vector<int>(8, -1));
  std::vector<int> identity(8);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_EQ(order, identity);
  EXPECT_TRUE(RingOrder(order).isIdentity());
  EXPECT_EQ(hostCrossings(hosts, order), 3);
  EXPECT_EQ(hostCrossings({1}, {0}), 0);
}

TEST(HostOrder, NumaNodesAreContiguousWithinAHost) {
  // One host, ranks alternating between NUMA nodes 0 and 1.
  std::vector<int> order = hostContiguousOrder({1, 1, 1, 1, 2, 2}, {0, 1, 0, 1, 1, 0});
  EXPECT_EQ(order, (std::vector<int>{0, 2, 1, 3, 5, 4}));
}

TEST(HostOrder, EveryHostBoundaryIsCrossedOnceForAnyLayout) {
  std::mt19937 rng(11);
  for (int n = 2; n <= 64; ++n) {
    for (int hostsCount = 1; hostsCount <= std::min(n, 5); ++hostsCount) {
      std::vector<uint64_t> hosts(n);
      for (auto& h : hosts) h = rng() % hostsCount;
      std::vector<int> order = hostContiguousOrder(hosts, std::vector<int>(n, 0));
      std::vector<uint64_t> distinct(hosts);
      std::sort(distinct.begin(), distinct.end());
      const int used = static_cast<int>(std::unique(distinct.begin(), distinct.end()) - distinct.begin());
      EXPECT_EQ(hostCrossings(hosts, order), used == 1 ? 0 : used) << "n=" << n;
      EXPECT_NO_THROW(RingOrder{order});
    }
  }
}

TEST(RingOrderTest, RejectsWhatIsNotAPermutation) {
  EXPECT_THROW(RingOrder({0, 0, 1}), InternalError);
  EXPECT_THROW(RingOrder({0, 3}), InternalError);
  RingOrder o({2, 0, 1});
  EXPECT_FALSE(o.isIdentity());
  EXPECT_EQ(o.positionOf, (std::vector<int>{1, 2, 0}));
  EXPECT_TRUE(RingOrder::identity(5).isIdentity());
}

// Runs one collective on n simulated ranks, planned by planOp under `order`, and checks every
// element of every rank's output. Inputs: rank r, element i -> r * 1000003 + i (int32 wraps,
// so the sums are exact whatever the reduction order).
void checkCollective(OpKind kind, Algorithm a, int n, size_t count, int root, const RingOrder& order) {
  const bool blocks = kind == OpKind::kReduceScatter || kind == OpKind::kAllGather;
  const size_t inCount = kind == OpKind::kReduceScatter ? count * n : count;
  const size_t outCount = kind == OpKind::kAllGather ? count * n : count;
  std::vector<std::vector<int32_t>> in(n, std::vector<int32_t>(inCount)), out(n, std::vector<int32_t>(outCount, -7));
  for (int r = 0; r < n; ++r) {
    for (size_t i = 0; i < inCount; ++i) in[r][i] = static_cast<int32_t>(r * 1000003 + i);
  }
  std::deque<Work> works(n);
  std::vector<Schedule> schedules(n);
  std::vector<std::vector<char*>> bufs(n);
  for (int r = 0; r < n; ++r) {
    OpDesc op{kind, in[r].data(), out[r].data(), count, lockstepInt32, lockstepSum, root};
    planOp(op, r, n, a, &works[r], &order);
    schedules[r] = works[r].schedule;
    bufs[r] = works[r].buffers;
  }
  simulate(schedules, bufs, lockstepInt32, lockstepSum, /*sliceBytes=*/64, /*slots=*/2);
  auto sumAt = [&](size_t i) {
    uint32_t s = 0;
    for (int r = 0; r < n; ++r) s += static_cast<uint32_t>(in[r][i]);
    return static_cast<int32_t>(s);
  };
  const std::string what = std::string(opKindName(kind)) + "/" + algorithmName(a) + " n=" + std::to_string(n) +
                           " count=" + std::to_string(count) + " root=" + std::to_string(root);
  for (int r = 0; r < n; ++r) {
    for (size_t i = 0; i < outCount; ++i) {
      int32_t want = 0;
      switch (kind) {
        case OpKind::kAllReduce:
          want = sumAt(i);
          break;
        case OpKind::kReduceScatter:
          want = sumAt(static_cast<size_t>(r) * count + i);  // block r of everyone's input
          break;
        case OpKind::kAllGather:
          want = in[i / count][i % count];  // block q from rank q
          break;
        case OpKind::kBroadcast:
          want = in[root][i];
          break;
        case OpKind::kReduce:
          want = r == root ? sumAt(i) : -7;  // only the root's output is written
          break;
        default:
          FAIL();
      }
      ASSERT_EQ(out[r][i], want) << what << " rank " << r << " element " << i << (blocks ? " (blocks)" : "");
    }
  }
}

std::vector<RingOrder> ordersFor(int n) {
  std::vector<RingOrder> orders;
  orders.push_back(RingOrder::identity(n));
  std::vector<uint64_t> hosts(n);
  for (int r = 0; r < n; ++r) hosts[r] = r % 2;  // interleaved over two hosts
  orders.emplace_back(hostContiguousOrder(hosts, std::vector<int>(n, 0)));
  std::vector<int> shuffled(n);
  std::iota(shuffled.begin(), shuffled.end(), 0);
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(n));
  orders.emplace_back(shuffled);
  return orders;
}

TEST(RingOrderTest, EveryRingCollectiveIsExactUnderAnyOrder) {
  for (int n = 1; n <= 12; ++n) {
    for (const RingOrder& order : ordersFor(n)) {
      for (size_t count : {size_t(0), size_t(1), size_t(n + 1), size_t(301)}) {
        checkCollective(OpKind::kAllReduce, Algorithm::kRing, n, count, -1, order);
        checkCollective(OpKind::kReduceScatter, Algorithm::kRing, n, count, -1, order);
        checkCollective(OpKind::kAllGather, Algorithm::kRing, n, count, -1, order);
        for (int root = 0; root < n; ++root) {
          checkCollective(OpKind::kBroadcast, Algorithm::kChain, n, count, root, order);
          checkCollective(OpKind::kReduce, Algorithm::kChain, n, count, root, order);
        }
      }
    }
  }
}

TEST(RingOrderTest, AlgorithmsOffTheRingIgnoreTheOrder) {
  // Rank-ordered (deterministic) and tree algorithms keep rank numbering: their schedules are
  // the same with and without an order.
  const int n = 6;
  RingOrder order({0, 2, 4, 1, 3, 5});
  std::vector<int32_t> buf(100);
  for (Algorithm a : {Algorithm::kTree, Algorithm::kOrdered, Algorithm::kDirect, Algorithm::kRecursiveDoubling}) {
    for (int r = 0; r < n; ++r) {
      Work plain, ordered;
      OpDesc op{OpKind::kAllReduce, buf.data(), buf.data(), buf.size(), lockstepInt32, lockstepSum, -1};
      planOp(op, r, n, a, &plain);
      planOp(op, r, n, a, &ordered, &order);
      ASSERT_EQ(plain.schedule.steps.size(), ordered.schedule.steps.size());
      for (size_t i = 0; i < plain.schedule.steps.size(); ++i) {
        EXPECT_EQ(plain.schedule.steps[i].sendPeer, ordered.schedule.steps[i].sendPeer) << algorithmName(a);
        EXPECT_EQ(plain.schedule.steps[i].recvPeer, ordered.schedule.steps[i].recvPeer) << algorithmName(a);
      }
    }
  }
}

TEST(RingOrderTest, InterleavedHostsCrossTheNetworkOncePerHostBoundary) {
  // 8 ranks dealt round-robin over 2 hosts: in rank order every hop of the ring crosses hosts;
  // in host order two hops do.
  const int n = 8;
  std::vector<uint64_t> hosts(n);
  for (int r = 0; r < n; ++r) hosts[r] = r % 2;
  RingOrder order(hostContiguousOrder(hosts, std::vector<int>(n, 0)));
  std::vector<float> buf(1000);
  auto crossHostLinks = [&](const RingOrder& o) {
    int links = 0;
    for (int r = 0; r < n; ++r) {
      Work w;
      OpDesc op{OpKind::kAllReduce, buf.data(), buf.data(), buf.size(), lockstepFloat32, lockstepSum, -1};
      planOp(op, r, n, Algorithm::kRing, &w, &o);
      std::set<int> sendPeers;
      for (const Step& s : w.schedule.steps) {
        if (s.sendPeer >= 0) sendPeers.insert(s.sendPeer);
      }
      EXPECT_EQ(sendPeers.size(), 1u);  // a ring: one successor
      for (int p : sendPeers) links += hosts[p] != hosts[r];
    }
    return links;
  };
  EXPECT_EQ(crossHostLinks(RingOrder::identity(n)), n);
  EXPECT_EQ(crossHostLinks(order), 2);
}

}  // namespace
}  // namespace lockstep
