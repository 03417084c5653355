// Measured tuning: the cost model's pick, checked against the clock.
//
// The model's constants hold on average, not at every moment. On a shared or oversubscribed host
// the fastest all-reduce changes with the load: on 4 ranks over 2 vCPUs the best algorithm from
// 64 KiB to 4 MiB changed between the ring, the tree and Rabenseifner from one run to the next,
// up to 2x apart, and no set of constants fitted every run (issue 4, perf/algo_sweep). So, per collective and
// power-of-two size, blocking calls time the algorithms the model finds plausible, the ranks
// agree on what they measured, and the fastest runs until the next trial:
//
//   trial:   kTrialRounds rounds, each giving every candidate a turn of consecutive calls
//            (the model's pick first) that lasts about kTurnUs by the model's estimate: single
//            calls of a few microseconds on an oversubscribed host are mostly scheduling noise.
//            A turn's first call is not timed: it absorbs the ranks' skew left by the previous
//            candidate, which the settled calls, back to back, never see (on 4 ranks over 2
//            vCPUs a 1 MiB ring timed alone took 2-3x its steady-state time, and lost to the tree
//            that was 2x slower back to back);
//   agree:   each rank's median per candidate, then the maximum over the ranks (a collective the
//            caller runs: the slowest rank decides when a collective ends);
//   settled: the fastest candidate, for as many calls as keep the trials' cost (the slower
//            candidates' extra time and the agreement's) near kOverhead of the total; then a
//            new trial, so a change of load is followed.
//   watched: every so many settled calls (about kAgreeUs / kWatchShare of them, 10 ms, so that
//            the agreements cost kWatchShare), the ranks time kTrialRounds turns of them (as
//            long as the trial's) and agree on what they took, as a trial does: each rank's
//            median turn, then the slowest rank's. If the chosen algorithm takes more than
//            kDrift times what its trial measured, or less than 1/kDrift, in kDriftWatches
//            watches running, the load has changed and a new trial starts at once. A shared
//            VM's phases change an algorithm's time 2-5x within seconds, and which algorithm is
//            fastest with it (on 4 ranks the ring at 128 KiB took 40 us in one stretch and 190
//            us in the next, where Rabenseifner was twice as fast), while a settled period lasts
//            up to a second. One watch alone is not trusted: on an oversubscribed host it can
//            read 1.5x off, and each new trial costs kOverhead of a period.
//
// Every rank makes the same calls, so every rank reaches the same state at the same call, and
// the agreed figures are the same everywhere: the ranks always pick the same algorithm. Pure: no
// clock, no I/O. The caller times the calls it is asked to and runs the agreement.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "src/algo/tuner.h"

namespace lockstep {

class MeasuredTuner {
 public:
  // Every all-reduce algorithm but the deterministic one: with four, Rabenseifner (the model's
  // fifth at 8-64 KiB on 4 ranks) was never tried in a phase where it was 1.1-1.7x ahead there.
  static constexpr int kMaxCandidates = 5;
  static constexpr int kTrialRounds = 5;
  static constexpr double kTurnUs = 300;
  static constexpr int kMaxTurnCalls = 10;
  // A trial's calls at most (turns shorten when there are more candidates): the perf drivers'
  // warm-up, a tenth of their iterations (200 at small sizes), then absorbs a size's first trial.
  static constexpr int kMaxTrialCalls = 200;
  // Only algorithms predicted within this factor of the model's best are tried.
  static constexpr double kCandidateFactor = 3;
  // Sizes the model prices above this are left to it: bandwidth-bound, where it has been right,
  // and where a trial of a slower algorithm would cost whole milliseconds.
  static constexpr double kMaxTrialUs = 1000;
  // What the trials may cost, as a fraction of the calls' time at the chosen algorithm.
  static constexpr double kOverhead = 0.01;
  // The agreement's price in that budget (a small all-reduce on a loaded host).
  static constexpr double kAgreeUs = 50;
  static constexpr uint64_t kMinSettledCalls = 64, kMaxSettledCalls = uint64_t{1} << 20;
  // What the watches' agreements may cost, as a fraction of the settled calls' time.
  static constexpr double kWatchShare = 0.005;
  // How far the chosen algorithm's watched time may move from its trial's, and in how many
  // watches running, before a new trial.
  static constexpr double kDrift = 1.5;
  static constexpr int kDriftWatches = 2;

  // Replaces values[0..n) by their maximum over the communicator's ranks (a collective).
  using AgreeMax = std::function<void(double* values, int n)>;

  struct Pick {
    Algorithm algorithm;
    double* sample = nullptr;  // time this call and add its microseconds here (null: do not)
    bool decided = false;      // an agreement just settled this size: decision() describes it
  };

  MeasuredTuner(int nranks, const LinkCost& link, const TunerSettings& settings)
      : nranks_(nranks), link_(link), settings_(settings) {}

