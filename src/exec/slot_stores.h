// Whether a large op writes its send slots with ordinary or with streaming stores, chosen by
// timing both.
//
// Ordinary stores leave the slot in the sender's cache, where a peer sharing that cache reads
// it fastest. A peer behind another last-level cache (another die of an EPYC) must then pull
// every line across, dirty, from the sender's die: on the development VM, whose two vCPUs move
// between sharing one L3 and sitting on two, a 2-rank 64 MiB all-reduce ran at 7.5-7.9 GB/s in
// the first case and 2.1-2.4 in the second. Streaming stores send the slot to memory, which the
// peer then reads at memory speed; reductions bound for a slot are made in a scratch buffer of
// the rank's own first (apply.h), so that both halves of a ring travel that way: 6.0-6.4 GB/s
// behind two L3s, a little below ordinary stores sharing one. The rank
// cannot see which case it is in (the VM's sysfs shows one L3 either way, and it changes while
// the job runs), so it times both: per size, after one untimed call, two calls each way, then the
// faster way (streaming only if kMargin faster), with every kExploreEvery-th call the other way
// so that a change is followed.
//
// Each rank chooses alone: the receiver reads a slot the same way whatever stores filled it.
// Ops of different kinds or algorithms are timed apart, even at one size: a loop alternating two
// of them would otherwise time one way on the one and the other way on the other.
// Pure: the caller times the ops and reports them.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <unordered_map>

namespace lockstep {

class SlotStores {
 public:
  static constexpr uint32_t kExploreEvery = 16;
  static constexpr double kWeight = 0.25;  // of the newest time in a way's running average
  // Streaming must be this much faster to be kept: ordinary stores are the default, and the
  // two ways' first averages rest on two calls each.
  static constexpr double kMargin = 0.95;

  // Whether the next op of `bytes` streams its slot writes. `shape` tells ops apart (the
  // caller's kind and algorithm); only large ops come here, so a hash lookup costs nothing.
  bool streaming(uint32_t shape, size_t bytes) {
    Bucket& b = buckets_[key(shape, bytes)];
    const uint32_t call = b.calls;
    bool way;
    if (call == 0) {
      way = false;  // untimed: first touches and skew
    } else if (call <= 4) {
      way = call % 2 == 0;  // ordinary, streaming, ordinary, streaming
    } else {
      way = b.usPerByte[1] < kMargin * b.usPerByte[0];
      if (call % kExploreEvery == 0) way = !way;
    }
    b.last = way;
    return way;
  }

  // The op chosen by the last streaming() call for this shape and size took `us`.
  void record(uint32_t shape, size_t bytes, double us) {
    Bucket& b = buckets_[key(shape, bytes)];
    if (b.calls++ == 0 || bytes == 0) return;
    double& avg = b.usPerByte[b.last];
    const double x = us / static_cast<double>(bytes);
    avg = avg == 0 ? x : (1 - kWeight) * avg + kWeight * x;
  }

 private:
  struct Bucket {
    uint32_t calls = 0;
    bool last = false;
    double usPerByte[2] = {0, 0};  // running averages: [0] ordinary, [1] streaming
  };
  static uint64_t key(uint32_t shape, size_t bytes) {
    return uint64_t{shape} << 8 | static_cast<uint64_t>(std::bit_width(bytes));  // log2, rounded up
  }
  std::unordered_map<uint64_t, Bucket> buckets_;
};

}  // namespace lockstep
