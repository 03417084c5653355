// How a rank waits: spin briefly (the peer is usually a few hundred nanoseconds away), then yield,
// then sleep with a growing interval (on the link it waits for, which wakes it when the peer
// moves; the interval bounds how late abort, deadline and liveness checks run). Test machines run 8 ranks on 2 cores,
// so a waiter must get off the CPU quickly or it steals the time of the very rank it waits for.
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
    pause([](long ns) {
      timespec ts{0, ns};
      nanosleep(&ts, nullptr);
    });
  }
  // The same, but the sleeping phase calls sleep(ns), which may return early: the executor
  // sleeps on the link it waits for, so the peer's next message wakes it at once.
  template <typename Sleep>
  void pause(Sleep&& sleep) {
    if (iter_ < kSpins) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      asm volatile("yield");
#endif
    } else if (iter_ < kSpins + kYields) {
      sched_yield();
    } else {
      sleep(sleepNs_);
      if (sleepNs_ < kMaxSleepNs) sleepNs_ = sleepNs_ * 5 / 4 + 1;
    }
    ++iter_;
  }

 private:
  uint32_t iter_ = 0;
  long sleepNs_ = kMinSleepNs;
};

}  // namespace lockstep
