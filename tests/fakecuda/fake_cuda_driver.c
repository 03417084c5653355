/* A stand-in for libcuda.so.1 with the entry points Lockstep calls, so that pointer classification
 * and the stream-ordered device path run end to end (dlopen with RTLD_NOLOAD, dlsym, the calls
 * themselves) on machines without a GPU.
 *
 * "Device memory" is host memory the test allocates with fakeCudaMalloc (or marks); a stream is
 * a thread that runs its commands in order, as a CUDA stream does: copies, host functions, and
 * waits on a 32-bit word. Copies check their directions as the driver would (a device-to-host
 * copy must read device memory and write host memory), so a mix-up fails instead of passing.
 *
 * cuMemAlloc memory is a shared mapping of a memfd, so that its IPC handle (the owner's pid and
 * descriptor) opens in another process through /proc/<pid>/fd, as a real IPC handle maps the
 * same device memory there; like the driver, a process cannot open its own handle. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum {
  kMaxRanges = 4096,
  kAttrMemoryType = 2,
  kAttrIsManaged = 8,
  kTypeHost = 1,
  kTypeDevice = 2,
  kInvalidValue = 1,
  kInvalidHandle = 400,
  kStreamMagic = 0x57EA
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  uintptr_t lo, hi;
  unsigned type, managed;
} ranges[kMaxRanges];
static int nranges;
static unsigned long long queries, hostAllocs;
static long hostLive;

/* type: 1 host (pinned), 2 device; managed: 0 or 1. */
void fakeCudaMark(const void* p, size_t bytes, unsigned type, unsigned managed) {
  pthread_mutex_lock(&mu);
  if (nranges < kMaxRanges) {
    ranges[nranges].lo = (uintptr_t)p;
    ranges[nranges].hi = (uintptr_t)p + bytes;
    ranges[nranges].type = type;
    ranges[nranges].managed = managed;
    ++nranges;
  }
  pthread_mutex_unlock(&mu);
}

static void unmark(const void* p) {
  pthread_mutex_lock(&mu);
  for (int i = 0; i < nranges; ++i) {
    if (ranges[i].lo == (uintptr_t)p) {
      ranges[i] = ranges[--nranges];
      break;
    }
  }
  pthread_mutex_unlock(&mu);
}

/* The type of the range holding [p, p + bytes), or 0 (ordinary memory). */
static unsigned typeOf(uintptr_t p, size_t bytes, unsigned* managed) {
  unsigned type = 0;
  pthread_mutex_lock(&mu);
  for (int i = 0; i < nranges; ++i) {
    if (p >= ranges[i].lo && p + bytes <= ranges[i].hi && p < ranges[i].hi) {
      type = ranges[i].type;
      if (managed) *managed = ranges[i].managed;
    }
  }
  pthread_mutex_unlock(&mu);
  return type;
}

unsigned long long fakeCudaQueries(void) { return __atomic_load_n(&queries, __ATOMIC_RELAXED); }
unsigned long long fakeCudaHostAllocs(void) { return __atomic_load_n(&hostAllocs, __ATOMIC_RELAXED); }
long fakeCudaHostLive(void) { return __atomic_load_n(&hostLive, __ATOMIC_RELAXED); }

void* fakeCudaMalloc(size_t bytes) {
  void* p = malloc(bytes ? bytes : 1);
  fakeCudaMark(p, bytes ? bytes : 1, kTypeDevice, 0);
  return p;
}

void fakeCudaFree(void* p) {
  unmark(p);
  free(p);
}

/* As the driver documents: unknown pointers get zeros and success. */
int cuPointerGetAttributes(unsigned num, int* attrs, void** data, unsigned long long ptr) {
  __atomic_fetch_add(&queries, 1, __ATOMIC_RELAXED);
  unsigned managed = 0;
  unsigned type = typeOf((uintptr_t)ptr, 1, &managed);
  for (unsigned i = 0; i < num; ++i) {
    if (attrs[i] == kAttrMemoryType)
      *(unsigned*)data[i] = type;
    else if (attrs[i] == kAttrIsManaged)
      *(unsigned*)data[i] = managed;
    else
      return kInvalidValue;
  }
  return 0;
}

