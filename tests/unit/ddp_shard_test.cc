// ZeRO-1 shard layout (include/lockstep/ddp/zero1_shard.h): the ranks' pieces tile every parameter exactly
// once, match what an in-place reduce-scatter leaves on each rank, and pack into a compact state.
#include <gtest/gtest.h>

#include <random>

#include "lockstep/ddp/zero1_shard.h"

namespace lockstep::ddp {
namespace {

TEST(DdpShard, BlocksSplitParametersAtBucketBlockBoundaries) {
  std::vector<ParamShape> params = {{5, lockstepFloat32}, {3, lockstepFloat32}};
  // One bucket, order 1 then 0: [p1: 0..3) [p0: 3..8), padded to 8 for 4 ranks: blocks of 2.
  BucketPlan plan = planBuckets(params, {1, 0}, 1 << 20, 4);
  ASSERT_EQ(plan.buckets.size(), 1u);
  ASSERT_EQ(plan.buckets[0].paddedCount, 8u);
  auto r1 = shardPieces(plan, params, 1, 4);  // elements 2..4: p1[2], p0[0]
  ASSERT_EQ(r1.size(), 2u);
  EXPECT_EQ(r1[0].param, 1u);
  EXPECT_EQ(r1[0].paramOffset, 2u);
  EXPECT_EQ(r1[0].count, 1u);
  EXPECT_EQ(r1[1].param, 0u);
  EXPECT_EQ(r1[1].paramOffset, 0u);
  EXPECT_EQ(r1[1].stateOffset, 1u);
  EXPECT_EQ(shardCount(r1), 2u);
}

TEST(DdpShard, PaddingIsOwnedByNobody) {
  std::vector<ParamShape> params = {{5, lockstepFloat32}};
  BucketPlan plan = planBuckets(params, {0}, 1 << 20, 4);  // padded to 8: blocks 0..2, 2..4, 4..6, 6..8
  EXPECT_EQ(shardCount(shardPieces(plan, params, 2, 4)), 1u);
  EXPECT_TRUE(shardPieces(plan, params, 3, 4).empty());
}

TEST(DdpShard, RanksTileEveryParameterExactlyOnce) {
  std::mt19937_64 gen(11);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t n = 1 + gen() % 12;
    const int nranks = 1 + static_cast<int>(gen() % 9);
    std::vector<ParamShape> params(n);
    for (auto& p : params) p = {gen() % 500, gen() % 2 ? lockstepFloat32 : lockstepFloat64};
    BucketPlan plan = planBuckets(params, reverseRegistrationOrder(n), gen() % 4000, static_cast<size_t>(nranks));
    std::vector<std::vector<int>> owner(n);
    for (size_t p = 0; p < n; ++p) owner[p].assign(params[p].count, -1);
    size_t total = 0;
    for (int r = 0; r < nranks; ++r) {
      auto pieces = shardPieces(plan, params, r, nranks);
      size_t state = 0;
      for (const ShardPiece& s : pieces) {
        EXPECT_EQ(s.stateOffset, state);  // compact, in order
        state += s.count;
        EXPECT_EQ(plan.bucketOf[s.param], s.bucket);
        // The piece lies inside block r of its bucket.
        const size_t block = plan.buckets[s.bucket].paddedCount / static_cast<size_t>(nranks);
        const size_t at = plan.offsetOf[s.param] + s.paramOffset;
        EXPECT_GE(at, block * static_cast<size_t>(r));
        EXPECT_LE(at + s.count, block * static_cast<size_t>(r + 1));
        for (size_t i = 0; i < s.count; ++i) {
          EXPECT_EQ(owner[s.param][s.paramOffset + i], -1);
          owner[s.param][s.paramOffset + i] = r;
        }
      }
      EXPECT_EQ(shardCount(pieces), state);
      total += state;
    }
    size_t elements = 0;
    for (size_t p = 0; p < n; ++p) {
      elements += params[p].count;
      for (int o : owner[p]) EXPECT_GE(o, 0);
    }
    EXPECT_EQ(total, elements);
  }
}

TEST(DdpShard, BadRankOrUnpaddedPlanIsRejected) {
  std::vector<ParamShape> params = {{5, lockstepFloat32}};
  BucketPlan unpadded = planBuckets(params, {0}, 1 << 20, 1);
  EXPECT_THROW(shardPieces(unpadded, params, 0, 2), Exception);
  BucketPlan plan = planBuckets(params, {0}, 1 << 20, 2);
  EXPECT_THROW(shardPieces(plan, params, 2, 2), Exception);
  EXPECT_THROW(shardPieces(plan, params, -1, 2), Exception);
}

}  // namespace
}  // namespace lockstep::ddp
