// Storage types and conversions for the narrow floating-point formats: fp16 (IEEE binary16),
// bfloat16, and the OCP fp8 formats e4m3 (E4M3FN: no infinity) and e5m2. Plain bit manipulation,
// __host__ __device__, so the CPU and CUDA paths produce the same bits.
//
// Rules (they match the host paths of CUDA's cuda_fp16.h, cuda_bf16.h and cuda_fp8.h
// constructors, which tests/unit/float_types_test.cc checks bit for bit):
//   - float -> narrow rounds to nearest, ties to even; underflow goes to signed zero or a subnormal.
//   - fp16/bf16: overflow goes to +-Inf; any NaN becomes the canonical NaN 0x7FFF.
//   - fp8 (e4m3 and e5m2): saturating, as CUDA's __nv_fp8_e4m3(float) / __nv_fp8_e5m2(float):
//     finite overflow AND +-Inf become +-max finite (448 / 57344); any NaN becomes the
//     canonical NaN 0x7F (both formats, sign dropped).
//   - narrow -> float is exact.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LS_HD __host__ __device__ __forceinline__
#else
#define LS_HD inline __attribute__((always_inline))
#endif

namespace lockstep {

struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};
struct Fp8E4M3 {
  uint8_t bits;
};
struct Fp8E5M2 {
  uint8_t bits;
};

LS_HD uint32_t floatToBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
LS_HD float bitsToFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// c ? a : b as bit masks: compilers keep this branch-free where a ternary on mixed-width values
// would stay a jump and stop the loop from vectorising.
LS_HD uint32_t selectBits(bool c, uint32_t a, uint32_t b) {
  uint32_t m = 0u - static_cast<uint32_t>(c);
  return (a & m) | (b & ~m);
}

// Every conversion is branch-free (selects, not jumps) so the compiler can vectorise the kernels
// that call it; each computes both candidate results and picks one.

// ---- fp16 ----
LS_HD float halfToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t o = static_cast<uint32_t>(h & 0x7fffu) << 13;  // exponent and mantissa, float-aligned
  uint32_t exp = o & 0x0f800000u;
  uint32_t normal = o + 0x38000000u;       // rebias 15 -> 127
  uint32_t infNan = normal + 0x38000000u;  // exponent all ones, payload kept
  // Zero or subnormal: man * 2^-24, computed exactly as (2^-14 + man * 2^-24) - 2^-14.
  uint32_t sub = floatToBits(bitsToFloat(normal + 0x00800000u) - bitsToFloat(0x38800000u));
  uint32_t r = exp == 0x0f800000u ? infNan : (exp == 0 ? sub : normal);
  return bitsToFloat(r | sign);
}

LS_HD uint16_t floatToHalf(float f) {
  uint32_t x = floatToBits(f);
  uint32_t ax = x & 0x7fffffffu;
  uint32_t sign = (x >> 16) & 0x8000u;
  // Normal: rebias 127 -> 15 and round to nearest even at bit 13 (a carry moves into the exponent).
  uint32_t normal = (ax + 0xc8000fffu + ((ax >> 13) & 1u)) >> 13;
  // Subnormal: adding 0.5 puts the float's last mantissa bit at 2^-24, the fp16 subnormal step, so
  // the FPU's own round-to-nearest-even does the rounding; the difference is the code.
  uint32_t sub = floatToBits(bitsToFloat(ax) + 0.5f) - 0x3f000000u;
  uint32_t r = ax >= 0x38800000u ? normal : sub;
  r = ax > 0x477fefffu ? 0x7c00u : r;                                     // rounds past 65504, or Inf
  return static_cast<uint16_t>(ax > 0x7f800000u ? 0x7fffu : (r | sign));  // NaN -> canonical
}

// ---- bfloat16 ----
LS_HD float bf16ToFloat(uint16_t b) { return bitsToFloat(static_cast<uint32_t>(b) << 16); }

LS_HD uint16_t floatToBf16(float f) {
  uint32_t x = floatToBits(f);
  uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;  // ties to even; carries into exponent
  return static_cast<uint16_t>((x & 0x7fffffffu) > 0x7f800000u ? 0x7fffu : rounded);  // NaN -> canonical
}

