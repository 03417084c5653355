// Whether an op writes its send slots with ordinary or with streaming stores, chosen by timing
// both.
//
// Ordinary stores leave the slot in the sender's cache, where a peer sharing that cache reads
// it fastest. A peer behind another last-level cache (another die of an EPYC, another socket)
// must then pull every line across, dirty, from the sender's die: on the development VM, whose
// two vCPUs move between sharing one L3 and sitting on two, a 2-rank 64 MiB all-reduce ran at
// 7.5-7.9 GB/s in the first case and 2.1-2.4 in the second, and sizes of 32 KiB to 2 MiB took
// 3.5-8x as long (1 MiB: 60 against 480-500 us). Streaming stores send the slot to memory, which
// the peer then reads at memory speed; reductions bound for a slot are made in a scratch buffer
// of the rank's own first (apply.h), so that both halves of a ring travel that way: 6.0-6.4 GB/s
// at 64 MiB behind two L3s, and 86-93 us at 1 MiB; but 2.2x the time of ordinary stores at
// 256 KiB-1 MiB when the peers share one. The rank cannot see which case it is in (the VM's
// sysfs shows one L3 either way, and it changes while the job runs), so it times both: per
// size, after one untimed call, two calls each way, then the faster way (streaming only if
// kMargin faster), with a call the other way now and then so that a change is followed.
//
// A way's time is the least of its last kWindow calls: what a call waits for beyond its own
// work (a peer descheduled, the host's scheduling of the vCPUs) only ever adds time. And a switch
// needs a fresh figure for the other way: when the chosen way slows down, the other is tried
// once first, and taken only if it is faster now. Calls of 128 KiB on 2 ranks ran 9-10 us for a
// dozen calls, then 25-30 for the next dozen, in turn; a running average compared with the other
// way's figure from hundreds of calls before sent a quarter of the calls the slower way.
// How often the other way is tried besides: as seldom as keeps those calls' extra time near
// kExploreCost of the total (every 120th call when it is 2.2x slower), and at least every
// kMaxExploreEvery-th.
//
// Each rank chooses alone: the receiver reads a slot the same way whatever stores filled it.
// Ops of different kinds or algorithms are timed apart, even at one size: a loop alternating two
// of them would otherwise time one way on the one and the other way on the other.
// Pure: the caller times the ops and reports them.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <unordered_map>

namespace lockstep {

class SlotStores {
 public:
  static constexpr uint32_t kMinExploreEvery = 16, kMaxExploreEvery = 1024;
  static constexpr double kExploreCost = 0.01;  // of the calls' time, spent on the other way
  static constexpr uint32_t kWindow = 4;        // calls of a way whose least time is its time
  // Streaming must take less than this fraction of ordinary stores' time to be chosen. Where it
  // is worth it, it takes 0.2-0.4 (behind two L3s); where the ranks share one, it takes 1.05-2.2,
  // and a call's time varies 2-3x from one dozen calls to the next: a margin of 5 % let one rank
  // of two stream for 60 % of 1040 calls of 128 KiB (the other's ordinary stores ran no faster
  // beside it, so neither went back), where a quarter keeps either from streaming but to try.
  static constexpr double kMargin = 0.75;

  // Whether the next op of `bytes` streams its slot writes. `shape` tells ops apart (the
  // caller's kind and algorithm); only ops of several microseconds and more come here, so a hash
  // lookup costs nothing.
  bool streaming(uint32_t shape, size_t bytes) {
    Bucket& b = buckets_[key(shape, bytes)];
    const uint64_t call = b.calls;
    b.trying = false;
    if (call == 0) return b.last = false;          // untimed: first touches and skew
    if (call <= 4) return b.last = call % 2 == 0;  // ordinary, streaming, ordinary, streaming
    const double ordinary = b.ways[0].least(), streamed = b.ways[1].least();
    const bool faster = streamed < kMargin * ordinary;
    if (faster == b.chosen) {
      b.trying = ++b.sinceOther >= exploreEvery(b.chosen ? ordinary / streamed : streamed / ordinary);
    } else if (call - b.ways[faster].lastCall <= kWindow) {
      b.chosen = faster;  // the other way is faster, and its figure is fresh
      b.sinceOther = 0;
    } else {
      b.trying = true;  // it looks faster, on a figure from before: tried now
    }
    if (b.trying) b.sinceOther = 0;
    return b.last = b.trying ? !b.chosen : b.chosen;
  }

  // Calls the chosen way between two the other way, when the other takes `slower` times as long.
  static uint32_t exploreEvery(double slower) {
    const double every = (slower - 1) / kExploreCost;
    if (!(every < kMaxExploreEvery)) return kMaxExploreEvery;  // NaN too: no figure yet
    return every > kMinExploreEvery ? static_cast<uint32_t>(every) : kMinExploreEvery;
  }

  // The op chosen by the last streaming() call for this shape and size took `us`.
  void record(uint32_t shape, size_t bytes, double us) {
    Bucket& b = buckets_[key(shape, bytes)];
    const uint64_t call = b.calls++;
    if (call == 0 || bytes == 0) return;
    // A try of the other way replaces its figure: the calls before it may be hundreds of calls
    // old, from another placement of the ranks.
    b.ways[b.last].add(us / static_cast<double>(bytes), call, b.trying);
  }

 private:
  // The last kWindow times of one way, in microseconds per byte.
  struct Way {
    double usPerByte[kWindow] = {};
    uint32_t n = 0;         // times in the window (at most kWindow), the newest at next - 1
    uint32_t next = 0;      // where the next time goes
    uint64_t lastCall = 0;  // the bucket's call that gave the newest
    void add(double x, uint64_t call, bool alone) {
      if (alone) n = next = 0;
      usPerByte[next] = x;
      next = (next + 1) % kWindow;
      n = std::min(n + 1, kWindow);
      lastCall = call;
    }
    double least() const {
      return n ? *std::min_element(usPerByte, usPerByte + n) : std::numeric_limits<double>::quiet_NaN();
    }
  };
  struct Bucket {
    uint64_t calls = 0;
    uint32_t sinceOther = 0;  // calls the chosen way since it was chosen or the other was tried
    bool chosen = false;      // the way the figures favour (false: ordinary)
    bool last = false;        // the way of the last call
    bool trying = false;      // the last call tried the other way
    Way ways[2];              // [0] ordinary, [1] streaming
  };
  static uint64_t key(uint32_t shape, size_t bytes) {
    return uint64_t{shape} << 8 | static_cast<uint64_t>(std::bit_width(bytes));  // log2, rounded up
  }
  std::unordered_map<uint64_t, Bucket> buckets_;
};

}  // namespace lockstep
