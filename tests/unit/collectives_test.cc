// Every collective through the public API, with ranks as threads: every dtype (and op where it
// applies), counts 0, 1, N-1 and odd, roots, in place and out, with 4 KiB slices and 2 credits so
// that even small counts cut into many pipelined slices. Exact results, checked bit for bit.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cfenv>
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "perf/collectives.h"
#include "perf/pattern.h"
#include "src/core/logging.h"
#include "tests/common/thread_comms.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace lockstep {
namespace {

using perf::Coll;
using testing::onThreads;

class Collectives : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    setenv("LOCKSTEP_SLOT_BYTES", "4096", 1);
    setenv("LOCKSTEP_SLOTS", "2", 1);
    setenv("LOCKSTEP_TIMEOUT", "20", 1);  // a bug shows up as a quick failure, not a long hang
    comms_ = testing::initThreadComms(GetParam());
  }
  void TearDown() override {
    testing::destroyAll(comms_);
    unsetenv("LOCKSTEP_SLOT_BYTES");
    unsetenv("LOCKSTEP_SLOTS");
    unsetenv("LOCKSTEP_TIMEOUT");
  }
  std::vector<lockstepComm_t> comms_;
};

// The checks are only as good as the expected results: max and min ones that were almost all 0
// at 16-64 ranks (min of unsigned and fp8 types) passed a call that wrote zeros. Each element's
// result must come from the data, vary along the buffer, and be held by different ranks.
// A pattern whose expected result is all zeros checks nothing: the perf drivers say so (fp8 avg
// on 9 ranks, where no input scales exactly). Every dtype x op the unit tests use (up to 8 ranks)
// has one that is not.
TEST(CheckPatterns, AnAllZeroExpectationIsKnownAndNoTestedOneIsAllZero) {
  EXPECT_FALSE(Pattern(lockstepFloat8e5m2, lockstepAvg, 9).informative());
  EXPECT_FALSE(Pattern(lockstepFloat8e4m3, lockstepAvg, 17).informative());
  for (int n = 1; n <= 8; ++n) {
    for (int t = 0; t < lockstepNumTypes; ++t) {
      for (int o = 0; o < lockstepNumOps; ++o) {
        const auto type = static_cast<lockstepDataType_t>(t);
        const auto op = static_cast<lockstepRedOp_t>(o);
        EXPECT_TRUE(Pattern(type, op, n).informative()) << dataTypeName(type) << " " << redOpName(op) << " " << n;
      }
    }
  }
}

TEST(CheckPatterns, MaxAndMinResultsVaryAlongTheBufferAndComeFromEveryRank) {
  const size_t n = Pattern::kPeriod;
  for (int t = 0; t < lockstepNumTypes; ++t) {
    const auto type = static_cast<lockstepDataType_t>(t);
    const size_t elem = dataTypeSize(type);
    for (lockstepRedOp_t op : {lockstepMax, lockstepMin}) {
      for (int ranks : {2, 16, 64}) {
        Pattern pat(type, op, ranks);
        std::vector<char> want(n * elem), zeros(n * elem, 0);
        pat.fillExpected(want.data(), n);
        EXPECT_GT(pat.countWrong(zeros.data(), n), n / 2) << dataTypeName(type) << " " << ranks << " ranks";
        std::set<std::string> distinct;
        for (size_t i = 0; i < n; ++i) distinct.insert(std::string(want.data() + i * elem, elem));
        EXPECT_GE(distinct.size(), 8u) << dataTypeName(type) << " " << ranks << " ranks";
        // Each rank's data alone is wrong at most elements: the result is not one rank's copy.
        for (int r = 0; r < ranks; ++r) {
          std::vector<char> mine(n * elem);
          pat.fill(mine.data(), n, r);
          EXPECT_GT(pat.countWrong(mine.data(), n), n / 4) << dataTypeName(type) << " rank " << r;
        }
      }
    }
  }
}

