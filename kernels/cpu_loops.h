// The kernel loops, written once and compiled once per instruction set: each kernels/cpu_isa_*.cc
// includes this header with its own -m flags and calls buildKernelTable(). Everything here has
// internal linkage (anonymous namespace), so the AVX-512 build of a loop can never be linked in
// place of the baseline one.
//
// The loops are plain so the compiler vectorises them (the narrow-float conversions are
// branch-free for that reason). fp16 is the exception: without hardware help its conversions cost
// ~30 instructions an element, so where F16C exists the fp16 loops use it explicitly, with the
// same rounding (to nearest even) and the same canonical NaN as the portable path.
//
// Floating-point contraction must be off for these files (CMake sets -ffp-contract=off): a fused
// multiply-add in the AVX2 build of `a + b * f` would round differently from the baseline build,
// and ranks on different CPUs would stop agreeing bit for bit.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/dispatch.h"
#include "kernels/functors.h"
#include "kernels/kernel_table.h"

#if defined(__F16C__) && defined(__AVX2__)
#include <immintrin.h>
#define LS_HAVE_F16C_LOOPS 1
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace lockstep {
namespace {

template <typename T, typename F>
void reduceLoop(void* dst, const void* a, const void* b, size_t n) {
  using Tr = ElemTraits<T>;
  T* d = static_cast<T*>(dst);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  F f;
  for (size_t i = 0; i < n; ++i) d[i] = Tr::store(f(Tr::load(x[i]), Tr::load(y[i])));
}

template <typename T>
void divideLoop(void* data, size_t n, int divisor) {
  using Tr = ElemTraits<T>;
  T* d = static_cast<T*>(data);
  for (size_t i = 0; i < n; ++i) d[i] = Tr::store(divideBy(Tr::load(d[i]), divisor));
}

template <typename T>
constexpr bool kFloating = !std::is_integral_v<typename ElemTraits<T>::Compute>;

template <typename T>
void premulSumLoop(void* dst, const void* a, const void* b, size_t n, int nranks) {
  using Tr = ElemTraits<T>;
  using C = typename Tr::Compute;
  const C factor = C(1) / static_cast<C>(nranks);
  T* d = static_cast<T*>(dst);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  // The scaled input is rounded to T before it is added, exactly as scaleLoop rounds what a rank
  // sends: then a rank that folds its own input here and a peer that receives it scaled combine
  // the same value, and one-shot algorithms stay bit-identical on every rank (no-op for float).
  for (size_t i = 0; i < n; ++i)
    d[i] = Tr::store(settleNaN(Tr::load(x[i]) + Tr::load(Tr::store(settleNaN(Tr::load(y[i]) * factor)))));
}

template <typename T>
void scaleLoop(void* dst, const void* src, size_t n, int nranks) {
  using Tr = ElemTraits<T>;
  using C = typename Tr::Compute;
  const C factor = C(1) / static_cast<C>(nranks);
  T* d = static_cast<T*>(dst);
  const T* s = static_cast<const T*>(src);
  for (size_t i = 0; i < n; ++i) d[i] = Tr::store(settleNaN(Tr::load(s[i]) * factor));
}

#ifdef LS_HAVE_F16C_LOOPS
// fp16 with F16C: 8 elements at a time through float, the tail through the portable loop.
// Operand order matches the scalar functors exactly: max(b, a) returns a when neither is greater,
// as `a < b ? b : a` does, so signed zeros come out the same. Any NaN lane is replaced by the
// canonical NaN after rounding, as floatToHalf does.
struct VecSum {
  static __m256 apply(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
};
struct VecProd {
  static __m256 apply(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
};
struct VecMax {
  static __m256 apply(__m256 a, __m256 b) {
    __m256 nan = _mm256_cmp_ps(a, b, _CMP_UNORD_Q);
    return _mm256_blendv_ps(_mm256_max_ps(b, a), _mm256_add_ps(a, b), nan);
  }
};
struct VecMin {
  static __m256 apply(__m256 a, __m256 b) {
    __m256 nan = _mm256_cmp_ps(a, b, _CMP_UNORD_Q);
    return _mm256_blendv_ps(_mm256_min_ps(b, a), _mm256_add_ps(a, b), nan);
  }
};

inline __m256 loadHalf8(const Half* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline void storeHalf8(Half* p, __m256 v) {
  __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m128i isNan = _mm_cmpgt_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7fff)), _mm_set1_epi16(0x7c00));
  h = _mm_or_si128(_mm_andnot_si128(isNan, h), _mm_and_si128(isNan, _mm_set1_epi16(0x7fff)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
}

template <typename V, typename F>
void halfReduceLoop(void* dst, const void* a, const void* b, size_t n) {
  Half* d = static_cast<Half*>(dst);
  const Half* x = static_cast<const Half*>(a);
  const Half* y = static_cast<const Half*>(b);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) storeHalf8(d + i, V::apply(loadHalf8(x + i), loadHalf8(y + i)));
  reduceLoop<Half, F>(d + i, x + i, y + i, n - i);
}

void halfPremulSumLoop(void* dst, const void* a, const void* b, size_t n, int nranks) {
  Half* d = static_cast<Half*>(dst);
  const Half* x = static_cast<const Half*>(a);
  const Half* y = static_cast<const Half*>(b);
  const __m256 factor = _mm256_set1_ps(1.0f / static_cast<float>(nranks));
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    // Round the scaled input to fp16 first, as premulSumLoop does (a NaN there stays a NaN).
    __m256 scaled = _mm256_cvtph_ps(
        _mm256_cvtps_ph(_mm256_mul_ps(loadHalf8(y + i), factor), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    storeHalf8(d + i, _mm256_add_ps(loadHalf8(x + i), scaled));
  }
  premulSumLoop<Half>(d + i, x + i, y + i, n - i, nranks);
}

void halfScaleLoop(void* dst, const void* src, size_t n, int nranks) {
  Half* d = static_cast<Half*>(dst);
  const Half* s = static_cast<const Half*>(src);
  const __m256 factor = _mm256_set1_ps(1.0f / static_cast<float>(nranks));
  size_t i = 0;
  for (; i + 8 <= n; i += 8) storeHalf8(d + i, _mm256_mul_ps(loadHalf8(s + i), factor));
  scaleLoop<Half>(d + i, s + i, n - i, nranks);
}
#endif

// fp8 by lookup. An fp8 operand has 256 values, so all of `a op b` for one format and op is a
// 64 KiB table, and all of `round(x * (1/nranks))` a 256-byte one. Converting through float costs
// dozens of selects an element (fp8 max ran at 0.003x memcpy here, sum at 0.04x); a lookup is
// a load. Each table is filled by the loops above, on inputs that enumerate every operand, so it
// holds the very bits they compute, and this build of the loops (this ISA) fills its own. Short
// calls keep computing: a pair table is built on its first long call (65536 evaluations, well
// under a millisecond here) and kept for the process's life, and a scale table is built per call.
template <typename T>
constexpr bool kFp8 = std::is_same_v<T, Fp8E4M3> || std::is_same_v<T, Fp8E5M2>;
constexpr size_t kFp8PairTableMinCount = 4096;
constexpr size_t kFp8ScaleTableMinCount = 1024;

template <typename T, typename F>
const uint8_t* fp8PairTable() {
  // Never freed: a kernel may run on a progress thread while statics are destroyed at exit.
  static const uint8_t* const table = [] {
    auto* t = new uint8_t[65536];
    uint8_t row[256], operand[256];
    for (int b = 0; b < 256; ++b) operand[b] = static_cast<uint8_t>(b);
    for (int a = 0; a < 256; ++a) {
      std::memset(row, a, sizeof(row));
      reduceLoop<T, F>(t + a * 256, row, operand, 256);
    }
    return t;
  }();
  return table;
}

template <typename T, typename F>
void fp8ReduceLoop(void* dst, const void* a, const void* b, size_t n) {
  if (n < kFp8PairTableMinCount) return reduceLoop<T, F>(dst, a, b, n);
  const uint8_t* t = fp8PairTable<T, F>();
  auto* d = static_cast<uint8_t*>(dst);
  const auto* x = static_cast<const uint8_t*>(a);
  const auto* y = static_cast<const uint8_t*>(b);
  for (size_t i = 0; i < n; ++i) d[i] = t[(static_cast<unsigned>(x[i]) << 8) | y[i]];
}

// round(v * (1/nranks)) for every fp8 value v, by scaleLoop itself.
template <typename T>
void fp8ScaleTable(uint8_t (&table)[256], int nranks) {
  uint8_t operand[256];
  for (int v = 0; v < 256; ++v) operand[v] = static_cast<uint8_t>(v);
  scaleLoop<T>(table, operand, 256, nranks);
}

template <typename T>
void fp8ScaleLoop(void* dst, const void* src, size_t n, int nranks) {
  if (n < kFp8ScaleTableMinCount) return scaleLoop<T>(dst, src, n, nranks);
  uint8_t scaled[256];
  fp8ScaleTable<T>(scaled, nranks);
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
  for (size_t i = 0; i < n; ++i) d[i] = scaled[s[i]];
}

// premulSumLoop rounds the scaled input to the type before it adds it: so its result is the sum
// table's entry for (partial, scaled input).
template <typename T>
void fp8PremulSumLoop(void* dst, const void* a, const void* b, size_t n, int nranks) {
  if (n < kFp8PairTableMinCount) return premulSumLoop<T>(dst, a, b, n, nranks);
  uint8_t scaled[256];
  fp8ScaleTable<T>(scaled, nranks);
  const uint8_t* t = fp8PairTable<T, FuncSum>();
  auto* d = static_cast<uint8_t*>(dst);
  const auto* x = static_cast<const uint8_t*>(a);
  const auto* y = static_cast<const uint8_t*>(b);
  for (size_t i = 0; i < n; ++i) d[i] = t[(static_cast<unsigned>(x[i]) << 8) | scaled[y[i]]];
}

template <typename T, typename F, typename V>
ReduceFn reduceFor() {
#ifdef LS_HAVE_F16C_LOOPS
  if constexpr (std::is_same_v<T, Half>) return &halfReduceLoop<V, F>;
#endif
  if constexpr (kFp8<T>) return &fp8ReduceLoop<T, F>;
  return &reduceLoop<T, F>;
}

#ifndef LS_HAVE_F16C_LOOPS
struct VecSum {};
struct VecProd {};
struct VecMax {};
struct VecMin {};
#endif

// Non-temporal copy: align the destination to 16 bytes, stream the middle, copy the ends.
void streamCopyLoop(void* dst, const void* src, size_t bytes) {
#if defined(__SSE2__)
  auto* d = static_cast<char*>(dst);
  auto* s = static_cast<const char*>(src);
  size_t head = (16 - (reinterpret_cast<uintptr_t>(d) & 15)) & 15;
  if (bytes < head + 64) return static_cast<void>(std::memcpy(dst, src, bytes));
  std::memcpy(d, s, head);
  size_t i = head;
#if defined(__AVX2__)
  if ((reinterpret_cast<uintptr_t>(d + i) & 31) != 0) {  // one 16-byte store to reach 32-byte alignment
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
    i += 16;
  }
  for (; i + 128 <= bytes; i += 128) {
    __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
    __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 32));
    __m256i v2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 64));
    __m256i v3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 96));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i), v0);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i + 32), v1);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i + 64), v2);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i + 96), v3);
  }