int cuMemHostAlloc(void** pp, size_t bytes, unsigned flags) {
  (void)flags;
  void* p = NULL;
  if (posix_memalign(&p, 4096, bytes ? bytes : 1) != 0) return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
  memset(p, 0, bytes);
  fakeCudaMark(p, bytes, kTypeHost, 0);
  __atomic_fetch_add(&hostAllocs, 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&hostLive, 1, __ATOMIC_RELAXED);
  *pp = p;
  return 0;
}

int cuMemFreeHost(void* p) {
  if (typeOf((uintptr_t)p, 1, NULL) != kTypeHost) return kInvalidValue;
  unmark(p);
  free(p);
  __atomic_fetch_sub(&hostLive, 1, __ATOMIC_RELAXED);
  return 0;
}

int cuMemHostGetDevicePointer_v2(unsigned long long* dptr, void* p, unsigned flags) {
  if (flags != 0 || typeOf((uintptr_t)p, 4, NULL) != kTypeHost) return kInvalidValue;
  *dptr = (uintptr_t)p; /* unified addressing: the same address */
  return 0;
}

int cuGetErrorString(int r, const char** text) {
  *text = r == kInvalidValue ? "invalid argument" : r == kInvalidHandle ? "invalid resource handle" : "fake error";
  return 0;
}

/* ---- streams ---- */

enum CmdKind { kCopy, kHostFn, kWait32, kHold };
struct Cmd {
  enum CmdKind kind;
  void *dst, *src;
  size_t bytes;
  void (*fn)(void*);
  void* user;
  uint32_t value;
  struct Cmd* next;
};
struct Stream {
  int magic;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct Cmd *head, *tail;
  int busy, stop;
  unsigned resumed; /* the n-th kHold command waits until resumed reaches n */
  int capturing;    /* what cuStreamIsCapturing reports (fakeCudaStreamSetCapturing) */
  int failHostFnIn; /* > 0: the failHostFnIn-th next cuLaunchHostFunc fails (fakeCudaStreamFailHostFunc) */
  pthread_t thread;
};

static void pauseBriefly(void) {
  struct timespec ts = {0, 20000};
  nanosleep(&ts, NULL);
}