// A block misplaced by a whole number of the pattern's periods must read wrong: the buffer was
// periodic, so with a per-rank count of 1021 (or 80659 = 79 x 1021: 13 ranks, 4 MiB of float32) a
// reduce-scatter or all-to-all that sent every rank another rank's block passed its check.
TEST(CheckPatterns, BlocksAWholeNumberOfPeriodsApartDiffer) {
  Pattern pat(lockstepFloat32, lockstepSum, 3);
  for (size_t count : {Pattern::kPeriod, 79 * Pattern::kPeriod, 175 * Pattern::kPeriod}) {
    std::vector<float> block(count);
    for (size_t b = 1; b < 12; ++b) {
      pat.fillExpected(block.data(), count, b * count);  // block b
      for (size_t other = 0; other < 12; ++other) {
        if (other == b) continue;
        EXPECT_GT(pat.countWrong(block.data(), count, other * count), count / 2)
            << count << " elements: block " << b << " read as block " << other;
      }
      EXPECT_EQ(pat.countWrong(block.data(), count, b * count), 0u);
      pat.fill(block.data(), count, 1, b * count);
      EXPECT_GT(pat.countWrongFrom(block.data(), count, 1, (b + 1) * count), count / 2);
      EXPECT_EQ(pat.countWrongFrom(block.data(), count, 1, b * count), 0u);
    }
  }
}

TEST_P(Collectives, EveryCollectiveTypeOpCountRootInPlaceAndOut) {
  const int n = GetParam();
  const std::vector<size_t> counts = {0, 1, size_t(n - 1), 1031};
  std::vector<int> roots = {0};
  if (n > 1) roots.push_back(n - 1);
  if (n > 2) roots.push_back(n / 2);
  std::vector<std::string> failures(n);
  onThreads(n, [&](int r) {
    std::vector<char> a, b;
    for (Coll c : perf::kAllColls) {
      for (int t = 0; t < lockstepNumTypes; ++t) {
        auto type = static_cast<lockstepDataType_t>(t);
        const size_t elem = dataTypeSize(type);
        for (int o = 0; o < (perf::collReduces(c) ? int(lockstepNumOps) : 1); ++o) {
          auto op = static_cast<lockstepRedOp_t>(o);
          Pattern pat(type, op, n);
          for (int root : perf::collRooted(c) ? roots : std::vector<int>{-1}) {
            for (size_t count : counts) {
              for (bool inPlace : {false, true}) {
                if (inPlace && !perf::collHasInPlace(c)) continue;
                size_t bytes = std::max(perf::sendElems(c, count, n), perf::recvElems(c, count, n)) * elem;
                a.assign(bytes + 8, 0);
                b.assign(bytes + 8, 0);
                auto bufs = perf::collBuffers(c, a.data(), b.data(), count, r, n, elem, inPlace);
                perf::fillInput(c, pat, bufs.send, count, r, n, root);
                lockstepResult_t rc = perf::runColl(c, bufs.send, bufs.recv, count, type, op, root, comms_[r], nullptr);
                size_t wrong = rc == lockstepSuccess ? perf::countWrong(c, pat, bufs.recv, count, r, n, root) : 0;
                if ((rc != lockstepSuccess || wrong) && failures[r].empty()) {
                  failures[r] = std::string(perf::collName(c)) + " " + dataTypeName(type) + " " + redOpName(op) +
                                " root " + std::to_string(root) + " count " + std::to_string(count) +
                                (inPlace ? " in place" : " out of place") + ": " +
                                (rc != lockstepSuccess ? lockstepGetLastError(nullptr)
                                                       : std::to_string(wrong) + " wrong elements");
                }
              }
            }
          }
        }
      }
    }
  });
  for (int r = 0; r < n; ++r) EXPECT_EQ(failures[r], "") << "rank " << r;
}

INSTANTIATE_TEST_SUITE_P(Ranks, Collectives, ::testing::Values(1, 2, 3, 4, 5, 8));

