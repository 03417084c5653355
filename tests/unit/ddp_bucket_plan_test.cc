// Bucket planning and re-bucketing (include/lockstep/ddp/bucket_plan.h): pure functions, no communication.
#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "lockstep/ddp/bucket_plan.h"

namespace lockstep::ddp {
namespace {

std::vector<ParamShape> floats(std::initializer_list<size_t> counts) {
  std::vector<ParamShape> v;
  for (size_t c : counts) v.push_back({c, lockstepFloat32});
  return v;
}

// Every parameter sits in exactly one bucket, at the offset the plan says, back to back in fill
// order, with only its own dtype, and buckets respect the size cap unless they hold one parameter.
void expectConsistent(const BucketPlan& plan, const std::vector<ParamShape>& params, size_t bucketBytes,
                      size_t padMultiple) {
  std::vector<int> seen(params.size(), 0);
  for (size_t b = 0; b < plan.buckets.size(); ++b) {
    const Bucket& bucket = plan.buckets[b];
    ASSERT_EQ(bucket.params.size(), bucket.offsets.size());
    ASSERT_FALSE(bucket.params.empty());
    size_t offset = 0;
    for (size_t k = 0; k < bucket.params.size(); ++k) {
      const size_t p = bucket.params[k];
      ++seen[p];
      EXPECT_EQ(params[p].dtype, bucket.dtype);
      EXPECT_EQ(bucket.offsets[k], offset);
      EXPECT_EQ(plan.bucketOf[p], b);
      EXPECT_EQ(plan.offsetOf[p], offset);
      offset += params[p].count;
    }
    EXPECT_EQ(bucket.count, offset);
    EXPECT_EQ(bucket.paddedCount % padMultiple, 0u);
    EXPECT_GE(bucket.paddedCount, bucket.count);
    EXPECT_LT(bucket.paddedCount - bucket.count, padMultiple);
    if (bucket.params.size() > 1) EXPECT_LE(bucket.count * elementSize(bucket.dtype), bucketBytes);
  }
  for (size_t p = 0; p < params.size(); ++p) EXPECT_EQ(seen[p], 1) << "parameter " << p;
}

TEST(DdpBucketPlan, FillsInReverseRegistrationOrderUpToTheCap) {
  auto params = floats({100, 200, 300, 400});  // 400 .. 1600 bytes
  BucketPlan plan = planBuckets(params, reverseRegistrationOrder(4), 2000);
  // Walking 3, 2, 1, 0: 1600 bytes; +1200 would pass 2000, so 3 alone; then 2 + 1 (2000), then 0.
  ASSERT_EQ(plan.buckets.size(), 3u);
  EXPECT_EQ(plan.buckets[0].params, (std::vector<size_t>{3}));
  EXPECT_EQ(plan.buckets[1].params, (std::vector<size_t>{2, 1}));
  EXPECT_EQ(plan.buckets[2].params, (std::vector<size_t>{0}));
  EXPECT_EQ(plan.buckets[1].offsets, (std::vector<size_t>{0, 300}));
  expectConsistent(plan, params, 2000, 1);
}

TEST(DdpBucketPlan, DefaultCapPutsASmallModelInOneBucket) {
  auto params = floats({1000, 10, 1000, 10});
  BucketPlan plan = planBuckets(params, reverseRegistrationOrder(4), size_t{25} << 20);
  ASSERT_EQ(plan.buckets.size(), 1u);
  EXPECT_EQ(plan.buckets[0].params, (std::vector<size_t>{3, 2, 1, 0}));
  EXPECT_EQ(plan.buckets[0].count, 2020u);
}

TEST(DdpBucketPlan, ParameterLargerThanTheCapGetsItsOwnBucket) {
  auto params = floats({10, 5000, 10});
  BucketPlan plan = planBuckets(params, reverseRegistrationOrder(3), 1024);
  ASSERT_EQ(plan.buckets.size(), 3u);
  EXPECT_EQ(plan.buckets[1].params, (std::vector<size_t>{1}));
  EXPECT_EQ(plan.buckets[1].count, 5000u);
}

TEST(DdpBucketPlan, ZeroCapMeansOneParameterPerBucket) {
  auto params = floats({3, 1, 4, 1, 5});
  BucketPlan plan = planBuckets(params, reverseRegistrationOrder(5), 0);
  ASSERT_EQ(plan.buckets.size(), 5u);
  for (size_t b = 0; b < 5; ++b) EXPECT_EQ(plan.buckets[b].params, (std::vector<size_t>{4 - b}));
}

TEST(DdpBucketPlan, DtypesNeverShareABucketAndBucketsFollowTheirFirstParameter) {
  std::vector<ParamShape> params = {{10, lockstepFloat32},
                                    {10, lockstepFloat64},
                                    {10, lockstepFloat32},
                                    {10, lockstepFloat64},
                                    {10, lockstepBfloat16}};
  BucketPlan plan = planBuckets(params, reverseRegistrationOrder(5), 1 << 20);
  ASSERT_EQ(plan.buckets.size(), 3u);
  // Order walked: 4 (bf16), 3 (f64), 2 (f32), 1 (f64), 0 (f32): buckets by first appearance.
  EXPECT_EQ(plan.buckets[0].dtype, lockstepBfloat16);
  EXPECT_EQ(plan.buckets[1].dtype, lockstepFloat64);
  EXPECT_EQ(plan.buckets[1].params, (std::vector<size_t>{3, 1}));
  EXPECT_EQ(plan.buckets[2].dtype, lockstepFloat32);
  EXPECT_EQ(plan.buckets[2].params, (std::vector<size_t>{2, 0}));
  expectConsistent(plan, params, 1 << 20, 1);
}

TEST(DdpBucketPlan, CapCountsBytesNotElements) {
  std::vector<ParamShape> params = {
      {100, lockstepFloat64}, {100, lockstepFloat64}, {100, lockstepBfloat16}, {100, lockstepBfloat16}};
  BucketPlan plan = planBuckets(params, {0, 1, 2, 3}, 400);
  // Two float64 parameters are 1600 bytes: separate; two bf16 are 400 bytes: together.
  ASSERT_EQ(plan.buckets.size(), 3u);
  EXPECT_EQ(plan.buckets[2].params, (std::vector<size_t>{2, 3}));
}

TEST(DdpBucketPlan, PaddingMakesEveryBucketSplitIntoEqualBlocks) {
  auto params = floats({7, 5, 0, 11, 1});
  for (size_t pad : {1, 2, 3, 4, 7, 8}) {
    BucketPlan plan = planBuckets(params, reverseRegistrationOrder(5), 40, pad);
    expectConsistent(plan, params, 40, pad);
  }
}

TEST(DdpBucketPlan, RebucketingFollowsTheObservedOrder) {
  auto params = floats({100, 100, 100, 100, 100, 100});
  BucketPlan first = planBuckets(params, reverseRegistrationOrder(6), 800);
  EXPECT_EQ(first.buckets[0].params, (std::vector<size_t>{5, 4}));
  // Observed in backward: weight before bias, so 4 was ready before 5, and so on.
  std::vector<size_t> observed = {4, 5, 2, 3, 0, 1};
  BucketPlan second = planBuckets(params, completeOrder(observed, 6), 800);
  ASSERT_EQ(second.buckets.size(), 3u);
  EXPECT_EQ(second.buckets[0].params, (std::vector<size_t>{4, 5}));
  EXPECT_EQ(second.buckets[1].params, (std::vector<size_t>{2, 3}));
  EXPECT_EQ(second.buckets[2].params, (std::vector<size_t>{0, 1}));
  EXPECT_FALSE(samePlan(first, second));
  EXPECT_TRUE(samePlan(second, planBuckets(params, observed, 800)));
  expectConsistent(second, params, 800, 1);
}

TEST(DdpBucketPlan, UnobservedParametersGoLastInReverseRegistrationOrder) {
  EXPECT_EQ(completeOrder({2, 4}, 6), (std::vector<size_t>{2, 4, 5, 3, 1, 0}));
  EXPECT_EQ(completeOrder({}, 3), (std::vector<size_t>{2, 1, 0}));
}

TEST(DdpBucketPlan, BadOrdersAreRejected) {
  auto params = floats({1, 2, 3});
  EXPECT_THROW(completeOrder({1, 1}, 3), Exception);
  EXPECT_THROW(completeOrder({3}, 3), Exception);
  EXPECT_THROW(planBuckets(params, {0, 1}, 100), Exception);
  EXPECT_THROW(planBuckets(params, {0, 1, 1}, 100), Exception);
  EXPECT_THROW(planBuckets(params, {0, 1, 2}, 100, 0), Exception);
  try {
    completeOrder({0, 0}, 3);
  } catch (const Exception& e) {
    EXPECT_EQ(e.code(), lockstepInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("twice"), std::string::npos) << e.what();
  }
}

TEST(DdpBucketPlan, RandomModelsAreAlwaysConsistent) {
  std::mt19937_64 gen(7);
  const lockstepDataType_t types[] = {lockstepFloat32, lockstepFloat64, lockstepBfloat16, lockstepFloat16};
  for (int trial = 0; trial < 300; ++trial) {
    const size_t n = 1 + gen() % 40;
    std::vector<ParamShape> params(n);
    for (auto& p : params) p = {gen() % 3000, types[gen() % 4]};
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    std::shuffle(order.begin(), order.end(), gen);
    const size_t cap = gen() % 20000, pad = 1 + gen() % 9;
    BucketPlan plan = planBuckets(params, order, cap, pad);
    expectConsistent(plan, params, cap, pad);
    // Buckets start in order: each bucket's first parameter comes later in `order` than the
    // previous bucket's first.
    std::vector<size_t> position(n);
    for (size_t i = 0; i < n; ++i) position[order[i]] = i;
    for (size_t b = 1; b < plan.buckets.size(); ++b) {
      EXPECT_LT(position[plan.buckets[b - 1].params[0]], position[plan.buckets[b].params[0]]);
    }
  }
}

}  // namespace
}  // namespace lockstep::ddp
