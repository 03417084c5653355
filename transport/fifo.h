// A single-producer single-consumer ring of fixed-size slots in memory both ends can see (shared
// memory between processes, or the heap between threads).
//
// Each slot has a cache line of metadata: the message's sequence number (1, 2, ... in posting
// order), its size and its tag. The sender fills the slot, then the line, and publishes the
// sequence number last (release); the receiver polls only that line (acquire). So a message
// costs one metadata line moving between cores, not a shared head counter plus a size plus a
// tag. The receiver counts released messages in `tail`; posted - tail <= slots is the credit
// rule, and the sender rereads tail only when it has run out of credits.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "src/core/errors.h"
#include "transport/transport.h"

namespace lockstep {

constexpr int kMaxSlots = 64;

// Messages of at most this many bytes travel inside their metadata line: the receiver then reads
// one cache line from the sender's core instead of two (the small-message latency).
constexpr size_t kInlineBytes = 24;

struct alignas(64) SlotMeta {
  std::atomic<uint64_t> seq;  // the number of the message in the slot; written last
  uint64_t bytes;             // payload bytes
  MessageTag tag;
  unsigned char inlined[kInlineBytes];  // the payload itself when bytes <= kInlineBytes
};
static_assert(sizeof(SlotMeta) == 64, "a slot's metadata is one cache line");

struct FifoHeader {
  uint32_t magic;
  uint32_t slots;
  uint64_t slotBytes;
  alignas(64) std::atomic<uint64_t> tail;  // messages released, written by the receiver
  // Sleeping and waking (fifoSleep / fifoRing): a futex word, and how many ends sleep on it. Only
  // one end can be waiting at a time (for a message: the FIFO is empty; for a slot: it is full).
  alignas(64) std::atomic<uint32_t> bell;
  std::atomic<uint32_t> sleepers;
  SlotMeta meta[kMaxSlots];
};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared-memory FIFOs need lock-free atomics");
static_assert(sizeof(std::atomic<uint32_t>) == 4, "futex words are 32 bits");

// Publishing and sleeping. An end publishes a message (its seq) or a freed slot (tail), then reads
// `sleepers` to see whether the other end needs waking (fifoPublish). The other end, before it
// sleeps, counts itself in `sleepers`, then checks once more that nothing arrived (fifoSleep).
// Either the sleeper sees the news or the publisher sees the sleeper, provided each side's write
// is ordered before its read: a store-load fence on both sides (Dekker).
//
// With membarrier(2) the publisher's fence moves to the sleeper: after counting itself, the
// sleeper makes every thread of every registered process execute a full barrier, so the
// publisher's earlier store is visible to the recheck, or its later read of `sleepers` sees the
// count. The publisher then publishes with a plain store. A locked exchange would stall it until
// it owns the peer's cache line, a cross-core round trip on every message, where the sleeper's
// barrier costs about 0.5 us on a path about to sleep for 20 us or more.
//
// True once this process is registered for MEMBARRIER_CMD_GLOBAL_EXPEDITED (Linux 4.16): its
// ends publish with plain stores. Without it they publish with a seq_cst exchange.
bool fifoLightPublish();
// The sleeper's barrier. False where membarrier is unavailable. Peers on one host share a kernel,
// so a process that could not register expects the same of its peers, which then publish with
// the exchange. (One whose peers registered where it could not, under other seccomp filters, may
// be woken late: by the bound of its sleep, 0.5 ms at most in the executor.)
bool fifoSleeperFence();
// Wakes the other end if it sleeps on this FIFO.
void fifoRing(FifoHeader* h);
// Sleeps for at most `ns` unless ready() already holds, and returns early when the other end
// rings. The peer's word (it may write these counters) can only cause an early or a late wake,
// both bounded by `ns`.
template <typename Ready>
void fifoSleep(FifoHeader* h, long ns, Ready&& ready);
void futexWait(std::atomic<uint32_t>* word, uint32_t expected, long ns);
void futexWakeAll(std::atomic<uint32_t>* word);

// How long a sleeper sleeps at most when its barrier failed although this process registered
// (its peers then publish with plain stores): a wake-up it could miss costs no more than this.
constexpr long kUnfencedSleepNs = 50'000;

template <typename Ready>
void fifoSleep(FifoHeader* h, long ns, Ready&& ready) {
  const uint32_t seen = h->bell.load(std::memory_order_relaxed);
  h->sleepers.fetch_add(1, std::memory_order_seq_cst);
  if (!fifoSleeperFence() && fifoLightPublish() && ns > kUnfencedSleepNs) ns = kUnfencedSleepNs;
  if (!ready()) futexWait(&h->bell, seen, ns);
  h->sleepers.fetch_sub(1, std::memory_order_relaxed);
}

inline void fifoRing(FifoHeader* h) {
  if (h->sleepers.load(std::memory_order_seq_cst) != 0) {
    h->bell.fetch_add(1, std::memory_order_relaxed);
    futexWakeAll(&h->bell);
  }
}

// Publishes `value` in `word` (a slot's seq or the tail) and wakes a sleeping peer.
inline void fifoPublish(FifoHeader* h, std::atomic<uint64_t>& word, uint64_t value, bool light) {
  if (light) {
    word.store(value, std::memory_order_release);
    // Only the compiler must keep the store before fifoRing's read: the sleeper's membarrier
    // orders them for the CPU.
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    // One locked instruction on x86, cheaper than a store and a fence; seq_cst, as is fifoRing's
    // read, against the sleeper's seq_cst increment.
    word.exchange(value, std::memory_order_seq_cst);
  }
  fifoRing(h);
}

constexpr uint32_t kFifoMagic = 0x4f46534cu;  // "LSFO"

inline size_t fifoHeaderBytes() { return (sizeof(FifoHeader) + 4095) & ~size_t(4095); }
inline size_t fifoBytes(int slots, size_t slotBytes) { return fifoHeaderBytes() + slots * slotBytes; }

// Initialises a FIFO in zeroed memory of fifoBytes(slots, slotBytes).
inline FifoHeader* initFifo(void* mem, int slots, size_t slotBytes) {
  auto* h = new (mem) FifoHeader();
  h->slots = static_cast<uint32_t>(slots);
  h->slotBytes = slotBytes;
  h->tail.store(0);
  h->bell.store(0);
  h->sleepers.store(0);
  for (auto& m : h->meta) m.seq.store(0);
  std::atomic_thread_fence(std::memory_order_release);
  h->magic = kFifoMagic;
  return h;
}

// A FIFO on the heap (threads of one process: inproc links, a rank's loopback link),
// page-aligned as the header's cache-line alignment requires. Its slots are zeroed, which
// pre-faults them, unless `prefault` is false: a rank's loopback link, rarely used, then costs
// no memory until a message to itself touches it (at the largest LOCKSTEP_SLOTS x
// LOCKSTEP_SLOT_BYTES, 4 GiB per communicator: the out-of-memory killer ended the init).
class HeapFifo {
 public:
  HeapFifo(int slots, size_t slotBytes, bool prefault = true) {
    size_t bytes = fifoBytes(slots, slotBytes);
    mem_ = std::aligned_alloc(4096, (bytes + 4095) & ~size_t(4095));
    if (!mem_) throw SystemError("aligned_alloc", ENOMEM, "allocating a FIFO");
    std::memset(mem_, 0, prefault ? bytes : fifoHeaderBytes());
    header = initFifo(mem_, slots, slotBytes);
  }
  ~HeapFifo() { std::free(mem_); }
  HeapFifo(const HeapFifo&) = delete;
  HeapFifo& operator=(const HeapFifo&) = delete;
  FifoHeader* header;

