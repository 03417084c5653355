#include "src/algo/measured_tuner.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "src/algo/registry.h"

namespace lockstep {

namespace {

double medianOf(const double* v) {
  double s[MeasuredTuner::kTrialRounds];
  std::copy(v, v + MeasuredTuner::kTrialRounds, s);
  std::sort(s, s + MeasuredTuner::kTrialRounds);
  return s[MeasuredTuner::kTrialRounds / 2];
}

}  // namespace

MeasuredTuner::Candidates MeasuredTuner::candidates(OpKind kind, size_t bytes) const {
  Candidates out;
  out.algorithm[0] = chooseAlgorithm(kind, nranks_, bytes, link_, settings_);
  out.n = 1;
  if (nranks_ < 2 || settings_.forced[static_cast<int>(kind)] || settings_.deterministic) return out;
  // The same field as chooseAlgorithm, ranked: ties keep its order, so the first is its pick.
  struct Priced {
    double us;
    Algorithm a;
  };
  std::array<Priced, static_cast<int>(Algorithm::kCount)> priced{};
  int n = 0;
  for (int i = 0; i < static_cast<int>(Algorithm::kCount); ++i) {
    auto a = static_cast<Algorithm>(i);
    if (a == Algorithm::kOrdered || !implements(a, kind) || nranks_ > maxRanks(a, kind)) continue;
    priced[n++] = Priced{predictUs(a, kind, nranks_, bytes, link_), a};
  }
  std::stable_sort(priced.begin(), priced.begin() + n, [](const Priced& x, const Priced& y) { return x.us < y.us; });
  if (n == 0 || priced[0].us > kMaxTrialUs) return out;
  out.n = 0;
  for (int i = 0; i < n && out.n < kMaxCandidates; ++i) {
    if (priced[i].us <= kCandidateFactor * priced[0].us) out.algorithm[out.n++] = priced[i].a;
  }
  const int maxTurn = std::min(kMaxTurnCalls, kMaxTrialCalls / (kTrialRounds * out.n));
  out.turn = 1 + static_cast<int>(std::clamp(std::ceil(kTurnUs / std::max(priced[0].us, 1e-3)), 1.0,
                                             static_cast<double>(maxTurn - 1)));
  return out;
}

MeasuredTuner::Pick MeasuredTuner::pickSlow(OpKind kind, size_t bytes, Algorithm model, const AgreeMax& agree) {
  if (!buckets_) buckets_ = std::make_unique<Bucket[]>(kOpKinds * kSizeBuckets);
  Bucket& b = buckets_[bucketIndex(kind, bytes)];
  if (b.c.n == 0) {
    // First call of this size: the calls of a bucket share the candidates of its first call.
    b.c = candidates(kind, bytes);
  }
  if (b.c.n == 1) return Pick{model};  // the model's pick may change inside a bucket
  if (b.settled && b.callsLeft > 0) {
    // A watch: pick() leaves its calls here. Its timed calls, then its agreement.
    if (b.watchCall < watchCalls(b)) {
      --b.callsLeft;
      b.watchBytes += static_cast<double>(bytes);
      return Pick{b.chosen, &b.watchUs[b.watchCall++ / b.c.timedCalls()]};
    }
    if (!drifted(kind, b, agree)) {
      --b.callsLeft;
      scheduleWatch(b);
      return Pick{b.chosen};
    }
  }
  if (b.settled) {
    // The settled calls are over, or a watch saw the load change: this one starts a new trial.
    b.settled = false;
    b.call = 0;
    b.trialBytes = 0;
    clearWatch(b);  // one cut short by a drift
    std::fill(&b.samples[0][0], &b.samples[0][0] + kMaxCandidates * kTrialRounds, 0.0);
  }
  if (b.call == b.c.trialCalls()) return Pick{settle(b, agree), nullptr, true};
  const int perRound = b.c.n * b.c.turn;
  const int round = b.call / perRound, candidate = b.call % perRound / b.c.turn;
  const bool timed = b.call % b.c.turn != 0;  // a turn's first call settles the switch
  ++b.call;
  b.trialBytes += static_cast<double>(bytes);
  return Pick{b.c.algorithm[candidate], timed ? &b.samples[candidate][round] : nullptr};
}

bool MeasuredTuner::drifted(OpKind kind, Bucket& b, const AgreeMax& agree) {
  // The trial's statistic: a rank's median turn ignores a call that a descheduling stretched by
  // milliseconds, which the plain mean of the watch's calls did not (helper-58: on a loaded host,
  // watches read 2-10x a steady load's trial figures and restarted trials every ~600 calls).
  double agreed[kMaxCandidates] = {medianOf(b.watchUs) / b.c.timedCalls()};
  agree(agreed, kMaxCandidates);
  // The sizes of one bucket differ up to 2x, and the watch's calls need not be the trial's mix:
  // the model scales the trial's figure to the watch's mean size (the same on every rank).
  const double watchModel =
      predictUs(b.chosen, kind, nranks_, static_cast<size_t>(b.watchBytes / watchCalls(b)), link_);
  const double trialModel = predictUs(b.chosen, kind, nranks_, static_cast<size_t>(b.chosenBytes), link_);
  const double expected = watchModel > 0 && trialModel > 0 ? b.chosenUs * watchModel / trialModel : b.chosenUs;
  clearWatch(b);
  const double ratio = expected > 0 ? agreed[0] / expected : 1;
  const int side = ratio > kDrift ? 1 : ratio * kDrift < 1 ? -1 : 0;
  b.drifting = side != 0 && b.drifting * side >= 0 ? b.drifting + side : side;
  if (std::abs(b.drifting) < kDriftWatches) return false;
  b.drift = ratio;
  return true;
}

void MeasuredTuner::clearWatch(Bucket& b) {
  b.watchCall = 0;
  b.watchBytes = 0;
  std::fill(b.watchUs, b.watchUs + kTrialRounds, 0.0);
}

void MeasuredTuner::scheduleWatch(Bucket& b) const {
  // None so late that the period would end inside it.
  const uint64_t room = b.watchEvery + static_cast<uint64_t>(watchCalls(b)) + 1;
  b.watchAt = b.watchEvery > 0 && b.callsLeft > room ? b.callsLeft - b.watchEvery : 0;
}

Algorithm MeasuredTuner::settle(Bucket& b, const AgreeMax& agree) {
  double agreed[kMaxCandidates];
  for (int c = 0; c < kMaxCandidates; ++c) agreed[c] = c < b.c.n ? medianOf(b.samples[c]) / b.c.timedCalls() : 0;
  agree(agreed, kMaxCandidates);
  int best = 0;
  for (int c = 1; c < b.c.n; ++c) {
    if (agreed[c] < agreed[best]) best = c;
  }
  last_.drifted = b.chosen;  // where a watch started this trial, the algorithm it watched
  last_.drift = b.drift;
  b.drift = 0;
  b.chosen = b.c.algorithm[best];
  b.settled = b.everSettled = true;
  // Settle for long enough that the next trial's cost (each slower candidate's extra time over
  // its rounds, and the agreement) is about kOverhead of the calls at the chosen one.
  const double bestUs = agreed[best];
  double extraUs = kAgreeUs;
  for (int c = 0; c < b.c.n; ++c) {
    extraUs += (agreed[c] - bestUs) * kTrialRounds * b.c.turn;
  }
  double calls = bestUs > 0 ? std::ceil(extraUs / (kOverhead * bestUs)) : 0;
  calls = std::clamp(calls, static_cast<double>(kMinSettledCalls), static_cast<double>(kMaxSettledCalls));
  b.callsLeft = static_cast<uint64_t>(calls) - 1;  // this call is the first of them
  b.chosenUs = bestUs;
  b.chosenBytes = b.trialBytes / b.c.trialCalls();
  // Watches, spaced so that their agreements cost about kWatchShare of the calls' time.
  b.watchEvery = 0;
  if (bestUs > 0) {
    b.watchEvery = static_cast<uint64_t>(std::max(std::ceil(kAgreeUs / (kWatchShare * bestUs)), 2.0 * watchCalls(b)));
  }
  b.drifting = 0;
  scheduleWatch(b);

  last_.c = b.c;
  std::copy(agreed, agreed + kMaxCandidates, last_.us);
  last_.chosen = b.chosen;
  last_.calls = static_cast<uint64_t>(calls);
  return b.chosen;
}

std::string MeasuredTuner::decision() const {
  std::ostringstream o;
  o.precision(3);
  for (int c = 0; c < last_.c.n; ++c)
    o << (c ? ", " : "") << algorithmName(last_.c.algorithm[c]) << " " << last_.us[c] << " us";
  o << " -> " << algorithmName(last_.chosen) << " for " << last_.calls << " calls";
  if (last_.drift > 0)
    o << ", after " << algorithmName(last_.drifted) << " took " << last_.drift << "x its last trial's time";
  return o.str();
}

}  // namespace lockstep