  // What the next blocking call of `kind` over `bytes` (the tuner's size) runs; `model` is
  // chooseAlgorithm's pick for it. May call `agree` first (every rank at the same call).
  Pick pick(OpKind kind, size_t bytes, Algorithm model, const AgreeMax& agree) {
    // The steady state, inline (an 8-byte all-reduce takes 0.2 us): a settled size, or one
    // that is the model's alone.
    if (buckets_) {
      Bucket& b = buckets_[bucketIndex(kind, bytes)];
      if (b.settled && b.callsLeft > b.watchAt) {
        --b.callsLeft;
        return Pick{b.chosen};
      }
      if (b.c.n == 1) return Pick{model};  // the model's pick may change inside a bucket
    }
    return pickSlow(kind, bytes, model, agree);
  }

  // What the last agreement chose for calls of this size, if one has settled it (also during
  // the next trial); nullopt while the first trial runs or where the model decides alone.
  std::optional<Algorithm> chosen(OpKind kind, size_t bytes) const {
    if (!buckets_) return std::nullopt;
    const Bucket& b = buckets_[bucketIndex(kind, bytes)];
    return b.c.n > 1 && b.everSettled ? std::optional<Algorithm>(b.chosen) : std::nullopt;
  }

  // The last agreement, for the log: "ring 36.5 us, rabenseifner 31.9 us -> rabenseifner for
  // 2000 calls", and what started its trial where a watch did ("after ring took 4.8x its last
  // trial's time"). Formatted when asked: a settled trial allocates nothing.
  std::string decision() const;

  // The model's plausible algorithms for one call, best predicted first; one when the model is
  // not to be second-guessed (one rank, forced, deterministic, or a size above kMaxTrialUs).
  struct Candidates {
    std::array<Algorithm, kMaxCandidates> algorithm{};
    int n = 0;
    int turn = 2;  // calls per candidate and round: one untimed, then about kTurnUs of the model's best
    int trialCalls() const { return n > 1 ? kTrialRounds * n * turn : 0; }
    int timedCalls() const { return turn - 1; }
  };
  Candidates candidates(OpKind kind, size_t bytes) const;

 private:
  struct Bucket {
    Candidates c;
    bool settled = false;
    bool everSettled = false;                           // chosen holds an agreement's choice
    int call = 0;                                       // trial calls made so far
    double samples[kMaxCandidates][kTrialRounds] = {};  // microseconds per turn (its timed calls)
    double trialBytes = 0;                              // the trial's calls' bytes, summed (sizes vary inside a bucket)
    double drift = 0;  // what the watch that started this trial measured, as a ratio (0: none)
    Algorithm chosen{};
    double chosenUs = 0;     // its agreed time per call, at the mean size of its trial's calls
    double chosenBytes = 0;  // that mean size
    uint64_t callsLeft = 0;  // settled calls before the next trial
    // Watches (settled calls timed, then agreed on): every watchEvery calls, the next one when
    // callsLeft comes down to watchAt (0: none left in this period).
    uint64_t watchEvery = 0, watchAt = 0;
    int watchCall = 0;                  // the current watch's timed calls so far (kTrialRounds turns of c.timedCalls())
    int drifting = 0;                   // watches running beyond kDrift: + slower, - faster
    double watchUs[kTrialRounds] = {};  // their microseconds, per turn
    double watchBytes = 0;              // and bytes
  };
  static constexpr int kSizeBuckets = 65;  // log2 of a size_t, rounded up
  static size_t bucketIndex(OpKind kind, size_t bytes) {
    return static_cast<size_t>(kind) * kSizeBuckets + static_cast<size_t>(std::bit_width(bytes));
  }
  // Everything pick() does not serve inline: a size's first call, its trials and agreements.
  Pick pickSlow(OpKind kind, size_t bytes, Algorithm model, const AgreeMax& agree);
  Algorithm settle(Bucket& b, const AgreeMax& agree);
  // The end of a watch: true if the ranks agree the chosen algorithm's time has drifted.
  bool drifted(OpKind kind, Bucket& b, const AgreeMax& agree);
  void scheduleWatch(Bucket& b) const;
  static void clearWatch(Bucket& b);
  static int watchCalls(const Bucket& b) { return kTrialRounds * b.c.timedCalls(); }

  int nranks_;
  LinkCost link_;
  TunerSettings settings_;
  std::unique_ptr<Bucket[]> buckets_;  // by (kind, log2 bytes), on the first pick
  struct Decision {
    Candidates c;
    double us[kMaxCandidates] = {};
    Algorithm chosen{};
    uint64_t calls = 0;
    double drift = 0;     // the watched ratio that started this trial (0: none)
    Algorithm drifted{};  // the algorithm that drifted
  } last_;
};

}  // namespace lockstep
