#include "src/core/memory_kind.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "src/core/errors.h"

namespace lockstep {

namespace {

// The few driver-API names used here, spelled as in cuda.h so that no CUDA header is needed.
using CuPointerGetAttributes = int (*)(unsigned numAttributes, int* attributes, void** data, unsigned long long ptr);
constexpr int kAttrMemoryType = 2;   // CU_POINTER_ATTRIBUTE_MEMORY_TYPE
constexpr int kAttrIsManaged = 8;    // CU_POINTER_ATTRIBUTE_IS_MANAGED
constexpr uint32_t kTypeHost = 1;    // CU_MEMORYTYPE_HOST: pinned or registered host memory
constexpr uint32_t kTypeDevice = 2;  // CU_MEMORYTYPE_DEVICE

std::atomic<CuPointerGetAttributes> gQuery{nullptr};

}  // namespace

const char* memoryKindName(MemoryKind k) {
  switch (k) {
    case MemoryKind::kHost:
      return "host memory";
    case MemoryKind::kPinned:
      return "pinned host memory";
    case MemoryKind::kManaged:
      return "CUDA managed memory";
    case MemoryKind::kDevice:
      return "CUDA device memory";
  }
  return "?";
}

void refreshCudaDriver() {
  if (gQuery.load(std::memory_order_acquire)) return;
  // RTLD_NOLOAD: only a driver the process already has. Loading it here would cost a host-only
  // process tens of megabytes and, on a machine with a GPU, a CUDA context it never asked for.
  void* lib = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (!lib) return;
  // The handle is kept: the driver is never unloaded once a process has it.
  auto f = reinterpret_cast<CuPointerGetAttributes>(::dlsym(lib, "cuPointerGetAttributes"));
  if (f) gQuery.store(f, std::memory_order_release);
}

MemoryKind memoryKindOf(const void* p) {
  CuPointerGetAttributes query = gQuery.load(std::memory_order_acquire);
  if (!query || !p) return MemoryKind::kHost;
  uint32_t type = 0, managed = 0;
  int attrs[2] = {kAttrMemoryType, kAttrIsManaged};
  void* data[2] = {&type, &managed};
  // Unknown pointers come back as success with zeros; an error (driver not initialised, so no
  // CUDA allocation can exist yet) also means ordinary host memory.
  if (query(2, attrs, data, reinterpret_cast<uintptr_t>(p)) != 0) return MemoryKind::kHost;
  if (managed) return MemoryKind::kManaged;
  if (type == kTypeDevice) return MemoryKind::kDevice;
  if (type == kTypeHost) return MemoryKind::kPinned;
  return MemoryKind::kHost;
}

void checkBufferKinds(const BufferRole* buffers, size_t n, const char* op) {
  if (!gQuery.load(std::memory_order_relaxed)) return;  // no driver in this process: all host memory
  const BufferRole* device = nullptr;
  const BufferRole* host = nullptr;
  MemoryKind hostKind = MemoryKind::kHost;
  for (size_t i = 0; i < n; ++i) {
    if (!buffers[i].ptr) continue;
    MemoryKind k = memoryKindOf(buffers[i].ptr);
    if (!hostAccessible(k)) {
      device = device ? device : &buffers[i];
    } else if (!host) {
      host = &buffers[i];
      hostKind = k;
    }
  }
  if (!device) return;
  if (host) {
    throw InvalidUsage(std::string(op) + ": " + device->name + " is CUDA device memory but " + host->name + " is " +
                       memoryKindName(hostKind) + "; the buffers of one call must be of one kind (copy first, or use " +
                       "pinned or managed memory for both)");
  }
  throw InvalidUsage(std::string(op) + ": " + device->name +
                     " is CUDA device memory, and this version runs collectives on host memory only (pinned, "
                     "managed or ordinary); device buffers are not supported yet");
}

}  // namespace lockstep
