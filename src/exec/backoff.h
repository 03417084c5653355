// How a rank waits: spin briefly (the peer is usually a few hundred nanoseconds away), then yield,
// then sleep with a growing interval (on the link it waits for, which wakes it when the peer
// moves; the interval bounds how late abort, deadline and liveness checks run). Test machines run 8 ranks on 2 cores,
// so a waiter must get off the CPU quickly or it steals the time of the very rank it waits for.
#pragma once

#include <sched.h>
#include <time.h>

#include <cstdint>

namespace lockstep {

// How long each phase lasts, in polls.
struct WaitProfile {
  uint32_t spins = 128;
  uint32_t yields = 32;
  bool oversubscribed = false;  // the peers waited for are often not running
};
// More ranks than CPUs on the host: the peer being waited for is usually not running, so
// spinning only delays it; yield at once, and for longer before sleeping (as MPI's
// yield-when-idle does).
constexpr WaitProfile kOversubscribedWait{4, 512, true};
// As many ranks as CPUs: the peer is running and usually answers within the spin, which a yield
// (a system call, and a trip through the scheduler) would only delay: 8 B all-reduces on 2 ranks
// bound to the 2 vCPUs of an EPYC VM took 0.30 us spinning against 0.33 yielding, and 0.48
// against 0.72 in the VM's slow phases (medians of 20 and 10 interleaved runs). A longer wait
// then yields, for long, before sleeping: the progress and watchdog threads have no CPU of their
// own, and a yield with nothing else to run returns at once.
constexpr WaitProfile kFullHostWait{128, 512};

// How a rank waits, from the ranks on its host and the CPUs they may use between them. An op
// run in the background (a non-blocking call, a stream's op, a DDP bucket during backward)
// shares the rank's CPU with the caller's own work: a full host then counts as oversubscribed.
constexpr WaitProfile waitProfileFor(int ranksOnHost, int cpus, bool background) {
  if (ranksOnHost > cpus || (background && ranksOnHost == cpus)) return kOversubscribedWait;
  if (ranksOnHost == cpus) return kFullHostWait;
  return WaitProfile{};
}

class Backoff {
 public:
  static constexpr long kMinSleepNs = 20'000;
  static constexpr long kMaxSleepNs = 500'000;

  Backoff() = default;
  explicit Backoff(WaitProfile profile) : spins_(profile.spins), yields_(profile.yields) {}

  // True once pause() has started sleeping: the caller's cue to do its slow checks (clock,
  // liveness), which would cost too much on every spin.
  bool sleeping() const { return iter_ >= spins_ + yields_; }
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
    if (iter_ < spins_) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      asm volatile("yield");
#endif
    } else if (iter_ < spins_ + yields_) {
      sched_yield();
    } else {
      sleep(sleepNs_);
      if (sleepNs_ < kMaxSleepNs) sleepNs_ = sleepNs_ * 5 / 4 + 1;
    }
    ++iter_;
  }

 private:
  uint32_t spins_ = WaitProfile{}.spins, yields_ = WaitProfile{}.yields;
  uint32_t iter_ = 0;
  long sleepNs_ = kMinSleepNs;
};

}  // namespace lockstep