#endif
  for (; i + 16 <= bytes; i += 16) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
  }
  std::memcpy(d + i, s + i, bytes - i);
  _mm_sfence();  // streamed stores are weakly ordered: make them visible before anyone is told
#else
  std::memcpy(dst, src, bytes);
#endif
}

KernelTable buildKernelTable() {
  KernelTable t{};
  for (int ti = 0; ti < lockstepNumTypes; ++ti) {
    const auto type = static_cast<lockstepDataType_t>(ti);
    dispatchType(type, [&](auto v) {
      using T = decltype(v);
      t.reduce[ti][0] = reduceFor<T, FuncSum, VecSum>();
      t.reduce[ti][1] = reduceFor<T, FuncProd, VecProd>();
      t.reduce[ti][2] = reduceFor<T, FuncMax, VecMax>();
      t.reduce[ti][3] = reduceFor<T, FuncMin, VecMin>();
      if constexpr (kFloating<T>) {
        t.premulSum[ti] = &premulSumLoop<T>;
        t.scale[ti] = &scaleLoop<T>;
        if constexpr (kFp8<T>) {
          t.premulSum[ti] = &fp8PremulSumLoop<T>;
          t.scale[ti] = &fp8ScaleLoop<T>;
        }
#ifdef LS_HAVE_F16C_LOOPS
        if constexpr (std::is_same_v<T, Half>) {
          t.premulSum[ti] = &halfPremulSumLoop;
          t.scale[ti] = &halfScaleLoop;
        }
#endif
      } else {
        t.divide[ti] = &divideLoop<T>;
      }
      return 0;
    });
  }
  t.streamCopy = &streamCopyLoop;
  return t;
}

}  // namespace
}  // namespace lockstep
