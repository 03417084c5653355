// How a rank waits: spin briefly (the peer is usually a few hundred nanoseconds away), then yield,
// then sleep with a growing interval. Test machines run 8 ranks on 2 cores, so a waiter must get
// off the CPU quickly or it steals the time of the very rank it waits for.
#pragma once

#include <sched.h>
#include <time.h>

#include <cstdint>

namespace lockstep {

class Backoff {
 public:
  static constexpr uint32_t kSpins = 128;
  static constexpr uint32_t kYields = 32;
  static constexpr long kMinSleepNs = 20'000;
  static constexpr long kMaxSleepNs = 500'000;

  // True once pause() has started sleeping: the caller's cue to do its slow checks (clock,
  // liveness), which would cost too much on every spin.
  bool sleeping() const { return iter_ >= kSpins + kYields; }
  // Progress was made: the next wait starts with spinning again.
  void reset() {
    iter_ = 0;
    sleepNs_ = kMinSleepNs;
  }

  void pause() {
    if (iter_ < kSpins) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      asm volatile("yield");
#endif
    } else if (iter_ < kSpins + kYields) {
      sched_yield();
    } else {
      timespec ts{0, sleepNs_};
      nanosleep(&ts, nullptr);
      if (sleepNs_ < kMaxSleepNs) sleepNs_ = sleepNs_ * 5 / 4 + 1;
    }
    ++iter_;
  }

 private:
  uint32_t iter_ = 0;
  long sleepNs_ = kMinSleepNs;
};

}  // namespace lockstep
