// Deadlines: every wait in Lockstep has one.
#pragma once

#include <time.h>

#include <chrono>

namespace lockstep {

using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC

// The same clock at the kernel's tick (1-4 ms), up to a tick behind Clock::now(): about 5 ns to
// read where Clock::now() takes 20-30 in a VM, which is a tenth of an 8-byte all-reduce. For
// what needs milliseconds: an op's deadline (which may then fire up to a tick early) and the
// flight recorder's times when no timeline was asked for.
inline Clock::time_point coarseNow() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::seconds(ts.tv_sec) +
                                                                       std::chrono::nanoseconds(ts.tv_nsec)));
}

class Deadline {
 public:
  static Deadline after(std::chrono::milliseconds d) { return Deadline(Clock::now() + d); }
  static Deadline never() { return Deadline(Clock::time_point::max()); }
  explicit Deadline(Clock::time_point at) : at_(at) {}

  bool expired() const { return Clock::now() >= at_; }
  // Milliseconds left, clamped to [0, cap], for poll().
  int remainingMs(int cap = 1 << 30) const {
    if (at_ == Clock::time_point::max()) return cap;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(at_ - Clock::now()).count();
    if (left < 0) return 0;
    return left > cap ? cap : static_cast<int>(left);
  }
  Deadline earlier(Deadline other) const { return other.at_ < at_ ? other : *this; }
  Clock::time_point at() const { return at_; }

 private:
  Clock::time_point at_;
};

}  // namespace lockstep
