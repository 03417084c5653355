// How a rank waits: spin briefly (the peer is usually a few hundred nanoseconds away), then yield,
// then sleep with a growing interval (on the link it waits for, which wakes it when the peer
// moves; the interval bounds how late abort, deadline and liveness checks run). Test machines run 8 ranks on 2 cores,
// so a waiter must get off the CPU quickly or it steals the time of the very rank it waits for.
#pragma once

#include <sched.h>
#include <time.h>

#include <atomic>
#include <cstdint>

namespace lockstep {

// Threads of this process blocked in a wait for Lockstep work (lockstepWait, a blocking call
// queued behind non-blocking ones): while one is, a background op's yields give its CPU to
// nobody in particular; while none is, they give it to the caller's own work.
inline std::atomic<int>& callersWaiting() {
  static std::atomic<int> n{0};
  return n;
}
struct CallerWaits {
  CallerWaits() { callersWaiting().fetch_add(1, std::memory_order_relaxed); }
  ~CallerWaits() { callersWaiting().fetch_sub(1, std::memory_order_relaxed); }
  CallerWaits(const CallerWaits&) = delete;
  CallerWaits& operator=(const CallerWaits&) = delete;
};

// How long each phase lasts, in polls.
struct WaitProfile {
  uint32_t spins = 128;
  uint32_t yields = 32;
  bool oversubscribed = false;  // the peers waited for are often not running
  // A background op (a non-blocking call, a DDP bucket during backward) shares its rank's CPU
  // with the caller (lockstep-run binds a rank to one core). While the caller computes, or polls
  // lockstepTest, each yield handed it the CPU for a whole time slice: a 64-byte Iallreduce took
  // 5-10 ms polled against 0.01-0.1 ms waited for (helper-80). So its yields are made only while
  // a caller waits; otherwise it sleeps on the link, whose wake-up takes the CPU back at once.
  bool yieldOnlyWhileCallerWaits = false;
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
  WaitProfile p = ranksOnHost > cpus || (background && ranksOnHost == cpus) ? kOversubscribedWait
                  : ranksOnHost == cpus                                     ? kFullHostWait
                                                                            : WaitProfile{};
  // Not with more ranks than CPUs: there a yield goes to the other ranks, whose progress is this
  // op's, and skipping it made a waited 16-float Iallreduce on 4 ranks over 2 vCPUs 15x slower
  // (33-52 against 620-670 us).
  p.yieldOnlyWhileCallerWaits = background && ranksOnHost <= cpus;
  return p;
}

class Backoff {
 public:
  static constexpr long kMinSleepNs = 20'000;
  static constexpr long kMaxSleepNs = 500'000;

  Backoff() = default;
  explicit Backoff(WaitProfile profile)
      : spins_(profile.spins), yields_(profile.yields), yieldOnlyWhileCallerWaits_(profile.yieldOnlyWhileCallerWaits) {}

  // True once pause() has started sleeping: the caller's cue to do its slow checks (clock,
  // liveness), which would cost too much on every spin.
  bool sleeping() const { return iter_ >= spins_ + yields_; }
  // Progress was made: the next wait starts with spinning again.
  void reset() {
    iter_ = 0;
    skippedYields_ = false;
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
    } else if (const bool yield = !yieldOnlyWhileCallerWaits_ || callersWaiting().load(std::memory_order_relaxed) > 0;
               iter_ < spins_ + yields_ && yield) {
      sched_yield();
    } else if (skippedYields_ && yield) {
      // A caller came to wait while this slept instead of yielding: its CPU is free now, and a
      // yield sees the peer's data sooner than a wake-up does (24 against 190 us an op here).
      skippedYields_ = false;
      iter_ = spins_;
      sched_yield();
    } else {
      if (iter_ < spins_ + yields_) {
        skippedYields_ = true;
        iter_ = spins_ + yields_;  // sleeping(): the slow checks run from now
        // Short steps at first, so that a caller coming to wait (right after posting, as often)
        // is seen soon; they grow to the usual bound within 20 or so.
        sleepNs_ = kMinSleepNs / 10;
      }
      sleep(sleepNs_);
      if (sleepNs_ < kMaxSleepNs) sleepNs_ = sleepNs_ * 5 / 4 + 1;
    }
    ++iter_;
  }

 private:
  uint32_t spins_ = WaitProfile{}.spins, yields_ = WaitProfile{}.yields;
  bool yieldOnlyWhileCallerWaits_ = false;
  bool skippedYields_ = false;  // the yield phase was skipped for want of a waiting caller
  uint32_t iter_ = 0;
  long sleepNs_ = kMinSleepNs;
};

}  // namespace lockstep
