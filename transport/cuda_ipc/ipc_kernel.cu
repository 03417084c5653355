// The cuda_ipc kernel: one thread block per worker of every lane of a Program, running the
// interpreter (ipc_interpreter.h) with device policies. This file is the whole GPU-only part of
// cuda_ipc; everything it runs is also run, and tested, by host threads (ipc_host_runner.cc).
//
// Memory order: the leader thread polls with ld.acquire.sys and publishes with st.release.sys
// after a __threadfence_system(), and a worker's threads meet at __syncthreads() before the
// leader publishes, so a peer that sees a slot's number also sees every thread's payload.
// Compiled with --fmad=false like the other kernels: the arithmetic is the CPU's, bit for bit.
#include <cuda_runtime_api.h>

#include "kernels/cuda_elementwise.cuh"
#include "kernels/dispatch.h"
#include "transport/cuda_ipc/ipc_interpreter.h"
#include "transport/cuda_ipc/ipc_kernel.h"

namespace lockstep {
namespace ipc {
namespace {

constexpr int kThreads = 512;
constexpr uint32_t kWindow = 16;  // instructions a block copies from the host-mapped program at once

struct DeviceSync {
  Instr* window;    // shared: instructions [windowBegin, windowBegin + kWindow)
  uint32_t* begin;  // shared: windowBegin (UINT32_MAX: empty)
  int* answer;      // shared: the leader's broadcast

  __device__ bool leader() const { return threadIdx.x == 0; }
  __device__ uint64_t load(const uint64_t* p) const {
    uint64_t v;
    asm volatile("ld.acquire.sys.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
  }
  __device__ void store(uint64_t* p, uint64_t v) const {
    asm volatile("st.release.sys.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
  }
  __device__ uint64_t add(uint64_t* p, uint64_t v) const {
    return atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
  }
  __device__ void fence() const { __threadfence_system(); }
  __device__ void sync() const { __syncthreads(); }
  __device__ bool broadcast(bool ok) const {
    if (leader()) *answer = ok;
    __syncthreads();
    const bool r = *answer != 0;
    __syncthreads();
    return r;
  }
  // Every thread of the block asks for the same k in the same order, so the refills are uniform.
  __device__ const Instr& fetch(const Instr* code, uint32_t k, uint32_t end) const {
    if (*begin == UINT32_MAX || k < *begin || k >= *begin + kWindow) {
      __syncthreads();
      const uint32_t n = (end - k < kWindow ? end - k : kWindow) * (sizeof(Instr) / 8);
      const uint64_t* from = reinterpret_cast<const uint64_t*>(code + k);
      uint64_t* to = reinterpret_cast<uint64_t*>(window);
      for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) to[i] = from[i];
      if (leader()) *begin = k;
      __syncthreads();
    }
    return window[k - *begin];
  }
  __device__ uint64_t nowNs() const {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
  }
  __device__ void pause(uint32_t spins) const { __nanosleep(spins < 64 ? 32 : 256); }
  __device__ bool aborted(const volatile uint32_t* flag) const { return *flag != 0; }  // host-mapped
  __device__ bool failed(const ErrorRecord* e) const {
    return *reinterpret_cast<const volatile uint32_t*>(&e->code) != kOk;
  }
  __device__ void fail(ErrorRecord* e, const ErrorRecord& r) const {
    if (atomicCAS(&e->code, static_cast<uint32_t>(kOk), r.code) == kOk) {
      e->peer = r.peer;
      e->lane = r.lane;
      e->instr = r.instr;
      e->want = r.want;
      e->got = r.got;
      __threadfence_system();
    }
  }
};

// The element functors over one block's threads.
template <typename T>
struct DeviceMath {
  uint32_t op;
  int nranks;
  using C = typename ElemTraits<T>::Compute;

