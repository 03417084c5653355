// A rank program for the stream-ordered device path across processes (over shm, or whatever
// LOCKSTEP_TRANSPORTS allows), with the stand-in CUDA driver (tests/fakecuda) loaded first, as a
// trainer loads CUDA before it creates its communicator. Start it under lockstep-run.
//
//   device_check <path to the fake libcuda.so.1>
//
// Runs an all-reduce, an in-place all-gather and a broadcast on "device" buffers, posted on one
// stream that is held until every call has returned, then checks every element. Exits 1 on a
// wrong result, 2 on an error; rank 0 prints "device_check: ok (N ranks)".
//
// Built a second time as ipc_device_check (LOCKSTEP_DEVICE_CHECK_IPC), with a current context and
// the stand-in kernel launcher (tests/fakecuda/fake_ipc_launch.cc): the ranks then exchange IPC
// handles of their segments, map each other's through /proc, and run every call as cuda_ipc
// "kernels"; it fails unless they did. With DEVICE_CHECK_VICTIM=<rank> that rank kills itself
// (SIGKILL) instead of calling, while the others' kernels wait for it: each survivor must see
// its stream finish with an error naming the victim, and prints
// "device_check rank R: <error> after <ms> ms: <message>" and exits 0.
#include <dlfcn.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "lockstep/lockstep.h"

#ifdef LOCKSTEP_DEVICE_CHECK_IPC
extern "C" unsigned long fakeIpcLaunches();
#endif

namespace {

int rank = 0, nranks = 1;

int fail(const char* what, const char* detail) {
  std::fprintf(stderr, "device_check rank %d: %s: %s\n", rank, what, detail);
  return 2;
}

template <typename F>
F sym(void* lib, const char* name) {
  return reinterpret_cast<F>(dlsym(lib, name));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return fail("usage", "device_check <fake libcuda.so.1>");
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (!lib) return fail("dlopen", dlerror());
  auto devMalloc = sym<void* (*)(size_t)>(lib, "fakeCudaMalloc");
  auto streamCreate = sym<void* (*)()>(lib, "fakeCudaStreamCreate");
  auto streamSync = sym<int (*)(void*)>(lib, "fakeCudaStreamSynchronize");
  auto streamHold = sym<int (*)(void*)>(lib, "fakeCudaStreamHold");
  auto streamResume = sym<void (*)(void*)>(lib, "fakeCudaStreamResume");

#ifdef LOCKSTEP_DEVICE_CHECK_IPC
  void* ctx = nullptr;
  if (sym<int (*)(void**, int)>(lib, "cuDevicePrimaryCtxRetain")(&ctx, 0) != 0 ||
      sym<int (*)(void*)>(lib, "cuCtxSetCurrent")(ctx) != 0)
    return fail("context", "the stand-in driver refused");
#endif
  lockstepComm_t comm;
  if (lockstepCommInitFromEnv(&comm) != lockstepSuccess) return fail("init", lockstepGetLastError(nullptr));
  lockstepCommUserRank(comm, &rank);
  lockstepCommCount(comm, &nranks);
#ifdef LOCKSTEP_DEVICE_CHECK_IPC
  if (const char* v = std::getenv("DEVICE_CHECK_VICTIM")) {
    const int victim = std::atoi(v);
    auto* buf = static_cast<float*>(devMalloc(1 << 20));
    if (rank == victim) {
      usleep(300 * 1000);  // the others' kernels are waiting for this rank by now
      raise(SIGKILL);
    }
    void* s = streamCreate();
    const auto t0 = std::chrono::steady_clock::now();
    if (lockstepAllReduce(buf, buf, (1 << 20) / 4, lockstepFloat32, lockstepSum, comm, s) != lockstepSuccess)
      return fail("post", lockstepGetLastError(nullptr));
    streamSync(s);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    lockstepResult_t async = lockstepSuccess;
    lockstepCommGetAsyncError(comm, &async);
    if (async == lockstepSuccess) return fail("victim", "the all-reduce succeeded without the victim");
    // The next call is refused with the cause.
    lockstepAllReduce(buf, buf, 1, lockstepFloat32, lockstepSum, comm, s);
    std::printf("device_check rank %d: %s after %.0f ms: %s\n", rank, lockstepGetErrorString(async), ms,
                lockstepGetLastError(nullptr));
    std::fflush(stdout);
    lockstepCommAbort(comm);
    return 0;
  }
#endif
  const size_t count = 300000;  // several slices
  auto* a = static_cast<float*>(devMalloc(count * sizeof(float)));
  auto* b = static_cast<float*>(devMalloc(count * sizeof(float)));
  auto* g = static_cast<int32_t*>(devMalloc(count * nranks * sizeof(int32_t)));
  auto* c = static_cast<double*>(devMalloc(count * sizeof(double)));
  for (size_t i = 0; i < count; ++i) {
    a[i] = float(rank + 1) * float(i % 1000);
    g[rank * count + i] = int32_t(rank * 7 + i);
    c[i] = rank == nranks - 1 ? double(i) / 3 : -1.0;
  }
  void* s = streamCreate();
  streamHold(s);  // every call must return without the stream having run
  if (lockstepAllReduce(a, b, count, lockstepFloat32, lockstepSum, comm, s) != lockstepSuccess ||
      lockstepAllGather(g + rank * count, g, count, lockstepInt32, comm, s) != lockstepSuccess ||
      lockstepBroadcast(c, c, count, lockstepFloat64, nranks - 1, comm, s) != lockstepSuccess)
    return fail("post", lockstepGetLastError(nullptr));
  streamResume(s);
  streamSync(s);
  lockstepResult_t async;
  lockstepCommGetAsyncError(comm, &async);
  if (async != lockstepSuccess) return fail("async error", lockstepGetErrorString(async));
  const float scale = float(nranks) * float(nranks + 1) / 2;
  for (size_t i = 0; i < count; ++i) {
    bool ok = b[i] == scale * float(i % 1000) && c[i] == double(i) / 3;
    for (int p = 0; p < nranks && ok; ++p) ok = g[p * count + i] == int32_t(p * 7 + i);
    if (!ok) {
      std::fprintf(stderr, "device_check rank %d: wrong result at element %zu\n", rank, i);
      return 1;
    }
  }
#ifdef LOCKSTEP_DEVICE_CHECK_IPC
  if (fakeIpcLaunches() != 3) {
    std::fprintf(stderr, "device_check rank %d: %lu cuda_ipc launches, expected 3\n", rank, fakeIpcLaunches());
    return 1;
  }
  if (rank == 0) std::printf("device_check: ok (%d ranks, every call a cuda_ipc kernel)\n", nranks);
#else
  if (rank == 0) std::printf("device_check: ok (%d ranks)\n", nranks);
#endif
  lockstepCommDestroy(comm);
  return 0;
}
