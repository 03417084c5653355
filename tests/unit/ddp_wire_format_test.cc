// The DDP layer's own bf16/fp16 conversions (include/lockstep/ddp/wire_format.h, installed, so not shared
// with the kernels) agree bit for bit with the library's (kernels/float_types.h): every 16-bit
// pattern widened, and a sweep of float bit patterns narrowed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kernels/float_types.h"
#include "lockstep/ddp/wire_format.h"

namespace lockstep::ddp {
namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(DdpWireFormat, WideningMatchesTheKernelsForEveryPattern) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const auto v = static_cast<uint16_t>(h);
    const float mineHalf = wire::halfToFloat(v), theirsHalf = lockstep::halfToFloat(v);
    const float mineBf = wire::bf16ToFloat(v), theirsBf = lockstep::bf16ToFloat(v);
    if (std::isnan(theirsHalf)) {
      EXPECT_TRUE(std::isnan(mineHalf)) << std::hex << h;
    } else {
      EXPECT_EQ(bits(mineHalf), bits(theirsHalf)) << std::hex << h;
    }
    EXPECT_EQ(bits(mineBf), bits(theirsBf)) << std::hex << h;
  }
}

TEST(DdpWireFormat, NarrowingMatchesTheKernelsOnAFloatSweep) {
  // A prime stride visits every exponent and many mantissas (about 17 million patterns), plus
  // the edges: zeros, subnormals, the fp16 overflow threshold, infinities and NaNs.
  std::vector<uint32_t> patterns = {0x00000000u, 0x80000000u, 0x00000001u, 0x33000000u, 0x33000001u, 0x387fe000u,
                                    0x387ff000u, 0x38800000u, 0x477fe000u, 0x477fefffu, 0x477ff000u, 0x7f7fffffu,
                                    0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u, 0x7f800001u};
  for (uint64_t u = 0; u <= 0xffffffffull; u += 251) patterns.push_back(static_cast<uint32_t>(u));
  size_t wrong = 0;
  for (uint32_t u : patterns) {
    float f;
    std::memcpy(&f, &u, 4);
    if (wire::floatToHalf(f) != lockstep::floatToHalf(f) && ++wrong < 10) {
      ADD_FAILURE() << "fp16 of " << std::hex << u << ": " << wire::floatToHalf(f) << " vs "
                    << lockstep::floatToHalf(f);
    }
    if (wire::floatToBf16(f) != lockstep::floatToBf16(f) && ++wrong < 10) {
      ADD_FAILURE() << "bf16 of " << std::hex << u << ": " << wire::floatToBf16(f) << " vs "
                    << lockstep::floatToBf16(f);
    }
  }
  EXPECT_EQ(wrong, 0u);
}

TEST(DdpWireFormat, RoundsToNearestEvenAndOverflowsToInfinity) {
  EXPECT_EQ(wire::floatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(wire::floatToBf16(1.0f + 0x1p-8f), 0x3f80);    // a tie: stays even
  EXPECT_EQ(wire::floatToBf16(1.0f + 0x1.8p-7f), 0x3f82);  // a tie: rounds up to even
  EXPECT_EQ(wire::floatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(wire::floatToHalf(65520.0f), 0x7c00);
  EXPECT_EQ(wire::floatToHalf(-1e9f), 0xfc00);
  EXPECT_EQ(wire::floatToHalf(std::nanf("")), 0x7fff);
  EXPECT_EQ(wire::floatToHalf(0x1p-25f), 0x0000);  // half the smallest subnormal: ties to even (zero)
  EXPECT_EQ(wire::floatToHalf(0x1.8p-24f), 0x0002);
}

TEST(DdpWireFormat, EncodeScalesOnceThenRoundsAndDecodeIsExact) {
  const float in[] = {3.0f, -0.75f, 1e-3f, 40000.0f};
  uint16_t out[4];
  encode(in, out, 4, lockstepFloat16, 0.25f);
  float back[4];
  decode(out, back, 4, lockstepFloat16);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(bits(back[i]), bits(wire::halfToFloat(wire::floatToHalf(in[i] * 0.25f))));
  EXPECT_EQ(back[0], 0.75f);
  EXPECT_EQ(back[3], 10000.0f);  // 40000 x 0.25 fits fp16, however the sum of four of them would not
  uint16_t scaled[4];
  rescale(out, scaled, 4, lockstepFloat16, 2.0f);
  EXPECT_EQ(wire::halfToFloat(scaled[0]), 1.5f);
}

TEST(DdpWireFormat, OnlyFloat32IsCompressed) {
  EXPECT_EQ(wireType(lockstepFloat32, Compression::kBf16), lockstepBfloat16);
  EXPECT_EQ(wireType(lockstepFloat32, Compression::kFp16), lockstepFloat16);
  EXPECT_EQ(wireType(lockstepFloat32, Compression::kNone), lockstepFloat32);
  EXPECT_EQ(wireType(lockstepFloat64, Compression::kBf16), lockstepFloat64);
  EXPECT_EQ(wireType(lockstepFloat16, Compression::kBf16), lockstepFloat16);
  EXPECT_EQ(parseCompression("bf16"), Compression::kBf16);
  EXPECT_THROW(parseCompression("int8"), Exception);
}

}  // namespace
}  // namespace lockstep::ddp
