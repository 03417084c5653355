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
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
LS_HD float bitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---- fp16 ----
LS_HD float halfToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bitsToFloat(sign | 0x7f800000u | (man << 13));  // Inf / NaN
  if (exp == 0) {
    // Zero or subnormal: man * 2^-24, exact in float.
    float f = static_cast<float>(man) * 5.9604644775390625e-8f;
    return sign ? -f : f;
  }
  return bitsToFloat(sign | ((exp + 112u) << 23) | (man << 13));
}

LS_HD uint16_t floatToHalf(float f) {
  uint32_t x = floatToBits(f);
  uint32_t u = x & 0x7fffffffu;
  uint32_t sign = (x >> 16) & 0x8000u;
  if (u > 0x7f800000u) return 0x7fffu;  // NaN -> canonical
  if (u == 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (u > 0x477fefffu) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  uint32_t result, remainder;
  if (u >= 0x38800000u) {  // normal
    remainder = u << 19;
    result = sign | ((u - 0x38000000u) >> 13);
  } else if (u < 0x33000001u) {  // rounds to zero
    return static_cast<uint16_t>(sign);
  } else {  // subnormal
    uint32_t shift = 0x7eu - (u >> 23);
    uint32_t mantissa = (u & 0x7fffffu) | 0x800000u;
    remainder = mantissa << (32u - shift);
    result = sign | (mantissa >> shift);
  }
  if (remainder > 0x80000000u || (remainder == 0x80000000u && (result & 1u))) ++result;
  return static_cast<uint16_t>(result);
}

// ---- bfloat16 ----
LS_HD float bf16ToFloat(uint16_t b) { return bitsToFloat(static_cast<uint32_t>(b) << 16); }

LS_HD uint16_t floatToBf16(float f) {
  uint32_t x = floatToBits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN -> canonical
  uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);       // ties to even; carries into exponent
  return static_cast<uint16_t>((x + rounding) >> 16);
}

// ---- fp8 ----
// kExp/kMan: field widths. kMaxCode: the largest finite code. kOverflow: float bits above which a
// value saturates. kMinNormal, kHalfMinDenorm: float bits of 2^(1-bias) and half the smallest
// subnormal (at or below it, the value rounds to zero).
template <int kExp, int kMan, uint32_t kMaxCode, uint32_t kOverflow, uint32_t kMinNormal, uint32_t kHalfMinDenorm>
struct Fp8Format {
  static constexpr int kBias = (1 << (kExp - 1)) - 1;

  static LS_HD uint8_t fromFloat(float f) {
    uint32_t x = floatToBits(f);
    uint32_t sign = (x >> 24) & 0x80u;
    uint32_t ax = x & 0x7fffffffu;
    uint32_t res;
    if (ax > 0x7f800000u) {
      return 0x7fu;  // canonical NaN
    } else if (ax > kOverflow) {
      res = kMaxCode;
    } else if (ax <= kHalfMinDenorm) {
      res = 0;
    } else {
      constexpr uint32_t kDrop = 23 - kMan;  // float mantissa bits dropped
      constexpr uint32_t kHalfUlp = 1u << (kDrop - 1);
      int exp = static_cast<int>(ax >> 23) - 127 + kBias;
      uint32_t mantissa = (ax >> kDrop) & ((1u << kMan) - 1);
      if (ax >= kMinNormal) {
        res = (static_cast<uint32_t>(exp) << kMan) | mantissa;
        uint32_t round = ax & ((kHalfUlp << 1) - 1);
        if (round > kHalfUlp || (round == kHalfUlp && (mantissa & 1u))) ++res;
      } else {
        uint32_t shift = static_cast<uint32_t>(1 - exp);
        mantissa |= 1u << kMan;
        res = mantissa >> shift;
        uint32_t round = (ax | (1u << 23)) & ((kHalfUlp << (shift + 1)) - 1);
        if (round > (kHalfUlp << shift) || (round == (kHalfUlp << shift) && (res & 1u))) ++res;
      }
    }
    return static_cast<uint8_t>(res | sign);
  }

  static LS_HD float toFloat(uint8_t v) {
    uint32_t sign = static_cast<uint32_t>(v & 0x80u) << 24;
    uint32_t exp = (v >> kMan) & ((1u << kExp) - 1);
    uint32_t man = v & ((1u << kMan) - 1);
    if (exp == 0) {
      // Subnormal: man * 2^(1 - bias - kMan), exact in float.
      float f = static_cast<float>(man) * bitsToFloat(static_cast<uint32_t>(127 + 1 - kBias - kMan) << 23);
      return sign ? -f : f;
    }
    return bitsToFloat(sign | ((exp + 127 - kBias) << 23) | (man << (23 - kMan)));
  }
};

// e4m3: 448 max (0x7E), overflow above 464 (0x43E80000), min normal 2^-6, half min denorm 2^-10.
using E4M3 = Fp8Format<4, 3, 0x7eu, 0x43e80000u, 0x3c800000u, 0x3a800000u>;
// e5m2: 57344 max (0x7B), overflow at 61440 and above, min normal 2^-14, half min denorm 2^-17.
using E5M2 = Fp8Format<5, 2, 0x7bu, 0x47700000u - 1u, 0x38800000u, 0x37000000u>;

LS_HD float fp8e4m3ToFloat(uint8_t v) {
  if ((v & 0x7fu) == 0x7fu) return bitsToFloat(0x7fc00000u | (static_cast<uint32_t>(v & 0x80u) << 24));
  return E4M3::toFloat(v);
}
LS_HD uint8_t floatToFp8e4m3(float f) { return E4M3::fromFloat(f); }

LS_HD float fp8e5m2ToFloat(uint8_t v) {
  uint32_t a = v & 0x7fu;
  if (a >= 0x7cu) {  // Inf (0x7C) or NaN
    uint32_t sign = static_cast<uint32_t>(v & 0x80u) << 24;
    return bitsToFloat(sign | 0x7f800000u | ((a & 3u) << 21));
  }
  return E5M2::toFloat(v);
}
LS_HD uint8_t floatToFp8e5m2(float f) { return E5M2::fromFloat(f); }

}  // namespace lockstep
