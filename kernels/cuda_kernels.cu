// CUDA kernels: one grid-stride elementwise kernel, instantiated once per (dtype, element
// operation) from the table below. The element operations are the CPU's functors
// (kernels/functors.h), so both paths compute the same bits; this file is compiled with
// --fmad=false because a fused multiply-add in avg's `a + b * (1/n)` rounds differently from the
// CPU's separate multiply and add.
#include <cstdint>

#include "kernels/cuda_elementwise.cuh"
#include "kernels/cuda_kernels.h"
#include "kernels/dispatch.h"

namespace lockstep {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr size_t kMaxBlocks = 4096;
// d[i] = g(a[i], b[i]) over the whole grid.
template <typename T, typename G>
__global__ void elementwise(T* d, const T* a, const T* b, size_t n, size_t head, G g) {
  elementwiseRange(d, a, b, n, head, g, blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x,
                   static_cast<size_t>(gridDim.x) * blockDim.x);
}

template <typename T, typename G>
cudaError_t launch(void* dst, const void* a, const void* b, size_t n, G g, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const auto ad = reinterpret_cast<uintptr_t>(dst), aa = reinterpret_cast<uintptr_t>(a),
             ab = reinterpret_cast<uintptr_t>(b);
  // Elements must be naturally aligned (as in C++ and NCCL); a device load of a misaligned float
  // would fault the context.
  if (((ad | aa | ab) % sizeof(T)) != 0) return cudaErrorMisalignedAddress;
  const size_t head = vectorHead<T>(dst, a, b);
  const size_t work = head == kScalarOnly ? n : n / (16 / sizeof(T)) + 16;
  size_t blocks = (work + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  elementwise<T, G><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<T*>(dst), static_cast<const T*>(a), static_cast<const T*>(b), n, head, g);
  return cudaGetLastError();
}

}  // namespace

cudaError_t reduce(lockstepDataType_t type, lockstepRedOp_t op, void* dst, const void* a, const void* b, size_t n,
                   cudaStream_t stream) {
  return dispatchType(type, [&](auto t) -> cudaError_t {
    using T = decltype(t);
    switch (op) {
      case lockstepSum:
      case lockstepAvg:
        return launch<T>(dst, a, b, n, ReduceOp<T, FuncSum>{}, stream);
      case lockstepProd:
        return launch<T>(dst, a, b, n, ReduceOp<T, FuncProd>{}, stream);
      case lockstepMax:
        return launch<T>(dst, a, b, n, ReduceOp<T, FuncMax>{}, stream);
      case lockstepMin:
        return launch<T>(dst, a, b, n, ReduceOp<T, FuncMin>{}, stream);
      default:
        return cudaErrorInvalidValue;
    }
  });
}

bool hasPremul(lockstepDataType_t type) {
  return dispatchType(type, [](auto t) { return kFloating<decltype(t)>; });
}

cudaError_t premulSum(lockstepDataType_t type, void* dst, const void* a, const void* b, size_t n, int nranks,
                      cudaStream_t stream) {
  return dispatchType(type, [&](auto t) -> cudaError_t {
    using T = decltype(t);
    if constexpr (kFloating<T>) {
      using C = typename ElemTraits<T>::Compute;
      return launch<T>(dst, a, b, n, PremulOp<T>{C(1) / static_cast<C>(nranks)}, stream);
    } else {
      return cudaErrorInvalidValue;
    }
  });
}

cudaError_t scale(lockstepDataType_t type, void* dst, const void* src, size_t n, int nranks, cudaStream_t stream) {
  return dispatchType(type, [&](auto t) -> cudaError_t {
    using T = decltype(t);
    if constexpr (kFloating<T>) {
      using C = typename ElemTraits<T>::Compute;
      return launch<T>(dst, src, src, n, ScaleOp<T>{C(1) / static_cast<C>(nranks)}, stream);
    } else {
      return cudaErrorInvalidValue;
    }
  });
}

cudaError_t divide(lockstepDataType_t type, void* data, size_t n, int divisor, cudaStream_t stream) {
  return dispatchType(type, [&](auto t) -> cudaError_t {
    using T = decltype(t);
    if constexpr (!kFloating<T>) {
      return launch<T>(data, data, data, n, DivideOp<T>{divisor}, stream);
    } else {
      return cudaErrorInvalidValue;
    }
  });
}

cudaError_t copy(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  return launch<uint8_t>(dst, src, src, bytes, CopyOp{}, stream);
}

}  // namespace cuda
}  // namespace lockstep