static void* streamMain(void* arg) {
  struct Stream* s = arg;
  unsigned holdsSeen = 0;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->head && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
    if (!s->head) break;
    struct Cmd* c = s->head;
    s->head = c->next;
    if (!s->head) s->tail = NULL;
    s->busy = 1;
    pthread_mutex_unlock(&s->mu);
    switch (c->kind) {
      case kCopy:
        memcpy(c->dst, c->src, c->bytes);
        break;
      case kHostFn:
        c->fn(c->user);
        break;
      case kWait32: /* (int32_t)(*addr - value) >= 0, as CU_STREAM_WAIT_VALUE_GEQ */
        while ((int32_t)(__atomic_load_n((uint32_t*)c->dst, __ATOMIC_ACQUIRE) - c->value) < 0) pauseBriefly();
        break;
      case kHold:
        ++holdsSeen;
        for (;;) {
          pthread_mutex_lock(&s->mu);
          unsigned resumed = s->resumed;
          pthread_mutex_unlock(&s->mu);
          if (resumed >= holdsSeen) break;
          pauseBriefly();
        }
        break;
    }
    free(c);
    pthread_mutex_lock(&s->mu);
    s->busy = 0;
    pthread_cond_broadcast(&s->cv);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

void* fakeCudaStreamCreate(void) {
  struct Stream* s = calloc(1, sizeof(*s));
  s->magic = kStreamMagic;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_create(&s->thread, NULL, streamMain, s);
  return s;
}

/* The legacy default stream (stream NULL), created on first use and kept. */
static struct Stream* defaultStream;
static pthread_once_t defaultOnce = PTHREAD_ONCE_INIT;
static void makeDefault(void) { defaultStream = fakeCudaStreamCreate(); }

static struct Stream* streamOf(void* h) {
  if (!h) {
    pthread_once(&defaultOnce, makeDefault);
    return defaultStream;
  }
  struct Stream* s = h;
  return s->magic == kStreamMagic ? s : NULL;
}

static int push(void* h, struct Cmd c) {
  struct Stream* s = streamOf(h);
  if (!s) return kInvalidHandle;
  struct Cmd* n = malloc(sizeof(*n));
  *n = c;
  n->next = NULL;
  pthread_mutex_lock(&s->mu);
  if (s->tail)
    s->tail->next = n;
  else
    s->head = n;
  s->tail = n;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

/* Returns once every command queued so far has run, as cuStreamSynchronize. */
int fakeCudaStreamSynchronize(void* h) {
  struct Stream* s = streamOf(h);
  if (!s) return kInvalidHandle;
  pthread_mutex_lock(&s->mu);
  while (s->head || s->busy) pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

/* As fakeCudaStreamSynchronize, but gives up after ms milliseconds: returns 1 then, so that a
 * test of a stream that must not be left waiting fails instead of hanging. */
int fakeCudaStreamSynchronizeFor(void* h, long ms) {
  struct Stream* s = streamOf(h);
  if (!s) return kInvalidHandle;
  struct timespec end;
  clock_gettime(CLOCK_REALTIME, &end);
  end.tv_sec += ms / 1000;
  end.tv_nsec += (ms % 1000) * 1000000L;
  if (end.tv_nsec >= 1000000000L) {
    end.tv_sec += 1;
    end.tv_nsec -= 1000000000L;
  }
  int rc = 0;
  pthread_mutex_lock(&s->mu);
  while ((s->head || s->busy) && rc == 0) rc = pthread_cond_timedwait(&s->cv, &s->mu, &end);
  int stuck = s->head || s->busy;
  pthread_mutex_unlock(&s->mu);
  return stuck;
}

/* 1 if the stream has nothing left to run. */
int fakeCudaStreamIdle(void* h) {
  struct Stream* s = streamOf(h);
  pthread_mutex_lock(&s->mu);
  int idle = !s->head && !s->busy;
  pthread_mutex_unlock(&s->mu);
  return idle;
}

void fakeCudaStreamDestroy(void* h) {
  struct Stream* s = streamOf(h);
  if (!s || s == defaultStream) return;
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->thread, NULL);
  s->magic = 0;
  free(s);
}

/* Test control: the stream stops at this point until fakeCudaStreamResume (as a stream stuck
 * behind a long kernel, or an event not yet recorded). */
int fakeCudaStreamHold(void* h) {
  struct Stream* s = streamOf(h);
  if (!s) return kInvalidHandle;
  pthread_mutex_lock(&s->mu);
  pthread_mutex_unlock(&s->mu);
  struct Cmd c = {kHold, NULL, NULL, 0, NULL, NULL, 0, NULL};
  return push(h, c);
}

void fakeCudaStreamResume(void* h) {
  struct Stream* s = streamOf(h);
  pthread_mutex_lock(&s->mu);
  ++s->resumed;
  pthread_mutex_unlock(&s->mu);
}

/* Test control: the n-th next cuLaunchHostFunc call on this stream fails (n = 1: the next), as
 * a driver out of resources would fail it. */
void fakeCudaStreamFailHostFunc(void* h, int n) {
  struct Stream* s = streamOf(h);
  if (s) __atomic_store_n(&s->failHostFnIn, n, __ATOMIC_RELEASE);
}

/* Stream capture (CUDA graphs) is only pretended: the flag a test sets, reported as the status. */
void fakeCudaStreamSetCapturing(void* h, int on) {
  struct Stream* s = streamOf(h);
  if (s) __atomic_store_n(&s->capturing, on, __ATOMIC_RELEASE);
}
int cuStreamIsCapturing(void* h, int* status) {
  struct Stream* s = streamOf(h);
  if (!s) return kInvalidHandle;
  *status = __atomic_load_n(&s->capturing, __ATOMIC_ACQUIRE);
  return 0;
}

int cuMemcpyDtoHAsync_v2(void* dst, unsigned long long src, size_t bytes, void* h) {
  if (typeOf((uintptr_t)src, bytes, NULL) != kTypeDevice || typeOf((uintptr_t)dst, bytes, NULL) == kTypeDevice)
    return kInvalidValue;
  struct Cmd c = {kCopy, dst, (void*)(uintptr_t)src, bytes, NULL, NULL, 0, NULL};
  return push(h, c);
}

int cuMemcpyHtoDAsync_v2(unsigned long long dst, const void* src, size_t bytes, void* h) {
  if (typeOf((uintptr_t)dst, bytes, NULL) != kTypeDevice || typeOf((uintptr_t)src, bytes, NULL) == kTypeDevice)
    return kInvalidValue;
  struct Cmd c = {kCopy, (void*)(uintptr_t)dst, (void*)src, bytes, NULL, NULL, 0, NULL};
  return push(h, c);
}

int cuLaunchHostFunc(void* h, void (*fn)(void*), void* user) {
  struct Stream* s = streamOf(h);
  if (s && __atomic_load_n(&s->failHostFnIn, __ATOMIC_ACQUIRE) > 0 &&
      __atomic_sub_fetch(&s->failHostFnIn, 1, __ATOMIC_ACQ_REL) == 0)
    return 999; /* CUDA_ERROR_UNKNOWN */
  struct Cmd c = {kHostFn, NULL, NULL, 0, fn, user, 0, NULL};
  return push(h, c);
}

int cuStreamWaitValue32_v2(void* h, unsigned long long addr, uint32_t value, unsigned flags) {
  if (flags != 0 || typeOf((uintptr_t)addr, 4, NULL) != kTypeHost) return kInvalidValue; /* GEQ on mapped memory */
  struct Cmd c = {kWait32, (void*)(uintptr_t)addr, NULL, 0, NULL, NULL, value, NULL};
  return push(h, c);
}

/* ---- what a program that owns its CUDA setup calls (the perf drivers' -m device) ---- */

int cuInit(unsigned flags) { return flags == 0 ? 0 : kInvalidValue; }
int cuDeviceGetCount(int* n) {
  *n = 1;
  return 0;
}
int cuDeviceGet(int* dev, int ordinal) {
  if (ordinal != 0) return 101; /* CUDA_ERROR_INVALID_DEVICE */
  *dev = 0;
  return 0;
}
static int primaryContext;
int cuDevicePrimaryCtxRetain(void** ctx, int dev) {
  (void)dev;
  *ctx = &primaryContext;
  return 0;
}
/* One context, current on every thread once set on any: enough for the library's push/pop
 * around frees, which the fake checks only for balance. */
static void* currentContext;
static long pushed;
int cuCtxSetCurrent(void* ctx) {
  if (ctx != &primaryContext) return kInvalidHandle;
  currentContext = ctx;
  return 0;
}
int cuCtxGetCurrent(void** ctx) {
  *ctx = currentContext;
  return 0;
}
int cuCtxPushCurrent_v2(void* ctx) {
  if (ctx != &primaryContext) return kInvalidHandle;
  __atomic_fetch_add(&pushed, 1, __ATOMIC_RELAXED);
  return 0;
}
int cuCtxPopCurrent_v2(void** ctx) {
  if (__atomic_fetch_sub(&pushed, 1, __ATOMIC_RELAXED) <= 0) return 201; /* CUDA_ERROR_INVALID_CONTEXT */
  *ctx = &primaryContext;
  return 0;
}
/* cuMemAlloc'd (and IPC-opened) mappings: address, size, and the memfd (-1 for opened ones). */
enum { kMaxMaps = 1024, kIpcMagic = 0x4649504b /* "FIPK" */, kInvalidContext = 201 };
static struct {
  void* p;
  size_t bytes;
  int fd;
} maps[kMaxMaps];
static int nmaps;

static void addMap(void* p, size_t bytes, int fd) {
  pthread_mutex_lock(&mu);
  if (nmaps < kMaxMaps) {
    maps[nmaps].p = p;
    maps[nmaps].bytes = bytes;
    maps[nmaps].fd = fd;
    ++nmaps;
  }
  pthread_mutex_unlock(&mu);
}

/* Removes the mapping at p; returns 1 if there was one (and unmaps it). */
static int dropMap(void* p) {
  int found = 0;
  pthread_mutex_lock(&mu);
  for (int i = 0; i < nmaps; ++i) {
    if (maps[i].p == p) {
      munmap(maps[i].p, maps[i].bytes);
      if (maps[i].fd >= 0) close(maps[i].fd);
      maps[i] = maps[--nmaps];
      found = 1;
      break;
    }
  }
  pthread_mutex_unlock(&mu);
  return found;
}

int cuMemAlloc_v2(unsigned long long* p, size_t bytes) {
  if (bytes == 0) bytes = 1;
  int fd = memfd_create("fakecuda", MFD_CLOEXEC);
  if (fd < 0) return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
  if (ftruncate(fd, (off_t)bytes) != 0) {
    close(fd);
    return 2;
  }
  void* m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    close(fd);
    return 2;
  }
  fakeCudaMark(m, bytes, kTypeDevice, 0);
  addMap(m, bytes, fd);
  *p = (uintptr_t)m;
  return 0;
}
int cuMemFree_v2(unsigned long long p) {
  if (typeOf((uintptr_t)p, 1, NULL) != kTypeDevice) return kInvalidValue;
  unmark((void*)(uintptr_t)p);
  if (!dropMap((void*)(uintptr_t)p)) free((void*)(uintptr_t)p);
  return 0;
}
/* Done at once rather than queued on the stream: the library waits for it right after. */
int cuMemsetD8Async(unsigned long long p, unsigned char value, size_t bytes, void* stream) {
  (void)stream;
  if (typeOf((uintptr_t)p, bytes, NULL) != kTypeDevice) return kInvalidValue;
  memset((void*)(uintptr_t)p, value, bytes);
  return 0;
}

struct IpcHandle {
  char reserved[64];
};
struct IpcWords {
  uint32_t magic;
  int32_t fd;
  int64_t pid;
  uint64_t bytes;
};
int cuIpcGetMemHandle(struct IpcHandle* h, unsigned long long p) {
  int ok = 0;
  struct IpcWords w = {kIpcMagic, -1, (int64_t)getpid(), 0};
  pthread_mutex_lock(&mu);
  for (int i = 0; i < nmaps; ++i) {
    if ((uintptr_t)maps[i].p == p && maps[i].fd >= 0) {
      w.fd = maps[i].fd;
      w.bytes = maps[i].bytes;
      ok = 1;
    }
  }
  pthread_mutex_unlock(&mu);
  if (!ok) return kInvalidValue;
  memset(h, 0, sizeof(*h));
  memcpy(h->reserved, &w, sizeof(w));
  return 0;
}
int cuIpcOpenMemHandle_v2(unsigned long long* p, struct IpcHandle h, unsigned flags) {
  (void)flags;
  struct IpcWords w;
  memcpy(&w, h.reserved, sizeof(w));
  if (w.magic != kIpcMagic) return kInvalidValue;
  if (w.pid == (int64_t)getpid()) return kInvalidContext; /* as the driver: not one's own handle */
  char path[64];
  snprintf(path, sizeof(path), "/proc/%lld/fd/%d", (long long)w.pid, w.fd);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return kInvalidValue;
  void* m = mmap(NULL, w.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return kInvalidValue;
  fakeCudaMark(m, w.bytes, kTypeDevice, 0);
  addMap(m, w.bytes, -1);
  *p = (uintptr_t)m;
  return 0;
}
int cuIpcCloseMemHandle(unsigned long long p) {
  unmark((void*)(uintptr_t)p);
  return dropMap((void*)(uintptr_t)p) ? 0 : kInvalidValue;
}
/* Synchronous copies on the legacy default stream: they wait for it, as the driver's do. */
int cuMemcpyHtoD_v2(unsigned long long dst, const void* src, size_t bytes) {
  int r = cuMemcpyHtoDAsync_v2(dst, src, bytes, NULL);
  return r ? r : fakeCudaStreamSynchronize(NULL);
}
int cuMemcpyDtoH_v2(void* dst, unsigned long long src, size_t bytes) {
  int r = cuMemcpyDtoHAsync_v2(dst, src, bytes, NULL);
  return r ? r : fakeCudaStreamSynchronize(NULL);
}
int cuStreamCreate(void** s, unsigned flags) {
  (void)flags;
  *s = fakeCudaStreamCreate();
  return 0;
}
int cuStreamSynchronize(void* s) { return fakeCudaStreamSynchronize(s); }
int cuStreamDestroy_v2(void* s) {
  fakeCudaStreamDestroy(s);
  return 0;
}
