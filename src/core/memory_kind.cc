#include "src/core/memory_kind.h"

#include <cstdint>
#include <sstream>
#include <string>

#include "src/core/errors.h"

namespace lockstep {

namespace {

// CUpointer_attribute and CUmemorytype values, as cuda.h defines them.
constexpr int kAttrMemoryType = 2;   // CU_POINTER_ATTRIBUTE_MEMORY_TYPE
constexpr int kAttrIsManaged = 8;    // CU_POINTER_ATTRIBUTE_IS_MANAGED
constexpr uint32_t kTypeHost = 1;    // CU_MEMORYTYPE_HOST: pinned or registered host memory
constexpr uint32_t kTypeDevice = 2;  // CU_MEMORYTYPE_DEVICE

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

MemoryKind memoryKindOf(const void* p) {
  const CudaDriver* driver = cudaDriver();
  if (!driver || !p) return MemoryKind::kHost;
  uint32_t type = 0, managed = 0;
  int attrs[2] = {kAttrMemoryType, kAttrIsManaged};
  void* data[2] = {&type, &managed};
  // Unknown pointers come back as success with zeros; an error (driver not initialised, so no
  // CUDA allocation can exist yet) also means ordinary host memory.
  if (driver->pointerGetAttributes(2, attrs, data, reinterpret_cast<uintptr_t>(p)) != 0) return MemoryKind::kHost;
  if (managed) return MemoryKind::kManaged;
  if (type == kTypeDevice) return MemoryKind::kDevice;
  if (type == kTypeHost) return MemoryKind::kPinned;
  return MemoryKind::kHost;
}

MemoryKind checkBufferKinds(const BufferRole* buffers, size_t n, const char* op) {
  if (!cudaDriver()) return MemoryKind::kHost;  // no driver in this process: all host memory
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
  if (!device) return MemoryKind::kHost;
  if (host) {
    throw InvalidUsage(std::string(op) + ": " + device->name + " is CUDA device memory but " + host->name + " is " +
                       memoryKindName(hostKind) + "; the buffers of one call must be of one kind (copy first, or use " +
                       "pinned or managed memory for both)");
  }
  return MemoryKind::kDevice;
}

void checkDeviceAlignment(const BufferRole* buffers, size_t n, size_t elemBytes, const char* dtype, const char* op) {
  for (size_t i = 0; i < n; ++i) {
    const auto at = reinterpret_cast<uintptr_t>(buffers[i].ptr);
    if (!buffers[i].ptr || at % elemBytes == 0) continue;
    std::ostringstream why;
    why << op << ": " << buffers[i].name << " " << buffers[i].ptr << " is CUDA device memory " << at % elemBytes
        << " byte(s) off a " << elemBytes << "-byte " << dtype
        << " boundary: a GPU kernel cannot load it (start the buffer on a whole element)";
    throw InvalidArgument(why.str());
  }
}

}  // namespace lockstep
