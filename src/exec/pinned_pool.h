// Pinned host memory for staging device buffers, reused across calls: a training loop makes the
// same calls again, so after the first iteration every acquire finds a free block and nothing
// is allocated (cuMemHostAlloc costs milliseconds and pins pages).
//
// A block is acquired on the calling thread and released by the CUDA stream (a host function
// that runs once the stream has copied the result out), so in-use flags are atomics.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "src/exec/cuda_driver.h"

namespace lockstep {

struct PinnedBlock {
  char* data = nullptr;
  size_t bytes = 0;
  std::atomic<bool> inUse{false};
};

class PinnedPool {
 public:
  // `flags`: cuMemHostAlloc's (kCuMemHostAllocDeviceMap for memory kernels read in place).
  explicit PinnedPool(const CudaDriver& driver, unsigned flags = kCuMemHostAllocPortable)
      : driver_(driver), flags_(flags) {}
  // Frees every block left (see freeAll).
  ~PinnedPool() { freeAll(); }
  PinnedPool(const PinnedPool&) = delete;
  PinnedPool& operator=(const PinnedPool&) = delete;

  // The smallest free block of at least `bytes`, or a new one (sizes rounded up to a power of
  // two from 64 KiB, so a loop's few sizes share a few blocks). Throws on allocation failure.
  PinnedBlock* acquire(size_t bytes);
  static void release(PinnedBlock* b) { b->inUse.store(false, std::memory_order_release); }

  // Frees every block not in use; one still in use is kept for good (a stream may still use it:
  // its release was never enqueued). The caller waits for the streams first (StreamOrder's
  // destructor does) and makes the allocating context current.
  void freeAll();
  // Keeps the memory and the blocks (a stream that never finished may still read the one and
  // release the other): for a destroy that could not drain.
  void leak();

 private:
  const CudaDriver& driver_;
  const unsigned flags_;
  std::mutex mu_;
  std::vector<std::unique_ptr<PinnedBlock>> blocks_;
};

}  // namespace lockstep
