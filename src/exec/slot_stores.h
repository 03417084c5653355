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
// sysfs shows one L3 either way, and it changes while the job runs), so it times both.
//
// Every rank times both ways at the same calls. A rank's call mostly waits for what its peers
// send, so how fast a way is shows when the peers store that way too: a rank that tried
// streaming alone, beside a peer storing ordinarily, saw no gain, and both kept the slow way.
// The calls of a size are numbered alike on every rank (collectives are called in the same order
// everywhere), so the samples are fixed calls: after one untimed call, ordinary, streaming,
// ordinary, streaming; then streaming at every sampleEvery()-th call and ordinary halfway between.
// A way's figure is the least of its last kWindow samples (what a call waits for beyond its own
// work, a peer descheduled or the host's scheduling of the vCPUs, only ever adds time); each
// sample may change the choice, and streaming is chosen only under kMargin of ordinary stores'
// time. One sample of the slower way a period costs (r - 1) / sampleEvery() of the time where it
// is r times as slow (0.9 % at 2.2x and 128).
//
// Between samples, the chosen way's own calls are watched: when the least of its last kRecent
// is slow enough that the other way's figure beats it by the margin (peers now behind two L3s:
// ordinary stores 5x slower at once), the rank switches without waiting for the samples, which
// would take up to two periods (hundreds of calls of milliseconds each at large sizes); its peers
// see the same slowdown in the same few calls. The way it left is sampled again at the next
// multiple of kResampleEvery: a slow stretch of a few calls (these calls show stretches at 2-3x
// at 128 KiB), which switches where the ways are closer than that, costs at most that many.
//
// Each rank decides alone, from samples every rank took in the same calls, so the ranks mostly
// agree (not while one has switched on a stretch that the other did not see); a slot reads the
// same whatever filled it. Ops of different kinds or algorithms are timed apart, even at one
// size: a loop alternating two of them would otherwise time one way on the one and the other way
// on the other. Pure: the caller times the ops and reports them.
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
  // Calls between two samples of a way: 128, or 32 from 8 MiB, where calls take milliseconds and
  // streaming costs at most 1.3x where it is slower (so 1 % of the time either way).
  static constexpr uint64_t kSampleEvery = 128, kSampleEveryLarge = 32;
  static constexpr size_t kLargeBytes = size_t{8} << 20;
  static constexpr uint64_t sampleEvery(size_t bytes) {
    return bytes >= kLargeBytes ? kSampleEveryLarge : kSampleEvery;
  }
  static constexpr uint32_t kWindow = 2;  // samples of a way whose least time is its figure
  static constexpr uint32_t kRecent = 4;  // calls of the chosen way watched between samples
  // After the watch switched, the way it left is sampled again at the next multiple of this.
  static constexpr uint64_t kResampleEvery = 16;
  // Streaming must take less than this fraction of ordinary stores' time to be chosen. Where it
  // is worth it, it takes 0.2-0.4 (behind two L3s); where the ranks share one, 1.05-2.2, and a
  // call's time varies 2-3x from one dozen calls to the next.
  static constexpr double kMargin = 0.75;

  // Whether the next op of `bytes` streams its slot writes. `shape` tells ops apart (the
  // caller's kind and algorithm); only ops of several microseconds and more come here, so a hash
  // lookup costs nothing.
  bool streaming(uint32_t shape, size_t bytes) {
    Bucket& b = buckets_[key(shape, bytes)];
    const uint64_t call = b.calls, every = sampleEvery(bytes);
    b.sample = call > 0 && (call <= 4 || call % (every / 2) == 0);
    if (call == 0) return b.last = false;          // untimed: first touches and skew
    if (call <= 4) return b.last = call % 2 == 0;  // ordinary, streaming, ordinary, streaming
    if (b.sample) return b.last = call % every == 0;
    b.sample = b.resample && call % kResampleEvery == 0;
    return b.last = b.sample ? !b.chosen : b.chosen;
  }

  // An op of this shape and size that does not choose (it runs the default, ordinary stores,
  // untimed): counted all the same, so that the calls stay numbered alike on every rank when an
  // op chooses on one rank and not on another (run inline on one, in the background on another).
  void skip(uint32_t shape, size_t bytes) {
    Bucket& b = buckets_[key(shape, bytes)];
    ++b.calls;
    b.sample = false;
  }

  // The op chosen by the last streaming() call for this shape and size took `us`.
  void record(uint32_t shape, size_t bytes, double us) {
    Bucket& b = buckets_[key(shape, bytes)];
    if (b.calls++ == 0 || bytes == 0) return;
    const double x = us / static_cast<double>(bytes);
    bool choice = b.chosen;
    if (b.sample) {
      b.ways[b.last].add(x);
      if (b.last != b.chosen) b.resample = false;
      choice = b.ways[1].least() < kMargin * b.ways[0].least();
    } else {
      b.recent.add(x);
      if (b.recent.n >= kRecent) {
        const double now = b.recent.least(), other = b.ways[!b.chosen].least();
        choice = b.chosen ? now < kMargin * other : other < kMargin * now;
        // Leaving it, the way's figure is what its calls take now: its samples are older, and
        // compared with them, the other way would look slower at once and be left again. If
        // the slow calls were a hiccup and not the stores, the sample soon after shows it (a
        // hiccup of four calls would otherwise hold the slower way until the next sample, up
        // to a period later: 119 calls at 2-4x in one run).
        if (choice != b.chosen) {
          b.ways[b.chosen] = {};
          b.ways[b.chosen].add(now);
          b.resample = true;
        }
      }
    }
    if (choice != b.chosen) {
      b.chosen = choice;
      b.recent = {};
    }
  }

 private:
  // The last N times of one way, in microseconds per byte.
  template <uint32_t N>
  struct Times {
    double usPerByte[N] = {};
    uint32_t n = 0;  // times ever
    void add(double x) { usPerByte[n++ % N] = x; }
    double least() const {
      return n ? *std::min_element(usPerByte, usPerByte + std::min(n, N)) : std::numeric_limits<double>::quiet_NaN();
    }
  };
  struct Bucket {
    uint64_t calls = 0;
    bool chosen = false;     // the way between samples (false: ordinary)
    bool last = false;       // the way of the last call
    bool sample = false;     // the last call was a sample
    bool resample = false;   // the watch left a way, to be sampled again soon
    Times<kWindow> ways[2];  // samples: [0] ordinary, [1] streaming
    Times<kRecent> recent;   // the chosen way's calls since it was chosen
  };
  static uint64_t key(uint32_t shape, size_t bytes) {
    return uint64_t{shape} << 8 | static_cast<uint64_t>(std::bit_width(bytes));  // floor(log2) + 1
  }
  std::unordered_map<uint64_t, Bucket> buckets_;
};

}  // namespace lockstep
