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
// A way's time is the least of its last kWindow samples (what a call waits for beyond its own
// work, a peer descheduled or the host's scheduling of the vCPUs, only ever adds time), and every
// other call takes the faster way, streaming only if it takes under kMargin of ordinary stores'
// time. A change is followed within two periods; one sample of the slower way a period costs
// (r - 1) / sampleEvery() of the time where it is r times as slow (0.9 % at 2.2x and 128).
//
// Each rank decides alone, from samples every rank took in the same calls, so the ranks agree
// but for noise; a slot reads the same whatever filled it. Ops of different kinds or algorithms
// are timed apart, even at one size: a loop alternating two of them would otherwise time one
// way on the one and the other way on the other.
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
  // Calls between two samples of a way: 128, or 32 from 8 MiB, where calls take milliseconds and
  // streaming costs at most 1.3x where it is slower (so 1 % of the time either way).
  static constexpr uint64_t kSampleEvery = 128, kSampleEveryLarge = 32;
  static constexpr size_t kLargeBytes = size_t{8} << 20;
  static constexpr uint64_t sampleEvery(size_t bytes) {
    return bytes >= kLargeBytes ? kSampleEveryLarge : kSampleEvery;
  }
  static constexpr uint32_t kWindow = 2;  // samples of a way whose least time is its time
  // Streaming must take less than this fraction of ordinary stores' time to be chosen. Where it
  // is worth it, it takes 0.2-0.4 (behind two L3s); where the ranks share one, 1.05-2.2, and a
  // call's time varies 2-3x from one dozen calls to the next.
  static constexpr double kMargin = 0.75;

  // Whether the next op of `bytes` streams its slot writes. `shape` tells ops apart (the
  // caller's kind and algorithm); only ops of several microseconds and more come here, so a hash
  // lookup costs nothing.
  bool streaming(uint32_t shape, size_t bytes) {
    Bucket& b = buckets_[key(shape, bytes)];
    const uint64_t call = b.calls;
    const uint64_t every = sampleEvery(bytes);
    b.sample = call > 0 && (call <= 4 || call % (every / 2) == 0);
    if (call == 0) return b.last = false;          // untimed: first touches and skew
    if (call <= 4) return b.last = call % 2 == 0;  // ordinary, streaming, ordinary, streaming
    if (b.sample) return b.last = call % every == 0;
    return b.last = b.ways[1].least() < kMargin * b.ways[0].least();
  }

  // The op chosen by the last streaming() call for this shape and size took `us`.
  void record(uint32_t shape, size_t bytes, double us) {
    Bucket& b = buckets_[key(shape, bytes)];
    ++b.calls;
    if (b.sample && bytes > 0) b.ways[b.last].add(us / static_cast<double>(bytes));
  }

 private:
  // The last kWindow samples of one way, in microseconds per byte.
  struct Way {
    double usPerByte[kWindow] = {};
    uint32_t n = 0;  // samples ever
    void add(double x) { usPerByte[n++ % kWindow] = x; }
    double least() const {
      return n ? *std::min_element(usPerByte, usPerByte + std::min(n, kWindow))
               : std::numeric_limits<double>::quiet_NaN();
    }
  };
  struct Bucket {
    uint64_t calls = 0;
    bool last = false;    // the way of the last call
    bool sample = false;  // the last call was a sample
    Way ways[2];          // [0] ordinary, [1] streaming
  };
  static uint64_t key(uint32_t shape, size_t bytes) {
    return uint64_t{shape} << 8 | static_cast<uint64_t>(std::bit_width(bytes));  // log2, rounded up
  }
  std::unordered_map<uint64_t, Bucket> buckets_;
};

}  // namespace lockstep
