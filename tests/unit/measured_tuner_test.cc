// The measured tuner (src/algo/measured_tuner.h): its candidates, its trial, its agreement and
// its settled period, driven by made-up times; then real ranks that must keep agreeing while it
// switches algorithms under them.
#include "src/algo/measured_tuner.h"

#include <gtest/gtest.h>

#include <barrier>
#include <cmath>
#include <map>
#include <thread>
#include <vector>

#include "src/algo/registry.h"
#include "src/core/api_internal.h"
#include "src/core/communicator.h"
#include "src/core/config.h"
#include "src/core/errors.h"
#include "tests/common/thread_comms.h"

namespace lockstep {
namespace {

const LinkCost kShm = defaultLinkCost("shm");
constexpr size_t kSmall = 64 << 10;  // the model finds several algorithms plausible at 4 ranks

// Drives one rank's tuner with times from `usOf`, alone (the agreement is the identity), at
// kSmall; other sizes take the model's shape (usOf times its prediction there over kSmall's).
struct Driver {
  MeasuredTuner tuner{4, kShm, TunerSettings{}};
  std::map<Algorithm, double> usOf;
  int agreements = 0;
  MeasuredTuner::Pick call(size_t bytes = kSmall) {
    const Algorithm model = chooseAlgorithm(OpKind::kAllReduce, 4, bytes, kShm, {});
    MeasuredTuner::Pick p = tuner.pick(OpKind::kAllReduce, bytes, model, [this](double*, int) { ++agreements; });
    if (p.sample) {
      *p.sample += usOf.at(p.algorithm) * predictUs(p.algorithm, OpKind::kAllReduce, 4, bytes, kShm) /
                   predictUs(p.algorithm, OpKind::kAllReduce, 4, kSmall, kShm);
    }
    return p;
  }
  // Runs the first trial of kSmall to its agreement; false if it did not end within 1000 calls.
  bool settle() {
    for (int call = 0; call < 1000; ++call) {
      if (this->call().decided) return true;
    }
    return false;
  }
};

TEST(MeasuredTuner, CandidatesStartWithTheModelsPickAndAreAllPlausible) {
  for (int n : {2, 3, 4, 8, 16, 64}) {
    MeasuredTuner t(n, kShm, {});
    for (OpKind k : {OpKind::kAllReduce, OpKind::kBroadcast, OpKind::kReduce, OpKind::kReduceScatter}) {
      for (size_t bytes = 8; bytes <= (size_t{1} << 30); bytes *= 4) {
        const auto c = t.candidates(k, bytes);
        ASSERT_GE(c.n, 1);
        ASSERT_LE(c.n, MeasuredTuner::kMaxCandidates);
        EXPECT_EQ(c.algorithm[0], chooseAlgorithm(k, n, bytes, kShm, {})) << n << " ranks, " << bytes << " bytes";
        const double best = predictUs(c.algorithm[0], k, n, bytes, kShm);
        for (int i = 0; i < c.n; ++i) {
          EXPECT_TRUE(implements(c.algorithm[i], k));
          EXPECT_NE(c.algorithm[i], Algorithm::kOrdered);
          EXPECT_LE(predictUs(c.algorithm[i], k, n, bytes, kShm), MeasuredTuner::kCandidateFactor * best);
        }
        if (c.n > 1) {
          // None left out: every algorithm the model finds plausible is tried.
          int plausible = 0;
          for (int i = 0; i < static_cast<int>(Algorithm::kCount); ++i) {
            const auto a = static_cast<Algorithm>(i);
            plausible += a != Algorithm::kOrdered && implements(a, k) && n <= maxRanks(a, k) &&
                         predictUs(a, k, n, bytes, kShm) <= MeasuredTuner::kCandidateFactor * best;
          }
          EXPECT_EQ(c.n, plausible) << n << " ranks, " << bytes << " bytes";
          EXPECT_LE(best, MeasuredTuner::kMaxTrialUs);
          EXPECT_GE(c.turn, 2);  // an untimed call, then at least one timed
          EXPECT_LE(c.turn, MeasuredTuner::kMaxTurnCalls);
          EXPECT_LE(c.trialCalls(), MeasuredTuner::kMaxTrialCalls);
        }
      }
    }
  }
}

TEST(MeasuredTuner, LeavesForcedDeterministicAndLargeCallsToTheModel) {
  MeasuredTuner forced(4, kShm, parseTunerSettings("allreduce=tree", false));
  EXPECT_EQ(forced.candidates(OpKind::kAllReduce, kSmall).n, 1);
  EXPECT_EQ(forced.candidates(OpKind::kAllReduce, kSmall).algorithm[0], Algorithm::kTree);
  MeasuredTuner deterministic(4, kShm, parseTunerSettings("", true));
  EXPECT_EQ(deterministic.candidates(OpKind::kAllReduce, kSmall).n, 1);
  MeasuredTuner plain(4, kShm, {});
  EXPECT_GT(plain.candidates(OpKind::kAllReduce, kSmall).n, 1);
  EXPECT_EQ(plain.candidates(OpKind::kAllReduce, size_t{256} << 20).n, 1);  // priced far above kMaxTrialUs
  // Nothing to try where one algorithm implements the collective.
  EXPECT_EQ(plain.candidates(OpKind::kAllGather, kSmall).n, 1);
  // A single-candidate size returns the model's pick of the call itself, with nothing to time.
  auto p = plain.pick(OpKind::kAllGather, kSmall, Algorithm::kRing, [](double*, int) { FAIL(); });
  EXPECT_EQ(p.algorithm, Algorithm::kRing);
  EXPECT_EQ(p.sample, nullptr);
}

TEST(MeasuredTuner, TriesEachCandidateInTurnsThenKeepsTheFastest) {
  Driver d;
  const auto c = d.tuner.candidates(OpKind::kAllReduce, kSmall);
  ASSERT_GT(c.n, 1);
  // The model's pick is the slowest here; the last candidate the fastest.
  for (int i = 0; i < c.n; ++i) d.usOf[c.algorithm[i]] = 100.0 - 10 * i;
  const Algorithm fastest = c.algorithm[c.n - 1];
  for (int call = 0; call < c.trialCalls(); ++call) {
    auto p = d.call();
    // Each turn's first call is untimed: it takes up the switch from the previous candidate.
    ASSERT_EQ(p.sample != nullptr, call % c.turn != 0) << "trial call " << call;
    EXPECT_FALSE(p.decided);
    // Rounds of turns: turn consecutive calls of each candidate, the model's pick first.
    EXPECT_EQ(p.algorithm, c.algorithm[call % (c.n * c.turn) / c.turn]) << "trial call " << call;
  }
  auto decided = d.call();
  EXPECT_TRUE(decided.decided);
  EXPECT_EQ(decided.algorithm, fastest);
  EXPECT_EQ(decided.sample, nullptr);
  EXPECT_NE(d.tuner.decision().find(std::string("-> ") + algorithmName(fastest)), std::string::npos)
      << d.tuner.decision();
  // Settled: the trial's extra time (each slower candidate's over its calls, and the agreement's
  // allowance) comes to about kOverhead of the settled calls' time.
  double extra = MeasuredTuner::kAgreeUs;
  for (int i = 0; i < c.n; ++i)
    extra += (d.usOf[c.algorithm[i]] - d.usOf[fastest]) * MeasuredTuner::kTrialRounds * c.turn;
  const auto settled = static_cast<uint64_t>(std::ceil(extra / (MeasuredTuner::kOverhead * d.usOf[fastest])));
  // Some settled calls are watched (timed, then agreed on); the time has not moved, so the
  // period runs its length, and the watches' agreements cost about kWatchShare of it.
  d.agreements = 0;
  int watched = 0;
  for (uint64_t i = 1; i < settled; ++i) {
    auto p = d.call();
    ASSERT_EQ(p.algorithm, fastest) << "settled call " << i;
    watched += p.sample != nullptr;
    ASSERT_FALSE(p.decided);
  }
  ASSERT_GE(d.agreements, 1);
  EXPECT_LE(d.agreements * MeasuredTuner::kAgreeUs,
            MeasuredTuner::kWatchShare * static_cast<double>(settled) * d.usOf[fastest]);
  // Each watch times as many calls as a trial gives a candidate.
  EXPECT_EQ(watched, d.agreements * MeasuredTuner::kTrialRounds * c.timedCalls());
  // Then a new trial, from the model's pick.
  auto again = d.call();
  EXPECT_EQ(again.sample, nullptr);  // the first turn's untimed call
  EXPECT_EQ(again.algorithm, c.algorithm[0]);
  EXPECT_NE(d.call().sample, nullptr);
}

TEST(MeasuredTuner, FollowsAChangeOfLoadAtTheNextTrial) {
  Driver d;
  const auto c = d.tuner.candidates(OpKind::kAllReduce, kSmall);
  ASSERT_GT(c.n, 1);
  for (int i = 0; i < c.n; ++i) d.usOf[c.algorithm[i]] = 50.0 + i;  // the model's pick is right
  Algorithm last{};
  int decisions = 0;
  for (int call = 0; call < 2'000'000 && decisions < 2; ++call) {
    auto p = d.call();
    if (!p.decided) continue;
    last = p.algorithm;
    if (++decisions == 1) {
      EXPECT_EQ(last, c.algorithm[0]);
      d.usOf[c.algorithm[1]] = 10;  // the load changes: another algorithm is now far faster
    }
  }
  ASSERT_EQ(decisions, 2);
  EXPECT_EQ(last, c.algorithm[1]);
}

// A settled period lasts thousands of calls; a shared VM's phases change an algorithm's time
// several-fold within seconds. Watches that see the chosen algorithm's time move by more than
// kDrift, kDriftWatches times running, start a trial at once, and the new agreement says why.
TEST(MeasuredTuner, WatchesThatSeeTheChosenAlgorithmsTimeDriftStartATrialAtOnce) {
  for (double drift : {3.0, 0.25}) {
    Driver d;
    const auto c = d.tuner.candidates(OpKind::kAllReduce, kSmall);
    ASSERT_GT(c.n, 2);
    // The model's pick is right, by far: the settled period is tens of thousands of calls.
    for (int i = 0; i < c.n; ++i) d.usOf[c.algorithm[i]] = 50.0 + 40 * i;
    ASSERT_TRUE(d.settle());
    EXPECT_EQ(d.tuner.chosen(OpKind::kAllReduce, kSmall), c.algorithm[0]);
    d.agreements = 0;
    // The load changes: the chosen algorithm takes `drift` times as long, and candidate 2 is
    // now the fastest of all.
    d.usOf[c.algorithm[0]] *= drift;
    d.usOf[c.algorithm[2]] = 50.0 * std::min(drift, 1.0) / 2;
    uint64_t calls = 0;
    MeasuredTuner::Pick p;
    do {
      p = d.call();
      ++calls;
    } while (!p.decided && calls < 100'000);
    ASSERT_TRUE(p.decided) << drift;
    EXPECT_EQ(p.algorithm, c.algorithm[2]) << drift;
    // After kDriftWatches watches and a trial: long before the period ends.
    EXPECT_LT(calls, 1000u) << drift;
    EXPECT_EQ(d.agreements, MeasuredTuner::kDriftWatches + 1) << drift;
    const std::string why = d.tuner.decision();
    EXPECT_NE(why.find(std::string("after ") + algorithmName(c.algorithm[0]) + " took"), std::string::npos) << why;
  }
}

// One watch beyond kDrift alone is noise: the period runs its length.
TEST(MeasuredTuner, OneSlowWatchAloneKeepsTheChoice) {
  Driver d;
  const auto c = d.tuner.candidates(OpKind::kAllReduce, kSmall);
  ASSERT_GT(c.n, 1);
  for (int i = 0; i < c.n; ++i) d.usOf[c.algorithm[i]] = 50.0 + 40 * i;
  ASSERT_TRUE(d.settle());
  d.agreements = 0;
  uint64_t calls = 0;
  int watches = 0;
  bool inWatch = false;
  MeasuredTuner::Pick p;
  do {
    p = d.call();
    ++calls;
    if (p.sample && !inWatch) ++watches;
    inWatch = p.sample != nullptr;
    // The first watch's calls take 3x, and only they.
    d.usOf[c.algorithm[0]] = watches == 1 ? 150.0 : 50.0;
  } while (!p.decided && calls < 10'000'000);
  ASSERT_TRUE(p.decided);
  EXPECT_GT(watches, MeasuredTuner::kDriftWatches);
  EXPECT_GT(calls, 5000u);
  EXPECT_EQ(d.tuner.decision().find("after "), std::string::npos) << d.tuner.decision();
}

// A loaded host stretches a call now and then by milliseconds (the process descheduled): a
// watch, like a trial, takes each rank's median turn, so such calls alone are no drift. Watches
// that averaged their calls restarted trials every few hundred calls (helper-58).
TEST(MeasuredTuner, CallsStretchedNowAndThenAreNoDrift) {
  Driver d;
  const auto c = d.tuner.candidates(OpKind::kAllReduce, kSmall);
  ASSERT_GT(c.n, 1);
  for (int i = 0; i < c.n; ++i) d.usOf[c.algorithm[i]] = 50.0 + 40 * i;
  // Every 23rd timed call takes 4 ms more, in the trials and the watches alike.
  int timed = 0;
  auto call = [&] {
    auto p = d.call();
    if (p.sample && ++timed % 23 == 0) *p.sample += 4000;
    return p;
  };
  int decisions = 0, drifts = 0;
  for (int i = 0; i < 200'000; ++i) {
    if (!call().decided) continue;
    ++decisions;
    drifts += d.tuner.decision().find("after ") != std::string::npos;
  }
  EXPECT_GE(decisions, 2);
  EXPECT_EQ(drifts, 0) << d.tuner.decision();
}

// Sizes of one bucket differ up to 2x: a watch of larger calls than its trial's is no drift.
TEST(MeasuredTuner, AWatchOfLargerCallsInTheSameBucketIsNoDrift) {
  Driver d;
  const auto c = d.tuner.candidates(OpKind::kAllReduce, kSmall);
  ASSERT_GT(c.n, 1);
  for (int i = 0; i < c.n; ++i) d.usOf[c.algorithm[i]] = 50.0 + i;
  ASSERT_TRUE(d.settle());
  const size_t larger = 2 * kSmall - 1024;  // the same power-of-two bucket
  // The model's own time for it differs by more than kDrift, so unscaled it would look drifted.
  ASSERT_GT(predictUs(c.algorithm[0], OpKind::kAllReduce, 4, larger, kShm) /
                predictUs(c.algorithm[0], OpKind::kAllReduce, 4, kSmall, kShm),
            MeasuredTuner::kDrift);
  d.agreements = 0;
  uint64_t calls = 0;
  while (!d.call(larger).decided && calls < 1'000'000) ++calls;
  EXPECT_GE(d.agreements, 2);  // watches, then the end of the period's trial
  EXPECT_NE(d.tuner.decision().find("for "), std::string::npos);
  EXPECT_EQ(d.tuner.decision().find("after "), std::string::npos) << d.tuner.decision();
}

TEST(MeasuredTuner, SizesOfOnePowerOfTwoShareATrialAndOthersHaveTheirOwn) {
  Driver d;
  const auto c = d.tuner.candidates(OpKind::kAllReduce, kSmall);
  for (int i = 0; i < c.n; ++i) d.usOf[c.algorithm[i]] = 100.0 - 10 * i;
  for (Algorithm a : {Algorithm::kRing, Algorithm::kTree, Algorithm::kRecursiveDoubling, Algorithm::kRabenseifner,
                      Algorithm::kDirect}) {
    if (!d.usOf.count(a)) d.usOf[a] = 1;
  }
  // kSmall and kSmall + 4 KiB fall in one bucket: their calls make one trial between them.
  for (int call = 0; call < c.trialCalls(); ++call) d.call(call % 2 ? kSmall + 4096 : kSmall);
  EXPECT_TRUE(d.call(kSmall + 4096).decided);
  // 4 KiB is another bucket, with a trial of its own.
  EXPECT_FALSE(d.call(4096).decided);
  EXPECT_NE(d.call(4096).sample, nullptr);  // after the untimed first call of its first turn
}

TEST(MeasuredTuner, RanksThatMeasureDifferentlyAgreeOnTheSlowestRanksFigures) {
  // Two ranks on threads; the agreement takes the maximum of their medians, per candidate.
  constexpr int kRanks = 2;
  std::barrier sync(kRanks);
  double shared[kRanks][MeasuredTuner::kMaxCandidates];
  MeasuredTuner probe(kRanks, kShm, {});
  const auto c = probe.candidates(OpKind::kAllReduce, 4096);
  ASSERT_GT(c.n, 1);
  std::vector<Algorithm> chosen(kRanks);
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      MeasuredTuner t(kRanks, kShm, {});
      // Rank 0 finds candidate 0 fastest, rank 1 finds it slowest of all; candidate 1 is second
      // best on both, so it is the fastest collective (the slowest rank ends a collective).
      auto us = [&](Algorithm a) {
        int i = 0;
        while (c.algorithm[i] != a) ++i;
        if (i == 0) return r == 0 ? 10.0 : 1000.0;
        return i == 1 ? 20.0 : (r == 0 ? 500.0 : 15.0);
      };
      auto agree = [&](double* v, int n) {
        for (int i = 0; i < n; ++i) shared[r][i] = v[i];
        sync.arrive_and_wait();
        for (int i = 0; i < n; ++i) v[i] = std::max(shared[0][i], shared[1][i]);
        sync.arrive_and_wait();
      };
      for (;;) {
        auto p = t.pick(OpKind::kAllReduce, 4096, c.algorithm[0], agree);
        if (p.decided) {
          chosen[r] = p.algorithm;
          return;
        }
        if (p.sample) *p.sample += us(p.algorithm);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(chosen[0], c.algorithm[1]);
  EXPECT_EQ(chosen[1], c.algorithm[1]);
}

TEST(MeasuredTuner, LockstepTunerSelectsItAndMustBeKnown) {
  auto config = [](const char* value) {
    return Config::fromVariables(
        [&](const char* name) -> const char* { return std::string(name) == "LOCKSTEP_TUNER" ? value : nullptr; });
  };
  EXPECT_TRUE(config(nullptr).measuredTuning);
  EXPECT_TRUE(config("measured").measuredTuning);
  EXPECT_FALSE(config("model").measuredTuning);
  // Ranks must agree on it: it decides which algorithm runs.
  EXPECT_EQ(config("measured").wireSummary(), config(nullptr).wireSummary());
  EXPECT_NE(config("model").wireSummary().find("tuner=model"), std::string::npos);
  try {
    config("fastest");
    FAIL() << "accepted LOCKSTEP_TUNER=fastest";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("LOCKSTEP_TUNER=fastest"), std::string::npos) << e.what();
  }
}

// Real ranks (threads, inproc links), blocking calls: every call's result is checked while the
// tuner tries algorithms, agrees and settles, at sizes whose calls interleave (one trial each).
// A rank that ran another algorithm than its peers would fail the call with a mismatch.
TEST(MeasuredTuner, RealRanksStayCorrectAndInStepThroughTrials) {
  constexpr int kRanks = 4;
  auto comms = testing::initThreadComms(kRanks);
  const size_t counts[] = {2, 1024, 16384};  // 8 B, 4 KiB, 64 KiB of float32
  constexpr int kCalls = 900;
  // The test means something only if trials happen, and end, within its calls.
  const MeasuredTuner probe(kRanks, communicatorOf(comms[0])->linkCost(), {});
  int tried = 0;
  for (size_t count : counts) {
    const auto c = probe.candidates(OpKind::kAllReduce, count * sizeof(float));
    EXPECT_LT(c.trialCalls(), kCalls);
    tried += c.n > 1;
  }
  EXPECT_GE(tried, 2);
  std::vector<std::string> errors(kRanks);
  testing::onThreads(kRanks, [&](int r) {
    std::vector<float> in(16384), out(16384);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>((i + r) % 5);
    // Enough calls per size for a whole trial of each: the model finds several algorithms
    // plausible at these sizes on 4 ranks (candidates() bounds a trial to
    // kMaxTrialCalls calls).
    for (int call = 0; call < kCalls && errors[r].empty(); ++call) {
      for (size_t count : counts) {
        std::fill(out.begin(), out.begin() + count, -1.0f);
        if (lockstepAllReduce(in.data(), out.data(), count, lockstepFloat32, lockstepSum, comms[r], nullptr) !=
            lockstepSuccess) {
          errors[r] = lockstepGetLastError(nullptr);
          return;
        }
        for (size_t i = 0; i < count; ++i) {
          float want = 0;
          for (int q = 0; q < kRanks; ++q) want += static_cast<float>((i + q) % 5);
          if (out[i] != want) {
            errors[r] = "wrong value at call " + std::to_string(call) + ", count " + std::to_string(count);
            return;
          }
        }
      }
    }
  });
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  testing::destroyAll(comms);
}

}  // namespace
}  // namespace lockstep
