#include "src/exec/cuda_driver.h"

#include <dlfcn.h>

#include <atomic>
#include <mutex>
#include <string>

#include "src/core/errors.h"

namespace lockstep {

namespace {

std::atomic<const CudaDriver*> gDriver{nullptr};

template <typename F>
void bind(void* lib, const char* name, F* fn) {
  *fn = reinterpret_cast<F>(::dlsym(lib, name));
}

}  // namespace

bool CudaDriver::hasDevicePath() const {
  return memHostAlloc && memFreeHost && memHostGetDevicePointer && memcpyDtoHAsync && memcpyHtoDAsync &&
         launchHostFunc && streamWaitValue32;
}

bool CudaDriver::hasIpc() const {
  return hasDevicePath() && memAlloc && memFree && memsetD8Async && streamCreate && streamSynchronize &&
         streamDestroy && ipcGetMemHandle && ipcOpenMemHandle && ipcCloseMemHandle && ctxGetCurrent;
}

void CudaDriver::check(Result r, const char* what) const {
  if (r == 0) return;
  const char* text = nullptr;
  if (!getErrorString || getErrorString(r, &text) != 0 || !text) text = "unknown CUDA error";
  throw Error(lockstepSystemError, std::string("CUDA: ") + what + " failed: " + text + " (" + std::to_string(r) + ")");
}

const CudaDriver* cudaDriver() { return gDriver.load(std::memory_order_acquire); }

void refreshCudaDriver() {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (gDriver.load(std::memory_order_acquire)) return;
  // RTLD_NOLOAD: only a driver the process already has (see the header).
  void* lib = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (!lib) return;
  // The handle and the table are kept: a driver is never unloaded once a process has it.
  auto* d = new CudaDriver{};
  bind(lib, "cuPointerGetAttributes", &d->pointerGetAttributes);
  // The versioned names are what cuda.h maps the plain ones to (with 64-bit sizes and pointers).
  bind(lib, "cuMemHostAlloc", &d->memHostAlloc);
  bind(lib, "cuMemFreeHost", &d->memFreeHost);
  bind(lib, "cuMemHostGetDevicePointer_v2", &d->memHostGetDevicePointer);
  bind(lib, "cuMemcpyDtoHAsync_v2", &d->memcpyDtoHAsync);
  bind(lib, "cuMemcpyHtoDAsync_v2", &d->memcpyHtoDAsync);
  bind(lib, "cuLaunchHostFunc", &d->launchHostFunc);
  bind(lib, "cuStreamWaitValue32_v2", &d->streamWaitValue32);
  bind(lib, "cuGetErrorString", &d->getErrorString);
  bind(lib, "cuCtxGetCurrent", &d->ctxGetCurrent);
  bind(lib, "cuCtxPushCurrent_v2", &d->ctxPushCurrent);
  bind(lib, "cuCtxPopCurrent_v2", &d->ctxPopCurrent);
  bind(lib, "cuMemAlloc_v2", &d->memAlloc);
  bind(lib, "cuMemFree_v2", &d->memFree);
  bind(lib, "cuMemsetD8Async", &d->memsetD8Async);
  bind(lib, "cuStreamCreate", &d->streamCreate);
  bind(lib, "cuStreamSynchronize", &d->streamSynchronize);
  bind(lib, "cuStreamDestroy_v2", &d->streamDestroy);
  bind(lib, "cuCtxEnablePeerAccess", &d->ctxEnablePeerAccess);
  bind(lib, "cuStreamIsCapturing", &d->streamIsCapturing);
  bind(lib, "cuIpcGetMemHandle", &d->ipcGetMemHandle);
  bind(lib, "cuIpcOpenMemHandle_v2", &d->ipcOpenMemHandle);
  bind(lib, "cuIpcCloseMemHandle", &d->ipcCloseMemHandle);
  if (!d->pointerGetAttributes) {
    delete d;
    return;
  }
  gDriver.store(d, std::memory_order_release);
}

}  // namespace lockstep
