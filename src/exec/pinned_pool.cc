#include "src/exec/pinned_pool.h"

#include <algorithm>
#include <bit>

#include "src/core/keep.h"

namespace lockstep {

void PinnedPool::freeAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& b : blocks_) {
    // A block still in use was handed to a stream that may yet read or write it (its release
    // never got enqueued, say): kept, with its memory.
    if (b->inUse.load(std::memory_order_acquire)) {
      keepForever(b.release());
      continue;
    }
    if (b->data) driver_.memFreeHost(b->data);  // a failure here has nobody to report to
  }
  blocks_.clear();
}

PinnedBlock* PinnedPool::acquire(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  PinnedBlock* best = nullptr;
  for (auto& b : blocks_) {
    if (b->bytes < bytes || b->inUse.load(std::memory_order_acquire)) continue;
    if (!best || b->bytes < best->bytes) best = b.get();
  }
  if (!best) {
    auto b = std::make_unique<PinnedBlock>();
    b->bytes = std::bit_ceil(std::max<size_t>(bytes, size_t{64} << 10));
    void* p = nullptr;
    driver_.check(driver_.memHostAlloc(&p, b->bytes, flags_), "cuMemHostAlloc (staging)");
    b->data = static_cast<char*>(p);
    best = b.get();
    blocks_.push_back(std::move(b));
  }
  best->inUse.store(true, std::memory_order_relaxed);
  return best;
}

void PinnedPool::leak() {
  std::lock_guard<std::mutex> lock(mu_);
  // The blocks themselves too: a stream's host function may still release one (PinnedPool::release).
  for (auto& b : blocks_) keepForever(b.release());
  blocks_.clear();
}

}  // namespace lockstep
