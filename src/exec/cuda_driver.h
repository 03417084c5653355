// The CUDA driver entry points Lockstep uses, found in the libcuda.so.1 the process has already
// loaded. The host library never links CUDA and never loads the driver itself: a process that
// has not loaded it cannot hold device memory, and loading it would cost a host-only process
// tens of megabytes (and, on a GPU machine, a context it never asked for).
//
// The names are spelled as in cuda.h without including it (CUstream and CUdeviceptr are a
// pointer and a 64-bit integer), so the same code builds on machines without the toolkit.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lockstep {

struct CudaDriver {
  using Result = int;  // CUresult; 0 is CUDA_SUCCESS
  using Stream = void*;
  using DevicePtr = unsigned long long;
  using HostFn = void (*)(void*);

  Result (*pointerGetAttributes)(unsigned n, int* attributes, void** data, DevicePtr ptr);
  // The device path: pinned staging, copies and stream-ordered signalling. Null when the loaded
  // driver lacks one of them (then only pointer classification works).
  Result (*memHostAlloc)(void** p, size_t bytes, unsigned flags);
  Result (*memFreeHost)(void* p);
  Result (*memHostGetDevicePointer)(DevicePtr* dptr, void* p, unsigned flags);
  Result (*memcpyDtoHAsync)(void* dst, DevicePtr src, size_t bytes, Stream s);
  Result (*memcpyHtoDAsync)(DevicePtr dst, const void* src, size_t bytes, Stream s);
  Result (*launchHostFunc)(Stream s, HostFn fn, void* user);
  Result (*streamWaitValue32)(Stream s, DevicePtr addr, uint32_t value, unsigned flags);
  Result (*getErrorString)(Result r, const char** text);
  // Optional: frees on a thread without the allocating context (destroy or abort from another
  // thread) push that context first.
  Result (*ctxGetCurrent)(void** ctx);
  Result (*ctxPushCurrent)(void* ctx);
  Result (*ctxPopCurrent)(void** ctx);
  // cuda_ipc (transport/cuda_ipc): device segments exported to the other ranks of a host.
  // CUipcMemHandle: 64 opaque bytes, passed by value as cuda.h declares it (the ABI of a
  // struct of that size differs from a pointer's).
  struct IpcHandle {
    char reserved[64];
  };
  Result (*memAlloc)(DevicePtr* p, size_t bytes);
  Result (*memFree)(DevicePtr p);
  Result (*memsetD8Async)(DevicePtr p, unsigned char value, size_t bytes, Stream s);
  Result (*streamCreate)(Stream* s, unsigned flags);
  Result (*streamSynchronize)(Stream s);
  Result (*streamDestroy)(Stream s);
  // Optional: ranks in one process on different GPUs map each other's segments by peer access.
  Result (*ctxEnablePeerAccess)(void* peerContext, unsigned flags);
  // Optional: a stream being captured into a CUDA graph (status != 0) is refused.
  Result (*streamIsCapturing)(Stream s, int* status);
  Result (*ipcGetMemHandle)(IpcHandle* handle, DevicePtr p);
  Result (*ipcOpenMemHandle)(DevicePtr* p, IpcHandle handle, unsigned flags);
  Result (*ipcCloseMemHandle)(DevicePtr p);

  bool hasDevicePath() const;
  bool hasIpc() const;
  // Throws Error(lockstepSystemError, "CUDA: <what> failed: <driver's text> (<code>)") if r != 0.
  void check(Result r, const char* what) const;
};

// Flags, as cuda.h defines them.
constexpr unsigned kCuMemHostAllocPortable = 0x01;
constexpr unsigned kCuMemHostAllocDeviceMap = 0x02;
constexpr unsigned kCuStreamWaitValueGeq = 0x0;          // (int32_t)(*addr - value) >= 0: wrap-safe
constexpr unsigned kCuIpcMemLazyEnablePeerAccess = 0x1;  // peer access enabled as the mapping needs it
constexpr unsigned kCuStreamNonBlocking = 0x1;           // no implicit waits on the legacy default stream
constexpr int kCuErrorPeerAccessAlreadyEnabled = 704;

// Makes `context` current for a scope when another one is (frees belong to the allocating
// context; a destroy, or a group driving several devices, may come from a thread whose current
// context is another or none), and restores the caller's on exit. ok() is false if the push
// failed; nothing is pushed when `context` is null or already current, or the driver lacks
// push/pop.
class ScopedContext {
 public:
  ScopedContext(const CudaDriver& d, void* context) : d_(d) {
    void* current = nullptr;
    if (!context || !d.ctxPushCurrent || !d.ctxPopCurrent) return;
    if (d.ctxGetCurrent && d.ctxGetCurrent(&current) == 0 && current == context) return;
    ok_ = d.ctxPushCurrent(context) == 0;
    pushed_ = ok_;
  }
  ~ScopedContext() {
    void* popped = nullptr;
    if (pushed_) d_.ctxPopCurrent(&popped);
  }
  ScopedContext(const ScopedContext&) = delete;
  ScopedContext& operator=(const ScopedContext&) = delete;
  bool ok() const { return ok_; }

 private:
  const CudaDriver& d_;
  bool ok_ = true, pushed_ = false;
};

// The driver this process has loaded, or nullptr. Cheap: one atomic load.
const CudaDriver* cudaDriver();
// Looks again for a driver loaded since the last look (communicator init calls this: a trainer
// initialises CUDA before it creates its communicators, as NCCL requires).
void refreshCudaDriver();

}  // namespace lockstep
