// The DDP layer's central claims, on ddp_train in real processes under lockstep-run: averaging the
// ranks' gradients equals the full-batch gradient (N = 1, 2, 4 train the same model), deterministic
// mode gives the same bits whatever the algorithm and bucket size, accumulation equals a larger
// batch, ZeRO-1 equals plain DDP, and bf16 compression costs under 1% of the final loss. Plus
// GradientSync's own semantics (ddp_check) on 1, 3 and 4 ranks. Every run has a time bound.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "tests/common/subprocess.h"

namespace lockstep {
namespace {

using testing::ProcResult;
using testing::run;

const std::string kRun = LOCKSTEP_RUN_PATH;
const std::string kTrain = DDP_TRAIN_PATH;
const std::string kCheck = DDP_CHECK_PATH;

// The bound of the equivalence claim: max |a - b| <= 1e-5 x max |b| over all parameters.
constexpr double kBound = 1e-5;

// 20 steps of the default model with buckets of 10 KiB, so the 9928 parameters travel in several
// buckets and re-bucketing has something to reorder.
const std::vector<std::string> kShort = {"--steps", "20", "--global-batch", "256", "--bucket-mb", "0.01"};

struct Trained {
  std::vector<float> params;
  double evalLoss = NAN;
  std::string output;
};

class ScratchDir {
 public:
  ScratchDir() {
    char tmpl[] = "/tmp/lockstep-ddp-XXXXXX";
    path_ = mkdtemp(tmpl) ? tmpl : "/tmp";
  }
  ~ScratchDir() {
    for (const std::string& f : files_) unlink(f.c_str());
    rmdir(path_.c_str());
  }
  std::string file() {
    files_.push_back(path_ + "/params" + std::to_string(files_.size()));
    return files_.back();
  }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Runs ddp_train on n ranks; it must succeed and report identical replicas.
Trained train(ScratchDir& dir, int n, const std::vector<std::string>& flags, std::vector<std::string> env = {}) {
  const std::string dump = dir.file();
  std::vector<std::string> argv = {kRun, "-n", std::to_string(n), kTrain, "--dump-params", dump, "--log-every", "0"};
  env.push_back("LOCKSTEP_TIMEOUT=60");
  ProcResult r = run(concat(argv, flags), env, 100);
  Trained t;
  t.output = r.output;
  EXPECT_FALSE(r.timedOut) << r.output;
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("identical on every rank"), std::string::npos) << r.output;
  std::ifstream in(dump, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes.size() % sizeof(float), 0u);
  t.params.resize(bytes.size() / sizeof(float));
  if (!bytes.empty()) std::memcpy(t.params.data(), bytes.data(), t.params.size() * sizeof(float));
  EXPECT_FALSE(t.params.empty()) << "no parameters dumped: " << r.output;
  const size_t at = r.output.find("eval: loss ");
  if (at != std::string::npos) t.evalLoss = std::strtod(r.output.c_str() + at + 11, nullptr);
  return t;
}

// max |a - b| / max |b|.
double relativeDifference(const Trained& a, const Trained& b) {
  EXPECT_EQ(a.params.size(), b.params.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < std::min(a.params.size(), b.params.size()); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a.params[i]) - b.params[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b.params[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

void report(const std::string& what, double figure) {
  std::printf("[ddp] %s: %.3g\n", what.c_str(), figure);
  ::testing::Test::RecordProperty(what, std::to_string(figure));
}

struct EquivalenceCase {
  const char* name;
  std::vector<std::string> flags;
};

void PrintTo(const EquivalenceCase& c, std::ostream* os) { *os << c.name; }

class DdpEquivalence : public ::testing::TestWithParam<EquivalenceCase> {};

TEST_P(DdpEquivalence, SameGlobalBatchGivesTheSameParametersOnOneTwoAndFourRanks) {
  ScratchDir dir;
  const auto flags = concat(kShort, GetParam().flags);
  Trained one = train(dir, 1, flags), two = train(dir, 2, flags), four = train(dir, 4, flags);
  const double d2 = relativeDifference(two, one), d4 = relativeDifference(four, one);
  report(std::string(GetParam().name) + " N=2 vs N=1 max|a-b|/max|b|", d2);
  report(std::string(GetParam().name) + " N=4 vs N=1 max|a-b|/max|b|", d4);
  EXPECT_LE(d2, kBound);
  EXPECT_LE(d4, kBound);
  // Different rank counts sum the batch in a different association, so the bits do differ: the
  // test compares real float results, not copies.
  EXPECT_NE(four.params, one.params);
}

INSTANTIATE_TEST_SUITE_P(
    Ddp, DdpEquivalence,
    ::testing::Values(EquivalenceCase{"sgd", {"--optimizer", "sgd"}}, EquivalenceCase{"adam", {"--optimizer", "adam"}},
                      EquivalenceCase{"sgd_relu", {"--optimizer", "sgd", "--activation", "relu"}},
                      EquivalenceCase{"adam_warmup_scaled", {"--optimizer", "adam", "--warmup", "5", "--scale-lr"}}),
    [](const auto& info) { return std::string(info.param.name); });

// The whole default run (500 steps, 25 MiB buckets), as a user types it; under the sanitizers
// (LOCKSTEP_TEST_QUICK: 10-50x slower, past the time bound) its first 100 steps.
TEST(DdpEquivalenceDefault, FourRanksMatchOneRankOverTheDefaultRun) {
  ScratchDir dir;
  const std::vector<std::string> flags =
      getenv("LOCKSTEP_TEST_QUICK") ? std::vector<std::string>{"--steps", "100"} : std::vector<std::string>{};
  Trained one = train(dir, 1, flags), four = train(dir, 4, flags);
  const double d = relativeDifference(four, one);
  report("default run N=4 vs N=1 max|a-b|/max|b|", d);
  EXPECT_LE(d, kBound);
}

TEST(DdpDeterminism, SameBitsWhateverTheAlgorithmAndBucketSize) {
  ScratchDir dir;
  struct Config {
    const char* algo;
    const char* bucketMb;
  };
  const Config configs[] = {
      {"", "25"},     {"ring", "0.01"}, {"tree", "0.004"}, {"rabenseifner", "0.02"}, {"recursive_doubling", "0.1"},
      {"direct", "1"}};
  std::vector<Trained> runs;
  for (const Config& c : configs) {
    std::vector<std::string> env = {"LOCKSTEP_DETERMINISTIC=1"};
    if (*c.algo) env.push_back(std::string("LOCKSTEP_ALGO=") + c.algo);
    runs.push_back(train(dir, 4, {"--steps", "20", "--optimizer", "adam", "--bucket-mb", c.bucketMb}, env));
  }
  for (size_t i = 1; i < runs.size(); ++i) {
    EXPECT_EQ(runs[i].params, runs[0].params)
        << "LOCKSTEP_ALGO=" << configs[i].algo << " --bucket-mb " << configs[i].bucketMb << " differs from the default";
  }
  report("deterministic runs bitwise equal (of 6)",
         static_cast<double>(
             std::count_if(runs.begin(), runs.end(), [&](const Trained& t) { return t.params == runs[0].params; })));
}

TEST(DdpAccumulation, KMicroBatchesEqualOneStepWithAKTimesLargerBatch) {
  ScratchDir dir;
  Trained single = train(dir, 2, concat(kShort, {"--accumulate", "1"}));
  Trained four = train(dir, 2, concat(kShort, {"--accumulate", "4"}));
  const double d = relativeDifference(four, single);
  report("N=2: 4 micro-batches of 32 vs one batch of 128 per rank, max|a-b|/max|b|", d);
  EXPECT_LE(d, kBound);
  Trained oneRank = train(dir, 1, kShort);
  Trained fourRanks = train(dir, 4, concat(kShort, {"--accumulate", "2"}));
  const double d4 = relativeDifference(fourRanks, oneRank);
  report("N=4 x 2 micro-batches vs N=1 x 1, max|a-b|/max|b|", d4);
  EXPECT_LE(d4, kBound);
}

TEST(DdpZero1, EqualsPlainDdp) {
  ScratchDir dir;
  // Deterministic mode: reduce-scatter and all-reduce produce the same bits, and the optimizer
  // does the same arithmetic per element, so ZeRO-1 must reproduce plain DDP exactly.
  const std::vector<std::string> det = {"LOCKSTEP_DETERMINISTIC=1"};
  const auto adam = concat(kShort, {"--optimizer", "adam"});
  Trained plain = train(dir, 4, adam, det), zero1 = train(dir, 4, concat(adam, {"--zero1"}), det);
  EXPECT_EQ(zero1.params, plain.params);
  report("ZeRO-1 vs plain, N=4 deterministic, max|a-b|/max|b|", relativeDifference(zero1, plain));
  // Without re-bucketing ZeRO-1 reduce-scatters from the first iteration on.
  Trained fixedPlan = train(dir, 4, concat(adam, {"--zero1", "--no-rebucket"}), det);
  EXPECT_EQ(fixedPlan.params, plain.params);
  const auto bf16 = concat(kShort, {"--compress", "bf16"});
  Trained plainBf16 = train(dir, 4, bf16, det), zero1Bf16 = train(dir, 4, concat(bf16, {"--zero1"}), det);
  EXPECT_EQ(zero1Bf16.params, plainBf16.params);
  // Three ranks (blocks that split parameters, padding), default algorithms.
  const std::vector<std::string> three = {"--steps",     "20",   "--global-batch", "384",
                                          "--bucket-mb", "0.01", "--optimizer",    "adam"};
  Trained plain3 = train(dir, 3, three), zero13 = train(dir, 3, concat(three, {"--zero1"}));
  const double d = relativeDifference(zero13, plain3);
  report("ZeRO-1 vs plain, N=3 default algorithms, max|a-b|/max|b|", d);
  EXPECT_LE(d, kBound);
}

TEST(DdpCompression, Bf16AndFp16ReachWithinOnePercentOfTheFp32Loss) {
  ScratchDir dir;
  const std::vector<std::string> flags = {"--steps", "300", "--optimizer", "adam", "--bucket-mb", "0.01"};
  Trained fp32 = train(dir, 2, flags);
  for (const char* c : {"bf16", "fp16"}) {
    Trained narrow = train(dir, 2, concat(flags, {"--compress", c}));
    ASSERT_TRUE(std::isfinite(fp32.evalLoss) && std::isfinite(narrow.evalLoss)) << narrow.output;
    const double rel = std::fabs(narrow.evalLoss - fp32.evalLoss) / fp32.evalLoss;
    report(std::string(c) + " vs fp32 final eval loss, relative difference", rel);
    EXPECT_LE(rel, 0.01) << c << " " << narrow.evalLoss << " vs fp32 " << fp32.evalLoss;
    EXPECT_NE(narrow.params, fp32.params);  // compression really changed the gradients
  }
}

class DdpSemantics : public ::testing::TestWithParam<int> {};

TEST_P(DdpSemantics, GradientSyncChecksPass) {
  const int n = GetParam();
  ProcResult r = run({kRun, "-n", std::to_string(n), kCheck}, {"LOCKSTEP_TIMEOUT=60"}, 100);
  ASSERT_FALSE(r.timedOut) << r.output;
  EXPECT_EQ(r.code, 0) << r.output;
  for (int rank = 0; rank < n; ++rank) {
    EXPECT_NE(r.output.find("passed on rank " + std::to_string(rank) + " of"), std::string::npos) << r.output;
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, DdpSemantics, ::testing::Values(1, 2, 3, 4));

TEST(DdpTrain, BadFlagsFailWithAClearMessage) {
  ProcResult r = run({kRun, "-n", "4", kTrain, "--global-batch", "250"}, {"LOCKSTEP_TIMEOUT=30"}, 60);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("--global-batch 250 is not a multiple of 4 ranks"), std::string::npos) << r.output;
  r = run({kRun, "-n", "1", kTrain, "--compress", "int4"}, {}, 60);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("unknown compression 'int4'"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lockstep