 private:
  void* mem_;
};

// Checks memory the peer initialised before trusting its geometry.
inline FifoHeader* attachFifo(void* mem, int slots, size_t slotBytes) {
  auto* h = static_cast<FifoHeader*>(mem);
  if (h->magic != kFifoMagic || h->slots != static_cast<uint32_t>(slots) || h->slotBytes != slotBytes) {
    throw InternalError("shared FIFO has unexpected geometry");
  }
  return h;
}

// Both ends take the geometry from their own Config, never from the shared header: the peer can
// write that memory, and a bad value would send this process out of bounds.
class FifoSender {
 public:
  FifoSender() = default;
  FifoSender(FifoHeader* h, int slots, size_t slotBytes)
      : h_(h),
        data_(reinterpret_cast<char*>(h) + fifoHeaderBytes()),
        slots_(slots),
        slotBytes_(slotBytes),
        light_(fifoLightPublish()) {}

  void* trySlot() {
    if (head_ - tailSeen_ >= slots_) {
      tailSeen_ = h_->tail.load(std::memory_order_acquire);
      if (head_ - tailSeen_ >= slots_) return nullptr;
    }
    return data_ + slot_ * slotBytes_;
  }
  void post(size_t bytes, const MessageTag& tag) {
    SlotMeta& m = h_->meta[slot_];
    m.bytes = bytes;
    m.tag = tag;
    if (bytes <= kInlineBytes) std::memcpy(m.inlined, data_ + slot_ * slotBytes_, bytes);
    if (++slot_ == slots_) slot_ = 0;
    fifoPublish(h_, m.seq, ++head_, light_);
  }
  // Sleeps until a slot may be free (see fifoSleep).
  void sleep(long ns) {
    fifoSleep(h_, ns, [&] { return head_ - h_->tail.load(std::memory_order_seq_cst) < slots_; });
  }

 private:
  FifoHeader* h_ = nullptr;
  char* data_ = nullptr;
  uint64_t slots_ = 0, slotBytes_ = 0, head_ = 0, tailSeen_ = 0;
  uint64_t slot_ = 0;  // head_ % slots_, kept apart: a division per message costs more than the rest of it
  bool light_ = false;
};

class FifoReceiver {
 public:
  FifoReceiver() = default;
  FifoReceiver(FifoHeader* h, int slots, size_t slotBytes)
      : h_(h),
        data_(reinterpret_cast<char*>(h) + fifoHeaderBytes()),
        slots_(slots),
        slotBytes_(slotBytes),
        light_(fifoLightPublish()) {}

  // Returns the next slot, its size and tag, or nullptr. Both are the peer's word: callers check.
  const void* tryRecv(size_t* bytes, MessageTag* tag) {
    const SlotMeta& m = h_->meta[slot_];
    if (m.seq.load(std::memory_order_acquire) != tail_ + 1) return nullptr;
    *bytes = m.bytes;
    *tag = m.tag;
    if (*bytes <= kInlineBytes) return m.inlined;
    return data_ + slot_ * slotBytes_;
  }
  void release() {
    if (++slot_ == slots_) slot_ = 0;
    fifoPublish(h_, h_->tail, ++tail_, light_);
  }
  // Sleeps until a message may have arrived (see fifoSleep).
  void sleep(long ns) {
    fifoSleep(h_, ns, [&] { return h_->meta[slot_].seq.load(std::memory_order_seq_cst) == tail_ + 1; });
  }
  size_t slotBytes() const { return slotBytes_; }

 private:
  FifoHeader* h_ = nullptr;
  const char* data_ = nullptr;
  uint64_t slots_ = 0, slotBytes_ = 0, tail_ = 0;
  uint64_t slot_ = 0;  // tail_ % slots_
  bool light_ = false;
};

}  // namespace lockstep
