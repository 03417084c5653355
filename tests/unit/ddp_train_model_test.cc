// ddp_train's pure parts: the hand-written backward pass against finite differences, gradient
// accumulation, and the DistributedSampler-style sharding the equivalence claim rests on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <ostream>
#include <set>
#include <string>

#include "dataset.h"
#include "mlp.h"
#include "optimizer.h"

namespace ddp_train {

// gtest finds it by ADL: it must be in the enum's own namespace.
void PrintTo(Activation a, std::ostream* os) { *os << (a == Activation::kTanh ? "tanh" : "relu"); }

namespace {

double lossOf(Mlp& m, const std::vector<float>& x, const std::vector<int32_t>& y) {
  m.forward(x.data(), y.size());
  return m.lossAndGradient(y.data(), 0.0f).lossSum;
}

class MlpGradient : public ::testing::TestWithParam<Activation> {};

TEST_P(MlpGradient, BackwardMatchesFiniteDifferences) {
  Mlp m({3, 5, 4, 3}, GetParam());
  m.initialize(3);
  Rng rng(5);
  for (Linear& l : m.layers()) {
    for (float& b : l.b) b = static_cast<float>(0.1 * rng.normal());  // so biases matter too
  }
  std::vector<float> x(4 * 3);
  for (float& v : x) v = static_cast<float>(rng.normal());
  const std::vector<int32_t> y = {0, 2, 1, 2};
  m.forward(x.data(), y.size());
  m.lossAndGradient(y.data(), 1.0f);
  std::vector<size_t> readyOrder;
  m.backward([&](size_t l) { readyOrder.push_back(l); });
  EXPECT_EQ(readyOrder, (std::vector<size_t>{2, 1, 0}));  // last layer first, each once

  double worst = 0;
  for (Linear& l : m.layers()) {
    for (int which = 0; which < 2; ++which) {
      std::vector<float>& p = which ? l.b : l.w;
      const std::vector<float>& g = which ? l.db : l.dw;
      for (size_t i = 0; i < p.size(); ++i) {
        const float keep = p[i], h = 1e-3f;
        p[i] = keep + h;
        const double up = lossOf(m, x, y);
        p[i] = keep - h;
        const double down = lossOf(m, x, y);
        p[i] = keep;
        const double numeric = (up - down) / (2.0 * h);
        worst = std::max(worst, std::fabs(numeric - g[i]) / std::max(1.0, std::fabs(numeric)));
      }
    }
  }
  EXPECT_LT(worst, 2e-3);  // float rounding of the loss over 2h; a broken term is off by O(1)
}

INSTANTIATE_TEST_SUITE_P(Activations, MlpGradient, ::testing::Values(Activation::kTanh, Activation::kRelu),
                         [](const auto& info) {
                           return std::string(info.param == Activation::kTanh ? "tanh" : "relu");
                         });

TEST(MlpGradient, MicroBatchesAccumulateToTheFullBatch) {
  Mlp whole({4, 6, 3}), parts({4, 6, 3});
  whole.initialize(9);
  parts.initialize(9);
  Rng rng(1);
  std::vector<float> x(8 * 4);
  for (float& v : x) v = static_cast<float>(rng.normal());
  const std::vector<int32_t> y = {0, 1, 2, 0, 1, 2, 2, 1};
  whole.forward(x.data(), 8);
  whole.lossAndGradient(y.data(), 1.0f / 8);
  whole.backward([](size_t) {});
  for (size_t half = 0; half < 2; ++half) {
    parts.forward(x.data() + half * 16, 4);
    parts.lossAndGradient(y.data() + half * 4, 1.0f / 8);
    parts.backward([](size_t) {});
  }
  for (size_t l = 0; l < 2; ++l) {
    for (size_t i = 0; i < whole.layers()[l].dw.size(); ++i) {
      EXPECT_NEAR(parts.layers()[l].dw[i], whole.layers()[l].dw[i], 1e-6f);
    }
  }
  parts.zeroGradients();
  EXPECT_EQ(*std::max_element(parts.layers()[0].dw.begin(), parts.layers()[0].dw.end()), 0.0f);
}

TEST(ShardedSampler, ShardsAreDisjointAndInterleaveOneGlobalPermutation) {
  const size_t n = 1000;
  for (int nranks : {1, 2, 3, 4, 7, 8}) {
    for (uint64_t epoch : {0, 1, 5}) {
      ShardedSampler all(n, 0, 1, 42);
      all.setEpoch(epoch);
      std::multiset<size_t> seen;
      for (int r = 0; r < nranks; ++r) {
        ShardedSampler s(n, r, nranks, 42);
        s.setEpoch(epoch);
        const size_t per = (n + static_cast<size_t>(nranks) - 1) / static_cast<size_t>(nranks);
        ASSERT_EQ(s.indices().size(), per);
        for (size_t k = 0; k < per; ++k) {
          const size_t global = k * static_cast<size_t>(nranks) + static_cast<size_t>(r);
          // Rank r's k-th sample is position k x nranks + r of the one permutation (padded by
          // wrapping around), so a global batch is the same samples whatever nranks is.
          EXPECT_EQ(s.indices()[k], all.indices()[global % n]);
          seen.insert(s.indices()[k]);
        }
      }
      std::set<size_t> distinct(seen.begin(), seen.end());
      EXPECT_EQ(distinct.size(), n);                               // every sample is used
      EXPECT_EQ(seen.size() - n, (nranks - n % nranks) % nranks);  // only the padding repeats
    }
  }
}

TEST(ShardedSampler, EpochsReshuffleFromTheSharedSeed) {
  ShardedSampler a(500, 1, 4, 7), b(500, 1, 4, 7), c(500, 1, 4, 8);
  EXPECT_EQ(a.indices(), b.indices());
  EXPECT_NE(a.indices(), c.indices());
  const std::vector<size_t> first = a.indices();
  a.setEpoch(1);
  EXPECT_NE(a.indices(), first);
  a.setEpoch(0);
  EXPECT_EQ(a.indices(), first);
}

TEST(Dataset, GenerationIsDeterministicAndBalanced) {
  Dataset a = makeGaussianMixture(1000, 8, 16, 1.0, 3, 4), b = makeGaussianMixture(1000, 8, 16, 1.0, 3, 4);
  EXPECT_EQ(a.x, b.x);
  EXPECT_EQ(a.y, b.y);
  EXPECT_EQ(std::count(a.y.begin(), a.y.end(), 5), 125);
  Dataset held = makeGaussianMixture(1000, 8, 16, 1.0, 3, 99);  // same centres, other samples
  EXPECT_NE(held.x, a.x);
  Dataset s = makeSpirals(400, 4, 0.04, 1);
  EXPECT_EQ(s.dim, 2u);
  EXPECT_EQ(s.x, makeSpirals(400, 4, 0.04, 1).x);
}

TEST(Optimizer, ShardedSpansGiveTheSameUpdateAsWholeParameters) {
  for (const char* name : {"sgd", "adam"}) {
    std::vector<float> whole(10, 1.0f), sharded(10, 1.0f), grad(10);
    for (size_t i = 0; i < 10; ++i) grad[i] = 0.1f * static_cast<float>(i) - 0.3f;
    auto a = makeOptimizer(name, 0.9f);
    std::vector<std::unique_ptr<Optimizer>> shards;
    for (int r = 0; r < 3; ++r) shards.push_back(makeOptimizer(name, 0.9f));
    for (int step = 0; step < 5; ++step) {
      a->step({{whole.data(), grad.data(), 10, 0}}, 0.01f);
      // Three "ranks" own [0, 4), [4, 7) and [7, 10), each with its own compact state.
      shards[0]->step({{sharded.data(), grad.data(), 4, 0}}, 0.01f);
      shards[1]->step({{sharded.data() + 4, grad.data() + 4, 1, 0}, {sharded.data() + 5, grad.data() + 5, 2, 1}},
                      0.01f);
      shards[2]->step({{sharded.data() + 7, grad.data() + 7, 3, 0}}, 0.01f);
    }
    EXPECT_EQ(whole, sharded) << name;
    EXPECT_EQ(shards[1]->stateElements(), std::string(name) == "adam" ? 6u : 3u);
  }
  EXPECT_THROW(makeOptimizer("lamb", 0.9f), std::invalid_argument);
}

}  // namespace
}  // namespace ddp_train
