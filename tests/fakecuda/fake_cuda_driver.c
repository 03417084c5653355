/* A stand-in for libcuda.so.1 with the one entry point Lockstep's pointer check calls, so that
 * the check is tested end to end (dlopen with RTLD_NOLOAD, dlsym, the attribute call) on machines
 * without a GPU. Tests mark ordinary host ranges as device, pinned or managed memory. */
#include <stddef.h>
#include <stdint.h>

enum { kMaxRanges = 16, kAttrMemoryType = 2, kAttrIsManaged = 8 };

static struct {
  uintptr_t lo, hi;
  unsigned type, managed;
} ranges[kMaxRanges];
static int nranges;
static unsigned long long queries;

/* type: 1 host (pinned), 2 device; managed: 0 or 1. Not thread-safe: tests mark before they run. */
void fakeCudaMark(const void* p, size_t bytes, unsigned type, unsigned managed) {
  if (nranges == kMaxRanges) return;
  ranges[nranges].lo = (uintptr_t)p;
  ranges[nranges].hi = (uintptr_t)p + bytes;
  ranges[nranges].type = type;
  ranges[nranges].managed = managed;
  ++nranges;
}

unsigned long long fakeCudaQueries(void) { return __atomic_load_n(&queries, __ATOMIC_RELAXED); }

/* As the driver documents: unknown pointers get zeros and success. */
int cuPointerGetAttributes(unsigned num, int* attrs, void** data, unsigned long long ptr) {
  __atomic_fetch_add(&queries, 1, __ATOMIC_RELAXED);
  unsigned type = 0, managed = 0;
  for (int i = 0; i < nranges; ++i) {
    if (ptr >= ranges[i].lo && ptr < ranges[i].hi) {
      type = ranges[i].type;
      managed = ranges[i].managed;
    }
  }
  for (unsigned i = 0; i < num; ++i) {
    if (attrs[i] == kAttrMemoryType)
      *(unsigned*)data[i] = type;
    else if (attrs[i] == kAttrIsManaged)
      *(unsigned*)data[i] = managed;
    else
      return 1; /* CUDA_ERROR_INVALID_VALUE */
  }
  return 0;
}
