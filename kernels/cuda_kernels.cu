// CUDA kernels: one grid-stride elementwise kernel, instantiated once per (dtype, element
// operation) from the table below. The element operations are the CPU's functors
// (kernels/functors.h), so both paths compute the same bits; this file is compiled with
// --fmad=false because a fused multiply-add in avg's `a + b * (1/n)` rounds differently from the
// CPU's separate multiply and add.
#include <cstdint>

#include "kernels/cuda_kernels.h"
#include "kernels/dispatch.h"
#include "kernels/functors.h"

namespace lockstep {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr size_t kMaxBlocks = 4096;
constexpr size_t kScalarOnly = ~size_t{0};

// Element operations: T x T -> T. Unary ones ignore their second operand.
template <typename T, typename F>
struct ReduceOp {
  __device__ T operator()(T x, T y) const {
    using Tr = ElemTraits<T>;
    return Tr::store(F()(Tr::load(x), Tr::load(y)));
  }
};
template <typename T>
struct PremulOp {
  typename ElemTraits<T>::Compute factor;
  __device__ T operator()(T x, T y) const {
    using Tr = ElemTraits<T>;
    return Tr::store(Tr::load(x) + Tr::load(Tr::store(Tr::load(y) * factor)));  // as the CPU's premulSum
  }
};
template <typename T>
struct ScaleOp {
  typename ElemTraits<T>::Compute factor;
  __device__ T operator()(T x, T) const {
    using Tr = ElemTraits<T>;
    return Tr::store(Tr::load(x) * factor);
  }
};
template <typename T>
struct DivideOp {
  int divisor;
  __device__ T operator()(T x, T) const {
    using Tr = ElemTraits<T>;
    return Tr::store(divideBy(Tr::load(x), divisor));
  }
};
struct CopyOp {
  __device__ uint8_t operator()(uint8_t x, uint8_t) const { return x; }
};

// d[i] = g(a[i], b[i]). `head` is the number of elements before the first 16-byte boundary,
// the same for all three pointers, or kScalarOnly when their alignments differ.
template <typename T, typename G>
__global__ void elementwise(T* d, const T* a, const T* b, size_t n, size_t head, G g) {
  constexpr size_t kPack = 16 / sizeof(T);
  const size_t tid = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  if (head == kScalarOnly) {
    for (size_t i = tid; i < n; i += stride) d[i] = g(a[i], b[i]);
    return;
  }
  if (head > n) head = n;
  for (size_t i = tid; i < head; i += stride) d[i] = g(a[i], b[i]);
  // The body: 16-byte vectors. A union keeps the reinterpretation well defined.
  union Pack {
    uint4 v;
    T e[kPack];
  };
  const size_t packs = (n - head) / kPack;
  const uint4* va = reinterpret_cast<const uint4*>(a + head);
  const uint4* vb = reinterpret_cast<const uint4*>(b + head);
  uint4* vd = reinterpret_cast<uint4*>(d + head);
  for (size_t p = tid; p < packs; p += stride) {
    Pack x, y, r;
    x.v = va[p];
    y.v = vb[p];
#pragma unroll
    for (size_t k = 0; k < kPack; ++k) r.e[k] = g(x.e[k], y.e[k]);
    vd[p] = r.v;
  }
  for (size_t i = head + packs * kPack + tid; i < n; i += stride) d[i] = g(a[i], b[i]);
}

template <typename T, typename G>
cudaError_t launch(void* dst, const void* a, const void* b, size_t n, G g, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const auto ad = reinterpret_cast<uintptr_t>(dst), aa = reinterpret_cast<uintptr_t>(a),
             ab = reinterpret_cast<uintptr_t>(b);
  // Elements must be naturally aligned (as in C++ and NCCL); a device load of a misaligned float
  // would fault the context.
  if (((ad | aa | ab) % sizeof(T)) != 0) return cudaErrorMisalignedAddress;
  size_t head = kScalarOnly, work = n;
  if ((ad & 15) == (aa & 15) && (ad & 15) == (ab & 15)) {
    head = ((16 - (ad & 15)) & 15) / sizeof(T);
    work = n / (16 / sizeof(T)) + 16;
  }
  size_t blocks = (work + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  elementwise<T, G><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<T*>(dst), static_cast<const T*>(a), static_cast<const T*>(b), n, head, g);
  return cudaGetLastError();
}

template <typename T>
constexpr bool kFloating = !std::is_integral_v<typename ElemTraits<T>::Compute>;

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