// Reductions run in one floating-point environment (round to nearest, denormals kept) whatever
// the calling thread set: here rank 0's thread flushes denormals and rounds up. With algorithms
// where every rank computes the whole result, the ranks once held different bits (and which
// thread ran a blocking call, the caller's or the progress thread, decided which). The thread's
// own settings are back when the call returns.
TEST(FloatEnvironment, ARanksFlushToZeroOrRoundingModeChangesNoBits) {
#if defined(__x86_64__) || defined(__i386__)
  constexpr unsigned kFtzDazRoundUp = 0x8040 | (2u << 13);
  const size_t n = 64;
  std::vector<float> in[2] = {std::vector<float>(n), std::vector<float>(n)}, want(n);
  for (size_t i = 0; i < n; ++i) {
    // Denormals (flushed under FTZ/DAZ) and sums that are not representable (rounded up).
    in[0][i] = i % 2 ? std::ldexp(float(i + 1), -140) : 0.1f * float(i + 1);
    in[1][i] = i % 2 ? std::ldexp(float(3 * i + 1), -141) : 0.3f * float(i + 7);
    want[i] = in[0][i] + in[1][i];  // this thread's environment is the default one
  }
  for (const char* algorithm : {"recursive_doubling", "direct", "ring", "ordered"}) {
    SCOPED_TRACE(algorithm);
    setenv("LOCKSTEP_ALGO", algorithm, 1);
    auto comms = testing::initThreadComms(2);
    unsetenv("LOCKSTEP_ALGO");
    std::vector<float> out[2] = {std::vector<float>(n), std::vector<float>(n)};
    unsigned after = 0;
    onThreads(2, [&](int r) {
      const unsigned before = _mm_getcsr();
      if (r == 0) _mm_setcsr(before | kFtzDazRoundUp);
      EXPECT_EQ(lockstepAllReduce(in[r].data(), out[r].data(), n, lockstepFloat32, lockstepSum, comms[r], nullptr),
                lockstepSuccess);
      if (r == 0) after = _mm_getcsr();
      _mm_setcsr(before);
    });
    EXPECT_EQ(std::memcmp(out[0].data(), out[1].data(), n * sizeof(float)), 0) << "the ranks' bits differ";
    EXPECT_EQ(std::memcmp(out[0].data(), want.data(), n * sizeof(float)), 0) << "not the default environment's sum";
    EXPECT_EQ(after & kFtzDazRoundUp, kFtzDazRoundUp) << "rank 0's thread lost its own settings";
    testing::destroyAll(comms);
  }
#else
  GTEST_SKIP() << "the test sets x86's MXCSR";
#endif
}

