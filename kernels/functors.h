// Element functors, shared by the CPU kernels and (later) the CUDA ones: __host__ __device__.
//
// Each storage type has a compute type: narrow floats (fp16, bf16, fp8) widen to float, combine,
// and round back once per step (round-to-nearest-even, see float_types.h). Integers wrap on
// overflow (two's complement, computed in unsigned arithmetic so it is defined behaviour).
// Floating min/max propagate NaN: if either input is NaN the result is that NaN (a before b).
// A NaN that arithmetic makes (sum, product, average, the premultiplied sum) is the canonical
// NaN, all ones but the sign (float 0x7FFFFFFF, double 0x7FFFFFFFFFFFFFFF), as the narrow
// formats' 0x7FFF and 0x7F are: which operand's payload an x86 add keeps is the first source of
// the instruction the compiler emitted, and clang and g++ emit them in different orders, so the
// baseline and AVX2 paths of a clang build disagreed on two NaNs, and ranks on CPUs of different
// ISAs held different bits (helper-78).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/float_types.h"

namespace lockstep {

template <typename T, typename Enable = void>
struct ElemTraits {  // plain arithmetic types
  using Compute = T;
  static LS_HD Compute load(T v) { return v; }
  static LS_HD T store(Compute v) { return v; }
};
template <>
struct ElemTraits<Half> {
  using Compute = float;
  static LS_HD float load(Half v) { return halfToFloat(v.bits); }
  static LS_HD Half store(float v) { return Half{floatToHalf(v)}; }
};
template <>
struct ElemTraits<BFloat16> {
  using Compute = float;
  static LS_HD float load(BFloat16 v) { return bf16ToFloat(v.bits); }
  static LS_HD BFloat16 store(float v) { return BFloat16{floatToBf16(v)}; }
};
template <>
struct ElemTraits<Fp8E4M3> {
  using Compute = float;
  static LS_HD float load(Fp8E4M3 v) { return fp8e4m3ToFloat(v.bits); }
  static LS_HD Fp8E4M3 store(float v) { return Fp8E4M3{floatToFp8e4m3(v)}; }
};
template <>
struct ElemTraits<Fp8E5M2> {
  using Compute = float;
  static LS_HD float load(Fp8E5M2 v) { return fp8e5m2ToFloat(v.bits); }
  static LS_HD Fp8E5M2 store(float v) { return Fp8E5M2{floatToFp8e5m2(v)}; }
};

// `r`, or the canonical NaN where it is a NaN (integers: `r`).
template <typename C>
LS_HD C settleNaN(C r) {
  if constexpr (std::is_same_v<C, float>) {
    return r != r ? bitsToFloat(0x7fffffffu) : r;
  } else if constexpr (std::is_same_v<C, double>) {
#if defined(__CUDA_ARCH__)
    const double nan = __longlong_as_double(0x7fffffffffffffffll);
#else
    const uint64_t bits = 0x7fffffffffffffffull;
    double nan;
    std::memcpy(&nan, &bits, sizeof(nan));
#endif
    return r != r ? nan : r;
  } else {
    return r;
  }
}

template <typename C>
LS_HD C wrapAdd(C a, C b) {
  if constexpr (std::is_integral_v<C>) {
    using U = std::make_unsigned_t<C>;
    return static_cast<C>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
  } else {
    return settleNaN(a + b);
  }
}
template <typename C>
LS_HD C wrapMul(C a, C b) {
  if constexpr (std::is_integral_v<C>) {
    // Promote to at least unsigned int so uint8/uint16 products do not go through signed int.
    using U = std::common_type_t<std::make_unsigned_t<C>, unsigned int>;
    return static_cast<C>(static_cast<U>(a) * static_cast<U>(b));
  } else {
    return settleNaN(a * b);
  }
}

struct FuncSum {
  template <typename C>
  LS_HD C operator()(C a, C b) const {
    return wrapAdd(a, b);
  }
};
struct FuncProd {
  template <typename C>
  LS_HD C operator()(C a, C b) const {
    return wrapMul(a, b);
  }
};
struct FuncMax {
  template <typename C>
  LS_HD C operator()(C a, C b) const {
    // Selects rather than early returns, so loops over it vectorise.
    if constexpr (!std::is_integral_v<C>) return a != a ? a : (b != b ? b : (a < b ? b : a));
    return a < b ? b : a;
  }
};
struct FuncMin {
  template <typename C>
  LS_HD C operator()(C a, C b) const {
    if constexpr (!std::is_integral_v<C>) return a != a ? a : (b != b ? b : (b < a ? b : a));
    return b < a ? b : a;
  }
};

// Avg finishes a sum by dividing once by the rank count: truncating for integers, in the compute
// type for floats (float for the narrow formats, then rounded).
template <typename C>
LS_HD C divideBy(C v, int n) {
  if constexpr (std::is_integral_v<C> && std::is_signed_v<C>) {
    return static_cast<C>(static_cast<int64_t>(v) / n);
  } else if constexpr (std::is_integral_v<C>) {
    return static_cast<C>(static_cast<uint64_t>(v) / static_cast<uint64_t>(n));
  } else {
    return settleNaN(v / static_cast<C>(n));
  }
}

}  // namespace lockstep
