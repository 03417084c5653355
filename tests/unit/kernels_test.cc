// The CPU reduction kernels: semantics that are easy to get wrong (integer wrap-around, NaN
// propagation, avg truncation, narrow-float rounding) and every dtype x op over lengths that
// exercise vector tails, misaligned pointers and in-place aliasing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu_reduce.h"
#include "kernels/dispatch.h"
#include "kernels/dtype.h"
#include "kernels/functors.h"

namespace lockstep {
namespace {

template <typename T>
T reduceOne(lockstepDataType_t t, lockstepRedOp_t op, T a, T b) {
  T out;
  reduceFn(t, op)(&out, &a, &b, 1);
  return out;
}

TEST(Kernels, IntegersWrapAround) {
  EXPECT_EQ(reduceOne<int8_t>(lockstepInt8, lockstepSum, 100, 100), -56);
  EXPECT_EQ(reduceOne<uint8_t>(lockstepUint8, lockstepProd, 200, 2), 144);
  EXPECT_EQ(reduceOne<int32_t>(lockstepInt32, lockstepSum, std::numeric_limits<int32_t>::max(), 1),
            std::numeric_limits<int32_t>::min());
  EXPECT_EQ(reduceOne<int64_t>(lockstepInt64, lockstepProd, int64_t(1) << 62, 4), 0);
  EXPECT_EQ(reduceOne<uint32_t>(lockstepUint32, lockstepProd, 65536u, 65536u), 0u);
}

TEST(Kernels, MinMaxAndSignedness) {
  EXPECT_EQ(reduceOne<int8_t>(lockstepInt8, lockstepMax, -5, 3), 3);
  EXPECT_EQ(reduceOne<int8_t>(lockstepInt8, lockstepMin, -5, 3), -5);
  EXPECT_EQ(reduceOne<uint64_t>(lockstepUint64, lockstepMax, ~0ull, 1), ~0ull);
}

TEST(Kernels, FloatMinMaxPropagateNaN) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(reduceOne<float>(lockstepFloat32, lockstepMax, nan, 1.0f)));
  EXPECT_TRUE(std::isnan(reduceOne<float>(lockstepFloat32, lockstepMin, 1.0f, nan)));
  EXPECT_TRUE(std::isnan(reduceOne<double>(lockstepFloat64, lockstepMax, 2.0, std::nan(""))));
  Half h = reduceOne<Half>(lockstepFloat16, lockstepMax, Half{0x7e00}, Half{floatToHalf(1.0f)});
  EXPECT_EQ(h.bits, 0x7fff) << "NaN through a narrow type comes out canonical";
}

TEST(Kernels, AvgDividesOnceTruncatingIntegers) {
  int32_t v[3] = {-7, 7, 9};
  divideFn(lockstepInt32)(v, 3, 2);
  EXPECT_EQ(v[0], -3);
  EXPECT_EQ(v[1], 3);
  EXPECT_EQ(v[2], 4);
  uint8_t u = 255;
  divideFn(lockstepUint8)(&u, 1, 256);
  EXPECT_EQ(u, 0) << "a divisor wider than the type must not wrap to zero";
  EXPECT_EQ(divideFn(lockstepFloat32), nullptr) << "floating avg does not divide at the end";
}

TEST(Kernels, FloatingAvgScalesEachInputSoNarrowTypesDoNotOverflow) {
  // NCCL's PreMulSum: partial + input / nranks, so 8 ranks averaging 8192 in fp16 (whose sum
  // 65536 would overflow to Inf) and 64 in fp8 e4m3 (512 would saturate at 448) come out right.
  ReduceKernels k = reduceKernels(lockstepFloat16, lockstepAvg);
  ASSERT_NE(k.premulSum, nullptr);
  ASSERT_NE(k.scale, nullptr);
  EXPECT_EQ(k.divide, nullptr);
  Half x{floatToHalf(8192.0f)}, acc;
  k.scale(&acc, &x, 1, 8);
  for (int r = 1; r < 8; ++r) k.premulSum(&acc, &acc, &x, 1, 8);
  EXPECT_EQ(halfToFloat(acc.bits), 8192.0f);
  ReduceKernels e = reduceKernels(lockstepFloat8e4m3, lockstepAvg);
  Fp8E4M3 y{floatToFp8e4m3(64.0f)}, acc8;
  e.scale(&acc8, &y, 1, 8);
  for (int r = 1; r < 8; ++r) e.premulSum(&acc8, &acc8, &y, 1, 8);
  EXPECT_EQ(fp8e4m3ToFloat(acc8.bits), 64.0f);
  ReduceKernels i = reduceKernels(lockstepInt32, lockstepAvg);
  EXPECT_EQ(i.premulSum, nullptr);
  EXPECT_NE(i.divide, nullptr);
}