// ---- fp8 ----
// kExp/kMan: field widths. kMaxCode: the largest finite code. kOverflow: float bits above which a
// value saturates. kMinNormal: float bits of 2^(1-bias). (Values at or below half the smallest
// subnormal round to zero through the subnormal path.)
template <int kExp, int kMan, uint32_t kMaxCode, uint32_t kOverflow, uint32_t kMinNormal>
struct Fp8Format {
  static constexpr int kBias = (1 << (kExp - 1)) - 1;
  static constexpr uint32_t kDrop = 23 - kMan;  // float mantissa bits dropped
  // A power of two whose float ulp is the fp8 subnormal step 2^(1 - bias - kMan).
  static constexpr uint32_t kMagicBits = static_cast<uint32_t>(127 + 24 - kBias - kMan) << 23;

  static LS_HD uint8_t fromFloat(float f) {
    uint32_t x = floatToBits(f);
    uint32_t sign = (x >> 24) & 0x80u;
    uint32_t ax = x & 0x7fffffffu;
    // Normal: rebias and round to nearest even at bit kDrop.
    uint32_t normal =
        (ax + (static_cast<uint32_t>(kBias - 127) << 23) + ((1u << (kDrop - 1)) - 1) + ((ax >> kDrop) & 1u)) >> kDrop;
    // Subnormal: the FPU rounds at the subnormal step once the magic number is added.
    uint32_t sub = floatToBits(bitsToFloat(ax) + bitsToFloat(kMagicBits)) - kMagicBits;
    uint32_t r = selectBits(ax >= kMinNormal, normal, sub);
    r = selectBits(ax > kOverflow, kMaxCode, r);
    return static_cast<uint8_t>(selectBits(ax > 0x7f800000u, 0x7fu, r | sign));  // NaN -> canonical
  }

  static LS_HD float toFloat(uint8_t v) {
    uint32_t sign = static_cast<uint32_t>(v & 0x80u) << 24;
    uint32_t exp = (v >> kMan) & ((1u << kExp) - 1);
    uint32_t man = v & ((1u << kMan) - 1);
    // Subnormal: man * 2^(1 - bias - kMan), exact in float.
    float sub = static_cast<float>(man) * bitsToFloat(static_cast<uint32_t>(127 + 1 - kBias - kMan) << 23);
    uint32_t normal = sign | ((exp + 127 - kBias) << 23) | (man << (23 - kMan));
    return bitsToFloat(selectBits(exp == 0, floatToBits(sub) | sign, normal));
  }
};

// e4m3: 448 max (0x7E), overflow above 464 (0x43E80000), min normal 2^-6.
using E4M3 = Fp8Format<4, 3, 0x7eu, 0x43e80000u, 0x3c800000u>;
// e5m2: 57344 max (0x7B), overflow at 61440 and above, min normal 2^-14.
using E5M2 = Fp8Format<5, 2, 0x7bu, 0x47700000u - 1u, 0x38800000u>;

LS_HD float fp8e4m3ToFloat(uint8_t v) {
  // 0x7F / 0xFF are NaN (E4M3FN has no infinity): a quiet NaN with the code's sign.
  uint32_t nan = 0x7fc00000u | (static_cast<uint32_t>(v & 0x80u) << 24);
  return bitsToFloat(selectBits((v & 0x7fu) == 0x7fu, nan, floatToBits(E4M3::toFloat(v))));
}
LS_HD uint8_t floatToFp8e4m3(float f) { return E4M3::fromFloat(f); }

LS_HD float fp8e5m2ToFloat(uint8_t v) {
  // 0x7C is Inf, 0x7D..0x7F NaN: exponent all ones, payload kept.
  uint32_t a = v & 0x7fu;
  uint32_t special = (static_cast<uint32_t>(v & 0x80u) << 24) | 0x7f800000u | ((a & 3u) << 21);
  return bitsToFloat(selectBits(a >= 0x7cu, special, floatToBits(E5M2::toFloat(v))));
}
LS_HD uint8_t floatToFp8e5m2(float f) { return E5M2::fromFloat(f); }

}  // namespace lockstep
