// What kind of memory a user buffer is: host, pinned host, CUDA managed or CUDA device.
//
// The host library never links CUDA. It asks the CUDA driver only when the process has already
// loaded it (dlopen with RTLD_NOLOAD): a process without libcuda.so.1 cannot hold device memory,
// so every pointer is host memory there and the check costs a load of a cached pointer.
#pragma once

#include <cstddef>

#include "src/exec/cuda_driver.h"

namespace lockstep {

enum class MemoryKind { kHost, kPinned, kManaged, kDevice };

const char* memoryKindName(MemoryKind k);

// Host-accessible kinds run on the host path as they are; device memory needs the CUDA path.
inline bool hostAccessible(MemoryKind k) { return k != MemoryKind::kDevice; }

// Classifies p through the CUDA driver when this process has loaded it, else kHost.
MemoryKind memoryKindOf(const void* p);

// The buffers of one call, by role ("sendbuff", "recvbuff"): kDevice when they are all device
// memory (the call takes the device path), else kHost (every kind the host path reads as it
// is). Throws InvalidUsage naming the roles and kinds when device memory is mixed with host
// memory. nullptr buffers (count 0, non-root) are skipped.
struct BufferRole {
  const void* ptr;
  const char* name;
};
MemoryKind checkBufferKinds(const BufferRole* buffers, size_t n, const char* op);
// Device buffers only: each must start on a whole element. A GPU kernel's load of a float at an
// address 2 mod 4 is a misaligned-address fault, which ends the whole process's CUDA context
// (the host path reads any address).
void checkDeviceAlignment(const BufferRole* buffers, size_t n, size_t elemBytes, const char* dtype, const char* op);

}  // namespace lockstep
