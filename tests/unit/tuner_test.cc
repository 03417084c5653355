// The tuner is a pure function: these tests pin its parsing, its choices and its rules.
#include "src/algo/tuner.h"

#include <gtest/gtest.h>

#include "src/algo/registry.h"
#include "src/core/config.h"
#include "src/core/errors.h"

namespace lockstep {
namespace {

constexpr Algorithm kAll[] = {Algorithm::kRing,         Algorithm::kTree,   Algorithm::kRecursiveDoubling,
                              Algorithm::kRabenseifner, Algorithm::kDirect, Algorithm::kChain,
                              Algorithm::kOrdered};
constexpr OpKind kKinds[] = {OpKind::kAllReduce, OpKind::kReduceScatter, OpKind::kAllGather, OpKind::kBroadcast,
                             OpKind::kReduce,    OpKind::kAllToAll,      OpKind::kBarrier};
const LinkCost kShm = defaultLinkCost("shm");
const LinkCost kSocket = defaultLinkCost("socket");

Algorithm pick(OpKind k, int n, size_t bytes, const LinkCost& link = kShm, const TunerSettings& s = {}) {
  return chooseAlgorithm(k, n, bytes, link, s);
}

TEST(Tuner, ParsesOneNameForEveryCollectiveThatHasIt) {
  TunerSettings s = parseTunerSettings("tree", false);
  EXPECT_EQ(s.forced[static_cast<int>(OpKind::kAllReduce)], Algorithm::kTree);
  EXPECT_EQ(s.forced[static_cast<int>(OpKind::kBroadcast)], Algorithm::kTree);
  EXPECT_EQ(s.forced[static_cast<int>(OpKind::kReduce)], Algorithm::kTree);
  EXPECT_FALSE(s.forced[static_cast<int>(OpKind::kAllGather)].has_value());  // no tree all-gather
  EXPECT_EQ(parseTunerSettings("rd", false).forced[static_cast<int>(OpKind::kAllReduce)],
            Algorithm::kRecursiveDoubling);
}

TEST(Tuner, ParsesPerCollectiveChoices) {
  TunerSettings s = parseTunerSettings("allreduce=rabenseifner,broadcast=chain,reduce=tree", false);
  EXPECT_EQ(s.forced[static_cast<int>(OpKind::kAllReduce)], Algorithm::kRabenseifner);
  EXPECT_EQ(s.forced[static_cast<int>(OpKind::kBroadcast)], Algorithm::kChain);
  EXPECT_EQ(s.forced[static_cast<int>(OpKind::kReduce)], Algorithm::kTree);
  EXPECT_FALSE(s.forced[static_cast<int>(OpKind::kReduceScatter)].has_value());
  EXPECT_FALSE(parseTunerSettings("", false).forced[static_cast<int>(OpKind::kAllReduce)].has_value());
}

TEST(Tuner, RejectsUnknownNamesWithAMessageThatSaysWhich) {
  auto message = [](const std::string& spec) {
    try {
      parseTunerSettings(spec, false);
    } catch (const InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_NE(message("butterfly").find("unknown algorithm \"butterfly\""), std::string::npos);
  EXPECT_NE(message("allreduce=butterfly").find("unknown algorithm"), std::string::npos);
  EXPECT_NE(message("gather=ring").find("unknown collective \"gather\""), std::string::npos);
  EXPECT_NE(message("allgather=tree").find("tree does not implement allgather"), std::string::npos);
  // Accepted silently before (helper-65): a spec naming nothing, and one contradicting itself.
  EXPECT_NE(message(",").find("names no algorithm"), std::string::npos);
  EXPECT_NE(message("allreduce=tree,allreduce=ring").find("forces allreduce twice"), std::string::npos);
  EXPECT_EQ(message("allreduce=tree,allreduce=tree"), "(accepted)");
  EXPECT_EQ(message("ring,allreduce=tree"), "(accepted)");                 // a default, then one collective's own
  EXPECT_EQ(message("allreduce=ring,tree,allreduce=ring"), "(accepted)");  // the same choice twice
  // Accepted before (helper-83): two bare names for one collective (the last one ran), an item
  // with no collective before its '='; and the error listed no collective names.
  EXPECT_NE(message("ring,tree")
                .find("names two algorithms for one collective (ring and tree for allreduce; ring "
                      "and tree for barrier): add allreduce=<name>,barrier=<name>"),
            std::string::npos)
      << message("ring,tree");
  // Settled by the collectives' own items (helper-85: refused, with advice it already followed).
  EXPECT_EQ(message("tree,chain,broadcast=chain,reduce=chain"), "(accepted)");
  EXPECT_EQ(message("ring,tree,allreduce=ring,barrier=tree"), "(accepted)");
  EXPECT_NE(message("ring,tree,allreduce=ring").find("(ring and tree for barrier): add barrier=<name>"),
            std::string::npos)
      << message("ring,tree,allreduce=ring");
  EXPECT_NE(message("=ring").find("unknown collective \"\" in \"=ring\""), std::string::npos) << message("=ring");
  EXPECT_NE(message("sendrecv=direct").find("(known: allreduce, reducescatter, allgather, broadcast, reduce"),
            std::string::npos)
      << message("sendrecv=direct");
  EXPECT_EQ(message("ring,chain"), "(accepted)");  // no collective has both
}

TEST(Tuner, AChoiceForOneCollectiveWinsOverABareNameInAnyOrder) {
  for (const char* spec : {"allreduce=ring,tree", "tree,allreduce=ring"}) {
    TunerSettings s = parseTunerSettings(spec, false);
    EXPECT_EQ(s.forced[static_cast<int>(OpKind::kAllReduce)], Algorithm::kRing) << spec;
    EXPECT_EQ(s.forced[static_cast<int>(OpKind::kBroadcast)], Algorithm::kTree) << spec;
  }
}

TEST(Tuner, PicksOnlyAlgorithmsThatImplementTheCollective) {
  for (OpKind k : kKinds) {
    for (int n : {1, 2, 3, 4, 7, 8, 64, 1000, 4096}) {
      for (size_t bytes : {size_t(0), size_t(8), size_t(4096), size_t(1) << 20, size_t(1) << 30}) {
        for (bool det : {false, true}) {
          TunerSettings s;
          s.deterministic = det;
          Algorithm a = pick(k, n, bytes, kSocket, s);
          EXPECT_TRUE(implements(a, k)) << algorithmName(a) << " for " << opKindName(k);
        }
      }
    }
  }
}

TEST(Tuner, SmallMessagesTakeFewStepsAndLargeOnesTheBandwidthOptimalRing) {
  // 8 ranks: the ring's 14 latency steps lose at 8 bytes; at 256 MiB its 2(N-1)/N bytes win.
  Algorithm small = pick(OpKind::kAllReduce, 8, 8);
  EXPECT_TRUE(small == Algorithm::kRecursiveDoubling || small == Algorithm::kDirect) << algorithmName(small);
  Algorithm large = pick(OpKind::kAllReduce, 8, 256u << 20);
  EXPECT_TRUE(large == Algorithm::kRing || large == Algorithm::kRabenseifner) << algorithmName(large);
  // At 1024 ranks the ring's latency term stays large well into the megabytes.
  EXPECT_NE(pick(OpKind::kAllReduce, 1024, 1u << 20, kSocket), Algorithm::kRing);
  EXPECT_EQ(pick(OpKind::kBroadcast, 64, 8), Algorithm::kTree);
  EXPECT_EQ(pick(OpKind::kBroadcast, 2, 1u << 28), Algorithm::kChain);
}

// The communicator combines its pairs' links field by field, starting from a free link: no field
// may keep the free value, or the tuner stops charging for it (it once lost the reduction rate,
// and 2 ranks ran recursive doubling, which reduces twice the data, at every size).
TEST(Tuner, TheSlowestLinkKeepsEveryCost) {
  LinkCost shm = defaultLinkCost("shm"), socket = defaultLinkCost("socket");
  LinkCost w = slowerOf(slowerOf(kFreeLink, shm), socket);
  EXPECT_EQ(w.alphaUs, std::max(shm.alphaUs, socket.alphaUs));
  EXPECT_EQ(w.gbps, std::min(shm.gbps, socket.gbps));
  EXPECT_EQ(w.gapUs, std::max(shm.gapUs, socket.gapUs));
  EXPECT_EQ(w.reduceGBps, std::min(shm.reduceGBps, socket.reduceGBps));
  LinkCost one = slowerOf(kFreeLink, shm);
  EXPECT_EQ(one.reduceGBps, shm.reduceGBps);
  EXPECT_EQ(one.gapUs, shm.gapUs);
  // With the reduction charged, 2 ranks never reduce the whole buffer on both at large sizes.
  EXPECT_NE(chooseAlgorithm(OpKind::kAllReduce, 2, size_t{256} << 20, one, TunerSettings{}),
            Algorithm::kRecursiveDoubling);
}

TEST(Tuner, PredictionsGrowWithSize) {
  for (Algorithm a : kAll) {
    for (OpKind k : kKinds) {
      if (!implements(a, k)) continue;
      for (int n : {2, 5, 64}) {
        double prev = 0;
        for (size_t bytes = 8; bytes <= (size_t(1) << 30); bytes *= 4) {
          double us = predictUs(a, k, n, bytes, kShm);
          EXPECT_GT(us, prev) << algorithmName(a) << " " << opKindName(k) << " n=" << n << " bytes=" << bytes;
          prev = us;
        }
      }
    }
  }
}

TEST(Tuner, AForcedAlgorithmWinsWhereItApplies) {
  TunerSettings s = parseTunerSettings("tree", false);
  EXPECT_EQ(pick(OpKind::kAllReduce, 2, 1u << 28, kShm, s), Algorithm::kTree);
  EXPECT_EQ(pick(OpKind::kAllGather, 8, 8, kShm, s), Algorithm::kRing);  // not a tree collective
}

TEST(Tuner, DeterministicModeOnlyRunsRankOrderedReductions) {
  TunerSettings det;
  det.deterministic = true;
  for (int n : {2, 3, 8, 100}) {
    for (size_t bytes : {size_t(8), size_t(1) << 16, size_t(1) << 28}) {
      Algorithm ar = pick(OpKind::kAllReduce, n, bytes, kShm, det);
      EXPECT_TRUE(ar == Algorithm::kOrdered || ar == Algorithm::kDirect) << algorithmName(ar);
      EXPECT_EQ(pick(OpKind::kReduceScatter, n, bytes, kShm, det), Algorithm::kOrdered);
      EXPECT_EQ(pick(OpKind::kReduce, n, bytes, kShm, det), Algorithm::kOrdered);
    }
  }
  // A forced reduction maps to its rank-ordered counterpart; data movement stays as forced.
  for (Algorithm a : kAll) {
    TunerSettings s = parseTunerSettings(algorithmName(a), true);
    if (implements(a, OpKind::kAllReduce)) {
      Algorithm got = pick(OpKind::kAllReduce, 8, 1u << 20, kShm, s);
      EXPECT_TRUE(got == Algorithm::kOrdered || got == Algorithm::kDirect) << algorithmName(a);
    }
    if (implements(a, OpKind::kBroadcast)) EXPECT_EQ(pick(OpKind::kBroadcast, 8, 8, kShm, s), a);
  }
  // Forced recursive doubling is the one-shot only within the one-shot's rank limit.
  const TunerSettings rd = parseTunerSettings("recursive_doubling", true);
  EXPECT_EQ(pick(OpKind::kAllReduce, 64, 8, kShm, rd), Algorithm::kDirect);
  EXPECT_EQ(pick(OpKind::kAllReduce, 65, 8, kShm, rd), Algorithm::kOrdered);
  // Outside deterministic mode the ordered algorithm runs only when forced.
  for (int n : {2, 8}) {
    for (size_t bytes : {size_t(8), size_t(1) << 28})
      EXPECT_NE(pick(OpKind::kAllReduce, n, bytes), Algorithm::kOrdered);
  }
}

TEST(Tuner, IsAPureFunction) {
  for (int rep = 0; rep < 3; ++rep) {
    EXPECT_EQ(pick(OpKind::kAllReduce, 8, 12345), pick(OpKind::kAllReduce, 8, 12345));
  }
  EXPECT_EQ(pick(OpKind::kAllReduce, 1, 8), pick(OpKind::kAllReduce, 1, 1u << 30));
}

TEST(Tuner, BadAlgoFailsConfigValidation) {
  Config c;
  c.algo = "allreduce=butterfly";
  EXPECT_THROW(c.validate(), InvalidArgument);
  c.algo = "allreduce=ring,broadcast=tree";
  EXPECT_NO_THROW(c.validate());
}

}  // namespace
}  // namespace lockstep