TEST(Kernels, NarrowFloatsRoundOncePerStep) {
  // 1 + 2^-11 is a tie in fp16: round to even (1.0).
  Half a{floatToHalf(1.0f)}, b{floatToHalf(std::ldexp(1.0f, -11))};
  EXPECT_EQ(reduceOne<Half>(lockstepFloat16, lockstepSum, a, b).bits, floatToHalf(1.0f));
  // 1.5 + 3 = 4.5 rounds to 4 in e5m2 (between 4 and 5, tie to even mantissa 4).
  Fp8E5M2 x{floatToFp8e5m2(1.5f)}, y{floatToFp8e5m2(3.0f)};
  EXPECT_EQ(fp8e5m2ToFloat(reduceOne<Fp8E5M2>(lockstepFloat8e5m2, lockstepSum, x, y).bits), 4.0f);
  // bf16 saturates? No: it overflows to Inf like fp32.
  BFloat16 big{floatToBf16(3e38f)};
  EXPECT_TRUE(std::isinf(bf16ToFloat(reduceOne<BFloat16>(lockstepBfloat16, lockstepSum, big, big).bits)));
}

// A scalar reference written independently of the kernels' functors.
double refOp(lockstepRedOp_t op, double a, double b) {
  switch (op) {
    case lockstepProd:
      return a * b;
    case lockstepMax:
      return std::max(a, b);
    case lockstepMin:
      return std::min(a, b);
    default:
      return a + b;
  }
}

std::vector<lockstepDataType_t> allTypes() {
  std::vector<lockstepDataType_t> v;
  for (int t = 0; t < lockstepNumTypes; ++t) v.push_back(static_cast<lockstepDataType_t>(t));
  return v;
}

class KernelSweep : public ::testing::TestWithParam<std::tuple<lockstepDataType_t, lockstepRedOp_t>> {};

TEST_P(KernelSweep, MatchesScalarReferenceAtEveryLengthAndAlignment) {
  auto [type, op] = GetParam();
  const size_t elem = dataTypeSize(type);
  std::mt19937 rng(42 + type * 7 + op);
  for (size_t n : {0, 1, 2, 3, 7, 15, 16, 17, 31, 63, 64, 65, 127, 1000, 4099}) {
    for (size_t misalign : {0, 1}) {
      // Small integer operands: every result is exact in every dtype, so the reference is exact.
      std::vector<double> av(n), bv(n);
      std::uniform_int_distribution<int> d(op == lockstepProd ? 0 : -4, 4);
      bool isUnsigned = type == lockstepUint8 || type == lockstepUint32 || type == lockstepUint64;
      for (size_t i = 0; i < n; ++i) {
        av[i] = d(rng), bv[i] = d(rng);
        if (isUnsigned) av[i] = std::fabs(av[i]), bv[i] = std::fabs(bv[i]);
      }
      auto encode = [&](std::vector<char>& buf, const std::vector<double>& v) {
        buf.assign((n + 1) * elem, 0);
        char* p = buf.data() + misalign * elem;
        for (size_t i = 0; i < n; ++i) {
          double x = v[i];
          dispatchType(type, [&](auto t) {
            using T = decltype(t);
            T e = ElemTraits<T>::store(static_cast<typename ElemTraits<T>::Compute>(x));
            std::memcpy(p + i * elem, &e, elem);
          });
        }
      };
      std::vector<char> a, b, want, out((n + 1) * elem);
      encode(a, av);
      encode(b, bv);
      std::vector<double> ref(n);
      for (size_t i = 0; i < n; ++i) ref[i] = refOp(op, av[i], bv[i]);
      encode(want, ref);
      char* pa = a.data() + misalign * elem;
      const char* pb = b.data() + misalign * elem;
      char* po = out.data() + misalign * elem;
      reduceFn(type, op)(po, pa, pb, n);
      ASSERT_EQ(std::memcmp(po, want.data() + misalign * elem, n * elem), 0)
          << dataTypeName(type) << " " << redOpName(op) << " n=" << n << " misalign=" << misalign;
      reduceFn(type, op)(pa, pa, pb, n);  // in place: dst aliases the first input
      ASSERT_EQ(std::memcmp(pa, want.data() + misalign * elem, n * elem), 0) << "in-place " << dataTypeName(type);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypesAllOps, KernelSweep,
                         ::testing::Combine(::testing::ValuesIn(allTypes()),
                                            ::testing::Values(lockstepSum, lockstepProd, lockstepMax, lockstepMin)),
                         [](const auto& info) {
                           return std::string(dataTypeName(std::get<0>(info.param))) + "_" +
                                  redOpName(std::get<1>(info.param));
                         });

TEST(DataTypes, NamesRoundTrip) {
  for (int t = 0; t < lockstepNumTypes; ++t) {
    lockstepDataType_t back;
    ASSERT_TRUE(parseDataType(dataTypeName(static_cast<lockstepDataType_t>(t)), &back));
    EXPECT_EQ(back, t);
    EXPECT_GT(dataTypeSize(static_cast<lockstepDataType_t>(t)), 0u);
  }
  for (int o = 0; o < lockstepNumOps; ++o) {
    lockstepRedOp_t back;
    ASSERT_TRUE(parseRedOp(redOpName(static_cast<lockstepRedOp_t>(o)), &back));
    EXPECT_EQ(back, o);
  }
  lockstepDataType_t t;
  EXPECT_TRUE(parseDataType("float", &t));
  EXPECT_EQ(t, lockstepFloat32);
  EXPECT_FALSE(parseDataType("complex", &t));
}

}  // namespace
}  // namespace lockstep
