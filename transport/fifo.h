// A single-producer single-consumer ring of fixed-size slots in memory both ends can see (shared
// memory between processes, or the heap between threads). The sender counts posted messages in
// `head`, the receiver counts released ones in `tail`; head - tail <= slots is the credit rule.
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

struct FifoHeader {
  uint32_t magic;
  uint32_t slots;
  uint64_t slotBytes;
  alignas(64) std::atomic<uint64_t> head;  // written by the sender
  alignas(64) std::atomic<uint64_t> tail;  // written by the receiver
  alignas(64) uint64_t sizes[kMaxSlots];   // payload bytes of each slot, set before head moves
  MessageTag tags[kMaxSlots];              // each slot's tag, set before head moves
};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared-memory FIFOs need lock-free atomics");

constexpr uint32_t kFifoMagic = 0x4f46534cu;  // "LSFO"

inline size_t fifoHeaderBytes() { return (sizeof(FifoHeader) + 4095) & ~size_t(4095); }
inline size_t fifoBytes(int slots, size_t slotBytes) { return fifoHeaderBytes() + slots * slotBytes; }

// Initialises a FIFO in zeroed memory of fifoBytes(slots, slotBytes).
inline FifoHeader* initFifo(void* mem, int slots, size_t slotBytes) {
  auto* h = new (mem) FifoHeader();
  h->slots = static_cast<uint32_t>(slots);
  h->slotBytes = slotBytes;
  h->head.store(0);
  h->tail.store(0);
  std::atomic_thread_fence(std::memory_order_release);
  h->magic = kFifoMagic;
  return h;
}

// A FIFO on the heap (threads of one process: inproc links, a rank's loopback link),
// page-aligned as the header's cache-line alignment requires, zeroed (which also pre-faults).
class HeapFifo {
 public:
  HeapFifo(int slots, size_t slotBytes) {
    size_t bytes = fifoBytes(slots, slotBytes);
    mem_ = std::aligned_alloc(4096, (bytes + 4095) & ~size_t(4095));
    if (!mem_) throw SystemError("aligned_alloc", ENOMEM, "allocating a FIFO");
    std::memset(mem_, 0, bytes);
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
      : h_(h), data_(reinterpret_cast<char*>(h) + fifoHeaderBytes()), slots_(slots), slotBytes_(slotBytes) {}

  void* trySlot() {
    if (head_ - tailSeen_ >= slots_) {
      tailSeen_ = h_->tail.load(std::memory_order_acquire);
      if (head_ - tailSeen_ >= slots_) return nullptr;
    }
    return data_ + (head_ % slots_) * slotBytes_;
  }
  void post(size_t bytes, const MessageTag& tag) {
    h_->sizes[head_ % slots_] = bytes;
    h_->tags[head_ % slots_] = tag;
    h_->head.store(++head_, std::memory_order_release);
  }

 private:
  FifoHeader* h_ = nullptr;
  char* data_ = nullptr;
  uint64_t slots_ = 0, slotBytes_ = 0, head_ = 0, tailSeen_ = 0;
};

class FifoReceiver {
 public:
  FifoReceiver() = default;
  FifoReceiver(FifoHeader* h, int slots, size_t slotBytes)
      : h_(h), data_(reinterpret_cast<char*>(h) + fifoHeaderBytes()), slots_(slots), slotBytes_(slotBytes) {}

  // Returns the next slot, its size and tag, or nullptr. Both are the peer's word: callers check.
  const void* tryRecv(size_t* bytes, MessageTag* tag) {
    if (tail_ == headSeen_) {
      headSeen_ = h_->head.load(std::memory_order_acquire);
      if (tail_ == headSeen_) return nullptr;
    }
    *bytes = h_->sizes[tail_ % slots_];
    *tag = h_->tags[tail_ % slots_];
    return data_ + (tail_ % slots_) * slotBytes_;
  }
  void release() { h_->tail.store(++tail_, std::memory_order_release); }
  size_t slotBytes() const { return slotBytes_; }

 private:
  FifoHeader* h_ = nullptr;
  const char* data_ = nullptr;
  uint64_t slots_ = 0, slotBytes_ = 0, tail_ = 0, headSeen_ = 0;
};

}  // namespace lockstep
