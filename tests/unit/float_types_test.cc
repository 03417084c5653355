// Conversions for fp16, bf16, fp8 e4m3 and e5m2 against two references: an independent one
// (the nearest representable value, found by search, ties to even) and, when the CUDA toolkit's
// headers are present, NVIDIA's own host conversion code, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "kernels/float_types.h"

#ifdef LOCKSTEP_HAVE_CUDA_HEADERS
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#endif

namespace lockstep {
namespace {

struct Format {
  const char* name;
  int bits;
  std::function<float(uint32_t)> toFloat;
  std::function<uint32_t(float)> fromFloat;
  bool saturates;    // overflow -> max finite (fp8) instead of Inf (fp16/bf16)
  uint32_t infCode;  // +Inf, for the formats that do not saturate
};

std::vector<Format> formats() {
  return {
      {"fp16", 16, [](uint32_t c) { return halfToFloat(static_cast<uint16_t>(c)); },
       [](float f) { return static_cast<uint32_t>(floatToHalf(f)); }, false, 0x7c00},
      {"bf16", 16, [](uint32_t c) { return bf16ToFloat(static_cast<uint16_t>(c)); },
       [](float f) { return static_cast<uint32_t>(floatToBf16(f)); }, false, 0x7f80},
      {"e4m3", 8, [](uint32_t c) { return fp8e4m3ToFloat(static_cast<uint8_t>(c)); },
       [](float f) { return static_cast<uint32_t>(floatToFp8e4m3(f)); }, true, 0},
      {"e5m2", 8, [](uint32_t c) { return fp8e5m2ToFloat(static_cast<uint8_t>(c)); },
       [](float f) { return static_cast<uint32_t>(floatToFp8e5m2(f)); }, true, 0},
  };
}

// Positive codes in value order (the encodings are monotonic), finite ones only.
std::vector<std::pair<double, uint32_t>> positiveFinite(const Format& fmt) {
  std::vector<std::pair<double, uint32_t>> v;
  uint32_t signBit = 1u << (fmt.bits - 1);
  for (uint32_t c = 0; c < signBit; ++c) {
    float f = fmt.toFloat(c);
    if (std::isfinite(f)) v.push_back({f, c});
  }
  return v;
}

// The independent reference: nearest finite value, ties to the even code; beyond the largest
// finite value, Inf for IEEE-style formats (once past max + half an ulp) or max for fp8.
uint32_t referenceEncode(const Format& fmt, const std::vector<std::pair<double, uint32_t>>& pos, float f) {
  uint32_t signBit = 1u << (fmt.bits - 1);
  uint32_t sign = std::signbit(f) ? signBit : 0;
  double a = std::fabs(static_cast<double>(f));
  auto hi = std::lower_bound(pos.begin(), pos.end(), std::make_pair(a, 0u));
  if (hi == pos.end()) {
    const auto& max = pos.back();
    double ulp = max.first - pos[pos.size() - 2].first;
    if (fmt.saturates || a < max.first + ulp / 2) return sign | max.second;
    return sign | fmt.infCode;
  }
  if (hi->first == a || hi == pos.begin()) return sign | hi->second;
  auto lo = hi - 1;
  double dl = a - lo->first, dh = hi->first - a;
  if (dl < dh) return sign | lo->second;
  if (dh < dl) return sign | hi->second;
  return sign | ((lo->second & 1) ? hi->second : lo->second);
}

// A sweep over float bit patterns: every pattern with a stride, plus all around each code.
std::vector<float> sampleFloats(const Format& fmt) {
  std::vector<float> v;
  for (uint64_t b = 0; b <= 0xffffffffull; b += 65521) v.push_back(bitsToFloat(static_cast<uint32_t>(b)));
  for (uint32_t c = 0; c < (1u << fmt.bits); ++c) {
    float f = fmt.toFloat(c);
    if (!std::isfinite(f)) continue;
    uint32_t b = floatToBits(f);
    for (int d = -3; d <= 3; ++d) v.push_back(bitsToFloat(b + d));
    float next = std::nextafter(f, std::numeric_limits<float>::infinity());
    v.push_back(f + (next - f) / 2);
  }
  for (float f : {0.0f, -0.0f, 1.0f, 448.0f, 464.0f, 465.0f, 480.0f, 57344.0f, 61439.0f, 61440.0f, 65504.0f, 65519.0f,
                  65520.0f, 1e30f, -1e30f, std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::denorm_min()}) {
    v.push_back(f);
  }
  return v;
}

TEST(FloatTypes, NarrowToFloatAndBackIsIdentity) {
  for (const auto& fmt : formats()) {
    for (uint32_t c = 0; c < (1u << fmt.bits); ++c) {
      float f = fmt.toFloat(c);
      if (std::isnan(f)) continue;
      if (fmt.saturates && std::isinf(f)) continue;  // e5m2 Inf saturates to max by design
      ASSERT_EQ(fmt.fromFloat(f), c) << fmt.name << " code " << c;
    }
  }
}

TEST(FloatTypes, FloatToNarrowRoundsToNearestEven) {
  for (const auto& fmt : formats()) {
    auto pos = positiveFinite(fmt);
    for (float f : sampleFloats(fmt)) {
      if (std::isnan(f)) continue;
      ASSERT_EQ(fmt.fromFloat(f), referenceEncode(fmt, pos, f))
          << fmt.name << " of " << f << " (bits 0x" << std::hex << floatToBits(f) << ")";
    }
  }
}

TEST(FloatTypes, NaNRules) {
  float qnan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(floatToHalf(qnan), 0x7fff);
  EXPECT_EQ(floatToHalf(-qnan), 0x7fff);
  EXPECT_EQ(floatToBf16(qnan), 0x7fff);
  EXPECT_EQ(floatToFp8e4m3(qnan), 0x7f);
  EXPECT_EQ(floatToFp8e4m3(-qnan), 0x7f) << "NaN is canonical: sign dropped";
  EXPECT_EQ(floatToFp8e5m2(qnan), 0x7f);
  EXPECT_EQ(floatToFp8e5m2(-qnan), 0x7f);
  EXPECT_TRUE(std::isnan(fp8e4m3ToFloat(0x7f)));
  EXPECT_TRUE(std::isnan(fp8e4m3ToFloat(0xff)));
  EXPECT_TRUE(std::isinf(fp8e5m2ToFloat(0x7c)));
  EXPECT_TRUE(std::isnan(fp8e5m2ToFloat(0x7d)));
  // Saturation of fp8, including infinities.
  EXPECT_EQ(floatToFp8e4m3(std::numeric_limits<float>::infinity()), 0x7e);
  EXPECT_EQ(floatToFp8e5m2(-std::numeric_limits<float>::infinity()), 0xfb);
  EXPECT_EQ(floatToHalf(65520.0f), 0x7c00) << "fp16 overflows to Inf";
}

#ifdef LOCKSTEP_HAVE_CUDA_HEADERS
TEST(FloatTypes, MatchesCudaHostConversionsBitForBit) {
  for (const auto& fmt : formats()) {
    for (float f : sampleFloats(fmt)) {
      uint32_t want;
      std::string n = fmt.name;
      if (n == "fp16") {
        __half h = __float2half(f);
        want = reinterpret_cast<__half_raw&>(h).x;
      } else if (n == "bf16") {
        __nv_bfloat16 h = __float2bfloat16(f);
        want = reinterpret_cast<__nv_bfloat16_raw&>(h).x;
      } else if (n == "e4m3") {
        want = __nv_fp8_e4m3(f).__x;
      } else {
        want = __nv_fp8_e5m2(f).__x;
      }
      ASSERT_EQ(fmt.fromFloat(f), want) << fmt.name << " of " << f << " (bits 0x" << std::hex << floatToBits(f) << ")";
    }
  }
  for (uint32_t c = 0; c < 256; ++c) {
    __nv_fp8_e4m3 a;
    a.__x = static_cast<__nv_fp8_storage_t>(c);
    __nv_fp8_e5m2 b;
    b.__x = static_cast<__nv_fp8_storage_t>(c);
    float fa = static_cast<float>(a), fb = static_cast<float>(b);
    EXPECT_TRUE((std::isnan(fa) && std::isnan(fp8e4m3ToFloat(c))) || fa == fp8e4m3ToFloat(c)) << c;
    EXPECT_TRUE((std::isnan(fb) && std::isnan(fp8e5m2ToFloat(c))) || fb == fp8e5m2ToFloat(c)) << c;
  }
}
#else
TEST(FloatTypes, MatchesCudaHostConversionsBitForBit) { GTEST_SKIP() << "CUDA headers not found at build time"; }
#endif

}  // namespace
}  // namespace lockstep
