#include "perf/device_memory.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace lockstep::perf {

namespace {

// The driver API calls a perf driver needs, spelled as in cuda.h (no CUDA headers needed).
struct Cu {
  int (*init)(unsigned);
  int (*deviceGetCount)(int*);
  int (*deviceGet)(int*, int);
  int (*primaryCtxRetain)(void**, int);
  int (*ctxSetCurrent)(void*);
  int (*memAlloc)(unsigned long long*, size_t);
  int (*memFree)(unsigned long long);
  int (*memcpyHtoD)(unsigned long long, const void*, size_t, void*);  // the _Async_v2 forms
  int (*memcpyDtoH)(void*, unsigned long long, size_t, void*);
  int (*streamCreate)(void**, unsigned);
  int (*streamSynchronize)(void*);
  int (*streamDestroy)(void*);
};
Cu cu;

[[noreturn]] void fatal(const std::string& why) {
  std::fprintf(stderr, "-m device: %s\n", why.c_str());
  std::exit(2);
}

void check(int r, const char* what) {
  if (r != 0) fatal(std::string(what) + " failed with CUDA error " + std::to_string(r));
}

template <typename F>
void bind(void* lib, const char* name, F* fn) {
  *fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!*fn) fatal(std::string("the CUDA driver lacks ") + name);
}

void loadDriver() {
  // RTLD_GLOBAL: the library finds this driver (it only looks for one already loaded).
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (!lib) fatal(std::string("cannot load the CUDA driver (libcuda.so.1): ") + dlerror());
  bind(lib, "cuInit", &cu.init);
  bind(lib, "cuDeviceGetCount", &cu.deviceGetCount);
  bind(lib, "cuDeviceGet", &cu.deviceGet);
  bind(lib, "cuDevicePrimaryCtxRetain", &cu.primaryCtxRetain);
  bind(lib, "cuCtxSetCurrent", &cu.ctxSetCurrent);
  bind(lib, "cuMemAlloc_v2", &cu.memAlloc);
  bind(lib, "cuMemFree_v2", &cu.memFree);
  bind(lib, "cuMemcpyHtoDAsync_v2", &cu.memcpyHtoD);
  bind(lib, "cuMemcpyDtoHAsync_v2", &cu.memcpyDtoH);
  bind(lib, "cuStreamCreate", &cu.streamCreate);
  bind(lib, "cuStreamSynchronize", &cu.streamSynchronize);
  bind(lib, "cuStreamDestroy_v2", &cu.streamDestroy);
}

char* hostAlloc(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, bytes) != 0) {
    std::fprintf(stderr, "cannot allocate %zu bytes of host memory for the buffers (-e sets their size)\n", bytes);
    std::exit(2);
  }
  std::memset(p, 0, bytes);  // page-aligned and pre-faulted, as a trainer's long-lived tensors
  return static_cast<char*>(p);
}

unsigned long long dptr(const void* p) { return reinterpret_cast<unsigned long long>(p); }

}  // namespace

BenchMemory::BenchMemory(bool device, size_t bytes, int localRank) : device_(device), bytes_(bytes) {
  sendHost_ = hostAlloc(bytes);
  recvHost_ = hostAlloc(bytes);
  if (!device_) {
    send_ = sendHost_;
    recv_ = recvHost_;
    return;
  }
  loadDriver();
  check(cu.init(0), "cuInit");
  check(cu.deviceGetCount(&gpus_), "cuDeviceGetCount");
  if (gpus_ < 1) fatal("no GPU found");
  const char* local = std::getenv("LOCKSTEP_LOCAL_RANK");
  ordinal_ = (localRank >= 0 ? localRank : local ? std::atoi(local) : 0) % gpus_;
  int dev = 0;
  void* ctx = nullptr;
  check(cu.deviceGet(&dev, ordinal_), "cuDeviceGet");
  check(cu.primaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
  check(cu.ctxSetCurrent(ctx), "cuCtxSetCurrent");
  unsigned long long s = 0, r = 0;
  check(cu.memAlloc(&s, bytes), "cuMemAlloc");
  check(cu.memAlloc(&r, bytes), "cuMemAlloc");
  send_ = reinterpret_cast<char*>(s);
  recv_ = reinterpret_cast<char*>(r);
  // Non-blocking: ranks that are threads sharing this GPU (-T) must not wait for each other
  // through the legacy default stream. Copies go on the same stream, so they stay ordered.
  check(cu.streamCreate(&stream_, 1 /* CU_STREAM_NON_BLOCKING */), "cuStreamCreate");
  upload(bytes);
}

BenchMemory::~BenchMemory() {
  if (device_) {
    cu.streamDestroy(stream_);
    cu.memFree(dptr(send_));
    cu.memFree(dptr(recv_));
  }
  std::free(sendHost_);
  std::free(recvHost_);
}

char* BenchMemory::host(const void* p) const {
  if (!device_) return const_cast<char*>(static_cast<const char*>(p));
  const char* c = static_cast<const char*>(p);
  if (c >= send_ && c < send_ + bytes_) return sendHost_ + (c - send_);
  return recvHost_ + (c - recv_);
}

void BenchMemory::upload(size_t bytes) {
  if (!device_) return;
  bytes = std::min(bytes, bytes_);
  check(cu.memcpyHtoD(dptr(send_), sendHost_, bytes, stream_), "cuMemcpyHtoDAsync");
  check(cu.memcpyHtoD(dptr(recv_), recvHost_, bytes, stream_), "cuMemcpyHtoDAsync");
  sync();  // the host shadows may change next
}

void BenchMemory::download(size_t bytes) {
  if (!device_) return;
  bytes = std::min(bytes, bytes_);
  check(cu.memcpyDtoH(sendHost_, dptr(send_), bytes, stream_), "cuMemcpyDtoHAsync");
  check(cu.memcpyDtoH(recvHost_, dptr(recv_), bytes, stream_), "cuMemcpyDtoHAsync");
  sync();
}

void BenchMemory::sync() {
  if (device_) check(cu.streamSynchronize(stream_), "cuStreamSynchronize");
}

std::string BenchMemory::describe() const {
  if (!device_) return "host";
  return "device " + std::to_string(ordinal_) + " of " + std::to_string(gpus_);
}

}  // namespace lockstep::perf