// The algorithm is chosen on the caller's thread, in its floating-point environment: under
// FE_UPWARD, log2(4) read 2.0000000000000004, so ranks rounding upward priced the tree's depth at
// 3 where the others said 2, and picked another algorithm for the same call (a reduce: tree on
// some ranks, chain on others), which failed as a mismatch (or stalled a split's ranks). Every
// entry point now runs in the default environment.
TEST(FloatEnvironment, RanksRoundingUpwardChooseTheSameAlgorithms) {
  const int n = 4;
  // Init too: glibc's strtod rounds by the x87 control word, which fesetround sets beside MXCSR,
  // so 0.3 parsed upward read 0.30000000000000004 and the ranks' configurations "differed".
  setenv("LOCKSTEP_LINK_GBPS", "0.3", 1);
  auto comms = testing::initThreadComms(n, [](int r) {
    if (r % 2) std::fesetround(FE_UPWARD);
  });
  unsetenv("LOCKSTEP_LINK_GBPS");
  std::vector<std::string> errors(n);
  onThreads(n, [&](int r) {
    const int before = std::fegetround();
    if (r % 2) std::fesetround(FE_UPWARD);
    std::vector<int32_t> in(166, r + 1), out(166, 0);
    for (size_t bytes : {size_t(4), size_t(166 * 4), size_t(36706)}) {
      const size_t count = bytes / 4;
      std::vector<int32_t> big(count, 1), res(count);
      if (lockstepReduce(big.data(), res.data(), count, lockstepInt32, lockstepProd, 3, comms[r], nullptr) !=
              lockstepSuccess ||
          lockstepBroadcast(big.data(), res.data(), count, lockstepInt32, 0, comms[r], nullptr) != lockstepSuccess ||
          lockstepAllReduce(big.data(), res.data(), count, lockstepInt32, lockstepMax, comms[r], nullptr) !=
              lockstepSuccess) {
        errors[r] = lockstepGetLastError(comms[r]);
        break;
      }
    }
    // Enough blocking calls of one size for the measured tuner's trials and agreements.
    for (int call = 0; call < 300 && errors[r].empty(); ++call) {
      if (lockstepAllReduce(in.data(), out.data(), 126 / 4, lockstepInt32, lockstepMax, comms[r], nullptr) !=
          lockstepSuccess)
        errors[r] = lockstepGetLastError(comms[r]);
    }
    EXPECT_EQ(std::fegetround(), r % 2 ? FE_UPWARD : before) << "rank " << r << "'s own mode was not kept";
    std::fesetround(before);
  });
  for (int r = 0; r < n; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  testing::destroyAll(comms);
}

// A rank that makes blocking calls (which the measured tuner times) against one that makes the
// same calls non-blocking (which keep the model's pick) parts at the first trial: both fail with
// a mismatch whose message says why, where it said "first difference: algorithm" (helper-80).
TEST(TunerMismatch, BlockingOnOneRankAndNonBlockingOnTheOtherIsNamed) {
  auto comms = testing::initThreadComms(2);
  std::vector<std::string> errors(2);
  std::vector<lockstepResult_t> codes(2, lockstepSuccess);
  onThreads(2, [&](int r) {
    std::vector<float> in(1024, 1.0f), out(1024);
    for (int call = 0; call < 400 && codes[r] == lockstepSuccess; ++call) {
      if (r == 0) {
        codes[r] = lockstepAllReduce(in.data(), out.data(), in.size(), lockstepFloat32, lockstepSum, comms[r], nullptr);
      } else {
        lockstepRequest_t req = nullptr;
        codes[r] = lockstepIallReduce(in.data(), out.data(), in.size(), lockstepFloat32, lockstepSum, comms[r], &req);
        if (codes[r] == lockstepSuccess) codes[r] = lockstepWait(&req, -1);
      }
      if (codes[r] != lockstepSuccess) errors[r] = lockstepGetLastError(comms[r]);
    }
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(codes[r], lockstepMismatch) << "rank " << r << ": " << errors[r];
    EXPECT_NE(errors[r].find("did one rank make this call blocking and another non-blocking or grouped?"),
              std::string::npos)
        << "rank " << r << ": " << errors[r];
  }
  testing::destroyAll(comms);
}

// The model's choice is logged at INFO once per collective and power-of-two size: a program that
// alternates two sizes with different picks (DDP's full buckets and its smaller last one) got
// a line on every call.
TEST(TunerLog, AlternatingSizesLogEachChoiceOnce) {
  setenv("LOCKSTEP_DEBUG", "INFO", 1);
  setenv("LOCKSTEP_TUNER", "model", 1);
  auto comms = testing::initThreadComms(2);
  unsetenv("LOCKSTEP_DEBUG");
  unsetenv("LOCKSTEP_TUNER");
  const size_t counts[2] = {8, 256 * 1024};  // 32 B and 1 MiB: recursive doubling and the ring here
  std::vector<float> in(counts[1], 1.0f), out[2] = {std::vector<float>(counts[1]), std::vector<float>(counts[1])};
  ::testing::internal::CaptureStderr();
  onThreads(2, [&](int r) {
    for (int call = 0; call < 20; ++call) {
      EXPECT_EQ(lockstepAllReduce(in.data(), out[r].data(), counts[call % 2], lockstepFloat32, lockstepSum, comms[r],
                                  nullptr),
                lockstepSuccess);
    }
  });
  const std::string log = ::testing::internal::GetCapturedStderr();
  testing::destroyAll(comms);
  setLogLevel(LogLevel::kWarn);
  std::set<std::string> lines;
  int count = 0;
  for (size_t at = log.find("tuner: allreduce of "); at != std::string::npos;
       at = log.find("tuner: allreduce of ", at + 1)) {
    lines.insert(log.substr(at, log.find('\n', at) - at));
    ++count;
  }
  EXPECT_EQ(count, 4) << "two sizes on two ranks\n" << log;
  EXPECT_EQ(lines.size(), 2u) << log;
  EXPECT_EQ(out[0][0], 2.0f);
}

}  // namespace
}  // namespace lockstep
