// Gradient compression on the wire: fp32 gradients travel as bf16 or fp16 and are widened back
// after the all-reduce, halving the bytes sent.
//
// Conversions follow the library's rules for the narrow formats (kernels/float_types.h, checked
// against these in tests/unit/ddp_wire_format_test.cc): float -> narrow rounds to nearest, ties
// to even; fp16 and bf16 overflow to +-Inf; every NaN becomes the canonical NaN 0x7FFF;
// narrow -> float is exact. They are written again here, not shared, because this header is
// installed with lockstep/ddp.hpp and the kernels are not.
//
// Rounding: each rank's gradient is scaled by 1/nranks in fp32 and rounded once to the wire type
// (here); the reduction then sums the narrow values in float and rounds back to the wire type once
// per step; widening the result is exact.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "bucket_plan.h"

namespace lockstep::ddp {

enum class Compression { kNone, kBf16, kFp16 };

inline const char* compressionName(Compression c) {
  switch (c) {
    case Compression::kNone:
      return "none";
    case Compression::kBf16:
      return "bf16";
    case Compression::kFp16:
      return "fp16";
  }
  return "?";
}

inline Compression parseCompression(const std::string& s) {
  if (s == "none" || s == "fp32") return Compression::kNone;
  if (s == "bf16" || s == "bfloat16") return Compression::kBf16;
  if (s == "fp16" || s == "float16") return Compression::kFp16;
  throw Exception(lockstepInvalidArgument, "lockstep ddp: unknown compression '" + s + "' (none, bf16, fp16)");
}

// The dtype a bucket of `grad` gradients travels in. Only fp32 is compressed: narrower or wider
// types travel as they are.
inline lockstepDataType_t wireType(lockstepDataType_t grad, Compression c) {
  if (grad != lockstepFloat32 || c == Compression::kNone) return grad;
  return c == Compression::kBf16 ? lockstepBfloat16 : lockstepFloat16;
}

namespace wire {

inline uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float floatOf(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t floatToBf16(float f) {
  const uint32_t u = bitsOf(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  // Adding 0x7FFF plus the kept lsb rounds to nearest even; a carry out of the mantissa moves into
  // the exponent, which is also how the largest finite values round up to Inf.
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float bf16ToFloat(uint16_t b) { return floatOf(static_cast<uint32_t>(b) << 16); }

inline uint16_t floatToHalf(float f) {
  const uint32_t u = bitsOf(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7fff;
  // 65520 (0x477FF000) is halfway between 65504, the largest fp16, and 65536: ties to even go up.
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (a >= 0x38800000u) {  // normal fp16: rebias 127 -> 15 and round at bit 13
    const uint32_t r = a - 0x38000000u;
    return static_cast<uint16_t>(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13));
  }
  // Subnormal or zero: 0.5f has an ulp of 2^-24, the fp16 subnormal step, so adding it makes the
  // FPU round to nearest even at that step; what exceeds 0.5 is the code (0x400 if it rounded up
  // to the smallest normal).
  return static_cast<uint16_t>(sign | (bitsOf(floatOf(a) + 0.5f) - 0x3f000000u));
}
inline float halfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: man x 2^-24, exact in float
    const float v = static_cast<float>(man) * 5.9604644775390625e-08f;
    return floatOf(bitsOf(v) | sign);
  }
  if (exp == 31) return floatOf(sign | 0x7f800000u | (man << 13));
  return floatOf(sign | ((exp + 112u) << 23) | (man << 13));
}

}  // namespace wire

inline bool isNarrow(lockstepDataType_t t) { return t == lockstepBfloat16 || t == lockstepFloat16; }

inline uint16_t toNarrow(float f, lockstepDataType_t narrow) {
  return narrow == lockstepBfloat16 ? wire::floatToBf16(f) : wire::floatToHalf(f);
}
inline float fromNarrow(uint16_t v, lockstepDataType_t narrow) {
  return narrow == lockstepBfloat16 ? wire::bf16ToFloat(v) : wire::halfToFloat(v);
}

// fp32 gradients -> narrow (bf16 or fp16) wire values, each scaled by `scale` in fp32 first and
// then rounded once. The DDP layer scales by 1/nranks here and sums on the wire, rather than
// using the library's avg, so each rank's contribution is rounded exactly once, by this code.
inline void encode(const float* in, uint16_t* out, size_t n, lockstepDataType_t narrow, float scale) {
  if (narrow == lockstepBfloat16) {
    for (size_t i = 0; i < n; ++i) out[i] = wire::floatToBf16(in[i] * scale);
  } else {
    for (size_t i = 0; i < n; ++i) out[i] = wire::floatToHalf(in[i] * scale);
  }
}

// Narrow gradients scaled in place of a copy: out = round(float(in) x scale), same format.
inline void rescale(const uint16_t* in, uint16_t* out, size_t n, lockstepDataType_t narrow, float scale) {
  for (size_t i = 0; i < n; ++i) out[i] = toNarrow(fromNarrow(in[i], narrow) * scale, narrow);
}

// Narrow wire values -> fp32 (exact).
inline void decode(const uint16_t* in, float* out, size_t n, lockstepDataType_t narrow) {
  if (narrow == lockstepBfloat16) {
    for (size_t i = 0; i < n; ++i) out[i] = wire::bf16ToFloat(in[i]);
  } else {
    for (size_t i = 0; i < n; ++i) out[i] = wire::halfToFloat(in[i]);
  }
}

}  // namespace lockstep::ddp
