// The elementwise body every CUDA kernel shares: d[i] = g(a[i], b[i]) over n elements, by the
// threads [tid, tid + stride, ...] of whatever group runs it (a whole grid for the standalone
// kernels of cuda_kernels.cu, one thread block for a cuda_ipc worker). When the three pointers
// have the same alignment modulo 16 the body moves 16-byte vectors after a scalar head that
// reaches alignment; otherwise it goes element by element. The element operations are the
// CPU's functors (kernels/functors.h), so both paths compute the same bits.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/functors.h"

namespace lockstep {
namespace cuda {

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
    // As the CPU's premulSum, NaNs settled as there.
    return Tr::store(settleNaN(Tr::load(x) + Tr::load(Tr::store(settleNaN(Tr::load(y) * factor)))));
  }
};
template <typename T>
struct ScaleOp {
  typename ElemTraits<T>::Compute factor;
  __device__ T operator()(T x, T) const {
    using Tr = ElemTraits<T>;
    return Tr::store(settleNaN(Tr::load(x) * factor));
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

template <typename T>
constexpr bool kFloating = !std::is_integral_v<typename ElemTraits<T>::Compute>;

// The number of elements before the first 16-byte boundary, the same for all three pointers, or
// kScalarOnly when their alignments differ.
constexpr size_t kScalarOnly = ~size_t{0};
template <typename T>
__host__ __device__ inline size_t vectorHead(const void* d, const void* a, const void* b) {
  const auto ad = reinterpret_cast<uintptr_t>(d), aa = reinterpret_cast<uintptr_t>(a),
             ab = reinterpret_cast<uintptr_t>(b);
  if ((ad & 15) != (aa & 15) || (ad & 15) != (ab & 15)) return kScalarOnly;
  return ((16 - (ad & 15)) & 15) / sizeof(T);
}

template <typename T, typename G>
__device__ inline void elementwiseRange(T* d, const T* a, const T* b, size_t n, size_t head, G g, size_t tid,
                                        size_t stride) {
  constexpr size_t kPack = 16 / sizeof(T);
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

}  // namespace cuda
}  // namespace lockstep