  template <typename G>
  __device__ void run(char* d, const char* a, const char* b, uint64_t n, G g) const {
    cuda::elementwiseRange(reinterpret_cast<T*>(d), reinterpret_cast<const T*>(a), reinterpret_cast<const T*>(b), n,
                           cuda::vectorHead<T>(d, a, b), g, threadIdx.x, blockDim.x);
  }
  __device__ void copy(char* d, const char* s, size_t bytes) const {
    cuda::elementwiseRange(reinterpret_cast<uint8_t*>(d), reinterpret_cast<const uint8_t*>(s),
                           reinterpret_cast<const uint8_t*>(s), bytes, cuda::vectorHead<uint8_t>(d, s, s),
                           cuda::CopyOp{}, threadIdx.x, blockDim.x);
  }
  __device__ void reduce(char* d, const char* a, const char* b, uint64_t n) const {
    switch (op) {
      case lockstepProd:
        return run(d, a, b, n, cuda::ReduceOp<T, FuncProd>{});
      case lockstepMax:
        return run(d, a, b, n, cuda::ReduceOp<T, FuncMax>{});
      case lockstepMin:
        return run(d, a, b, n, cuda::ReduceOp<T, FuncMin>{});
      default:  // sum, and avg (which reduces as sum)
        return run(d, a, b, n, cuda::ReduceOp<T, FuncSum>{});
    }
  }
  __device__ void premul(char* d, const char* a, const char* b, uint64_t n) const {
    if constexpr (cuda::kFloating<T>) run(d, a, b, n, cuda::PremulOp<T>{C(1) / static_cast<C>(nranks)});
  }
  __device__ void scale(char* d, const char* s, uint64_t n) const {
    if constexpr (cuda::kFloating<T>) run(d, s, s, n, cuda::ScaleOp<T>{C(1) / static_cast<C>(nranks)});
  }
  __device__ void divide(char* d, uint64_t n) const {
    if constexpr (!cuda::kFloating<T>) run(d, d, d, n, cuda::DivideOp<T>{nranks});
  }
  __device__ void sync() const { __syncthreads(); }
};

// Two blocks per SM at least (at most 64 registers a thread), which the block budget of
// IpcEngine (kBlocksPerGpu) counts on: every block of a call must be resident at once.
template <typename T>
__global__ void __launch_bounds__(kThreads, 2) ipcKernel(const ProgramHeader* program) {
  __shared__ ProgramHeader h;
  __shared__ Instr window[kWindow];
  __shared__ uint32_t windowBegin;
  __shared__ int answer;
  // The header lives in host-mapped memory: read it over the bus once.
  {
    const uint64_t* from = reinterpret_cast<const uint64_t*>(program);
    uint64_t* to = reinterpret_cast<uint64_t*>(&h);
    for (uint32_t i = threadIdx.x; i < sizeof(ProgramHeader) / 8; i += blockDim.x) to[i] = from[i];
    if (threadIdx.x == 0) windowBegin = UINT32_MAX;
    __syncthreads();
  }
  DeviceSync sync{window, &windowBegin, &answer};
  DeviceMath<T> math{h.op, h.nranks};
  const uint32_t lane = blockIdx.x / h.workers, worker = blockIdx.x % h.workers;
  runWorker(program, h, lane, worker, sync, math);
}

static_assert(sizeof(ProgramHeader) % 8 == 0 && sizeof(Instr) % 8 == 0, "copied as 8-byte words");

}  // namespace

int launchProgram(const ProgramHeader* hostProgram, const ProgramHeader* deviceProgram, void* stream) {
  const unsigned blocks = hostProgram->lanes * hostProgram->workers;
  if (blocks == 0) return cudaSuccess;
  const auto s = static_cast<cudaStream_t>(stream);
  // cudaLaunchKernel returns this launch's own error; cudaGetLastError after a <<<>>> launch could
  // return an earlier, unrelated one and make a queued kernel look unlaunched.
  void* args[] = {&deviceProgram};
  return dispatchType(static_cast<lockstepDataType_t>(hostProgram->dtype), [&](auto t) -> int {
    return cudaLaunchKernel(reinterpret_cast<const void*>(&ipcKernel<decltype(t)>), dim3(blocks), dim3(kThreads), args,
                            0, s);
  });
}

}  // namespace ipc
}  // namespace lockstep

// The entry point liblockstep looks up (dlsym) in liblockstep_cuda: the host library never links
// CUDA, so this is how it reaches the kernel.
extern "C" __attribute__((visibility("default"))) int lockstepCudaIpcLaunch(const void* hostProgram,
                                                                            const void* deviceProgram, void* stream) {
  return lockstep::ipc::launchProgram(static_cast<const lockstep::ipc::ProgramHeader*>(hostProgram),
                                      static_cast<const lockstep::ipc::ProgramHeader*>(deviceProgram), stream);
}
