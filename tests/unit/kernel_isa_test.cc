// Every instruction-set build of the kernels computes the same bits as the baseline build: random
// bit patterns (so NaN, Inf, subnormals and signed zeros all appear), every dtype x op, avg's
// premultiplied sums and scaling, lengths around the vector widths, misaligned pointers. Ranks on
// CPUs of different generations must still agree bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/dtype.h"
#include "kernels/functors.h"
#include "kernels/kernel_table.h"

namespace lockstep {
namespace {

struct Inputs {
  std::vector<unsigned char> a, b;
};

Inputs randomBytes(size_t bytes, uint32_t seed) {
  std::mt19937 rng(seed);
  Inputs in{std::vector<unsigned char>(bytes), std::vector<unsigned char>(bytes)};
  for (size_t i = 0; i < bytes; ++i)
    in.a[i] = static_cast<unsigned char>(rng()), in.b[i] = static_cast<unsigned char>(rng());
  return in;
}

const size_t kLengths[] = {0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 1000, 4099};

TEST(KernelIsa, EveryBuildThisCpuRunsMatchesTheBaselineBitForBit) {
  const KernelTable* base = kernelTable(CpuIsa::kBaseline);
  ASSERT_NE(base, nullptr);
  int compared = 0;
  for (CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    const KernelTable* t = kernelTable(isa);
    if (!t) {
      std::printf("%s: not supported by this CPU, not compared\n", cpuIsaName(isa));
      continue;
    }
    ++compared;
    for (int ti = 0; ti < lockstepNumTypes; ++ti) {
      const auto type = static_cast<lockstepDataType_t>(ti);
      const size_t elem = dataTypeSize(type);
      for (size_t n : kLengths) {
        for (size_t misalign : {0, 1}) {
          Inputs in = randomBytes((n + 1) * elem, static_cast<uint32_t>(ti * 1000 + n * 2 + misalign));
          const unsigned char* pa = in.a.data() + misalign * elem;
          const unsigned char* pb = in.b.data() + misalign * elem;
          std::vector<unsigned char> want((n + 1) * elem), got((n + 1) * elem);
          auto same = [&](const char* what) {
            return ::testing::AssertionResult(std::memcmp(want.data(), got.data(), want.size()) == 0)
                   << cpuIsaName(isa) << " " << dataTypeName(type) << " " << what << " n=" << n
                   << " misalign=" << misalign;
          };
          for (int op = 0; op < 4; ++op) {
            base->reduce[ti][op](want.data() + misalign * elem, pa, pb, n);
            t->reduce[ti][op](got.data() + misalign * elem, pa, pb, n);
            ASSERT_TRUE(same(redOpName(static_cast<lockstepRedOp_t>(op))));
          }
          if (base->premulSum[ti]) {
            for (int nranks : {3, 8}) {
              base->premulSum[ti](want.data() + misalign * elem, pa, pb, n, nranks);
              t->premulSum[ti](got.data() + misalign * elem, pa, pb, n, nranks);
              ASSERT_TRUE(same("premulSum"));
              base->scale[ti](want.data() + misalign * elem, pa, n, nranks);
              t->scale[ti](got.data() + misalign * elem, pa, n, nranks);
              ASSERT_TRUE(same("scale"));
            }
          } else {
            std::memcpy(want.data(), in.a.data(), want.size());
            std::memcpy(got.data(), in.a.data(), got.size());
            base->divide[ti](want.data() + misalign * elem, n, 3);
            t->divide[ti](got.data() + misalign * elem, n, 3);
            ASSERT_TRUE(same("divide"));
          }
        }
      }
    }
  }
  std::printf("compared %d instruction-set builds with the baseline (active: %s)\n", compared, cpuIsaName(activeIsa()));
}

// Two NaNs of different sign and payload (x86's default NaN from 0/0, and C's nan("")): which
// one an add keeps depends on the operand order the compiler emitted, and a clang build's
// baseline and AVX2 paths kept different ones. Every NaN that arithmetic makes is the canonical
// one, in every path and every element position (vector body and tail), so no build and no
// slice boundary can change the bits (helper-78).
TEST(KernelIsa, ArithmeticNaNsAreCanonicalOnEveryPath) {
  constexpr uint32_t kDefault = 0xffc00000u, kQuiet = 0x7fc00000u, kSignalling = 0x7f800001u;
  constexpr uint64_t kDefault64 = 0xfff8000000000000ull, kQuiet64 = 0x7ff8000000000001ull;
  for (CpuIsa isa : {CpuIsa::kBaseline, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    const KernelTable* t = kernelTable(isa);
    if (!t) continue;
    for (size_t n : {size_t(1), size_t(17), size_t(70)}) {
      std::vector<uint32_t> a(n, kDefault), b(n, kQuiet), d(n);
      b[0] = kSignalling;
      for (int op : {0, 1}) {  // sum, prod
        t->reduce[lockstepFloat32][op](d.data(), a.data(), b.data(), n);
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(d[i], 0x7fffffffu) << cpuIsaName(isa) << " op " << op << " " << i;
        t->reduce[lockstepFloat32][op](d.data(), b.data(), a.data(), n);
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(d[i], 0x7fffffffu) << cpuIsaName(isa) << " op " << op << " " << i;
      }
      t->premulSum[lockstepFloat32](d.data(), a.data(), b.data(), n, 3);
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(d[i], 0x7fffffffu) << cpuIsaName(isa) << " premulSum " << i;
      t->scale[lockstepFloat32](d.data(), b.data(), n, 3);
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(d[i], 0x7fffffffu) << cpuIsaName(isa) << " scale " << i;
      std::vector<uint64_t> a64(n, kDefault64), b64(n, kQuiet64), d64(n);
      t->reduce[lockstepFloat64][0](d64.data(), a64.data(), b64.data(), n);
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(d64[i], 0x7fffffffffffffffull) << cpuIsaName(isa) << " double " << i;
      // Max and min keep an operand's NaN, the first one (a before b), payload and all.
      t->reduce[lockstepFloat32][2](d.data(), a.data(), b.data(), n);
      ASSERT_EQ(d[n - 1], kDefault) << cpuIsaName(isa) << " max";
    }
  }
}

// What makes one-shot avg bit-identical across ranks: a rank folds its own input with
// premulSum(partial, input), its peers fold the scaled copy it sent them with sum(partial,
// scale(input)). The two must give the same bits for every floating type (narrow types round the
// scaled input once, in both).
TEST(KernelIsa, PremulSumEqualsSumOfTheScaledInput) {
  for (CpuIsa isa : {CpuIsa::kBaseline, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    const KernelTable* t = kernelTable(isa);
    if (!t) continue;
    for (int ti = 0; ti < lockstepNumTypes; ++ti) {
      if (!t->premulSum[ti]) continue;
      const size_t elem = dataTypeSize(static_cast<lockstepDataType_t>(ti)), n = 1000;
      Inputs in = randomBytes(n * elem, static_cast<uint32_t>(ti + 77));
      for (int nranks : {2, 3, 7}) {
        std::vector<unsigned char> fused(n * elem), scaled(n * elem), twoStep(n * elem);
        t->premulSum[ti](fused.data(), in.a.data(), in.b.data(), n, nranks);
        t->scale[ti](scaled.data(), in.b.data(), n, nranks);
        t->reduce[ti][0](twoStep.data(), in.a.data(), scaled.data(), n);
        ASSERT_EQ(std::memcmp(fused.data(), twoStep.data(), fused.size()), 0)
            << cpuIsaName(isa) << " " << dataTypeName(static_cast<lockstepDataType_t>(ti)) << " nranks=" << nranks;
      }
    }
  }
}

// fp8 loops look their results up in tables above a length (kernels/cpu_loops.h): every pair of
// operands, in place and not, and avg's scaling of every value, against the element functors
// computed here one element at a time.
template <typename T>
void expectFp8LookupsMatchTheFunctors(const KernelTable& t, lockstepDataType_t type, const char* isa) {
  using Tr = ElemTraits<T>;
  const size_t n = 65536;  // every (a, b), a in the high byte of the index
  std::vector<uint8_t> a(n), b(n), out(n), want(n);
  for (size_t i = 0; i < n; ++i) a[i] = static_cast<uint8_t>(i >> 8), b[i] = static_cast<uint8_t>(i);
  auto value = [](uint8_t bits) { return Tr::load(T{bits}); };
  auto bitsOf = [](float v) { return Tr::store(v).bits; };
  auto expectSame = [&](const char* what) {
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(out[i], want[i]) << isa << " " << dataTypeName(type) << " " << what << " a=0x" << std::hex << int(a[i])
                                 << " b=0x" << int(b[i]);
    }
  };
  auto functor = [&](auto f) {
    for (size_t i = 0; i < n; ++i) want[i] = bitsOf(f(value(a[i]), value(b[i])));
  };
  const char* names[] = {"sum", "prod", "max", "min"};
  for (int op = 0; op < 4; ++op) {
    if (op == 0) functor(FuncSum{});
    if (op == 1) functor(FuncProd{});
    if (op == 2) functor(FuncMax{});
    if (op == 3) functor(FuncMin{});
    t.reduce[type][op](out.data(), a.data(), b.data(), n);
    expectSame(names[op]);
    out = a;
    t.reduce[type][op](out.data(), out.data(), b.data(), n);  // in place
    expectSame(names[op]);
  }
  for (int nranks : {2, 3, 7}) {
    const float factor = 1.0f / static_cast<float>(nranks);
    for (size_t i = 0; i < n; ++i) want[i] = bitsOf(value(b[i]) * factor);
    t.scale[type](out.data(), b.data(), n, nranks);
    expectSame("scale");
    for (size_t i = 0; i < n; ++i) want[i] = bitsOf(value(a[i]) + value(bitsOf(value(b[i]) * factor)));
    t.premulSum[type](out.data(), a.data(), b.data(), n, nranks);
    expectSame("premulSum");
  }
}

TEST(KernelIsa, Fp8LookupsGiveTheElementFunctorsBitsForEveryOperand) {
  for (CpuIsa isa : {CpuIsa::kBaseline, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    const KernelTable* t = kernelTable(isa);
    if (!t) continue;
    expectFp8LookupsMatchTheFunctors<Fp8E4M3>(*t, lockstepFloat8e4m3, cpuIsaName(isa));
    expectFp8LookupsMatchTheFunctors<Fp8E5M2>(*t, lockstepFloat8e5m2, cpuIsaName(isa));
  }
}

TEST(KernelIsa, StreamCopyCopiesEveryLengthAndAlignment) {
  for (CpuIsa isa : {CpuIsa::kBaseline, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    const KernelTable* t = kernelTable(isa);
    if (!t) continue;
    for (size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{63}, size_t{64}, size_t{200}, size_t{4096 + 77}}) {
      for (size_t off : {0, 1, 8, 16, 31}) {
        Inputs in = randomBytes(n + 64, static_cast<uint32_t>(n + off));
        std::vector<unsigned char> out(n + 64, 0xee);
        t->streamCopy(out.data() + off, in.a.data() + 3, n);
        ASSERT_EQ(std::memcmp(out.data() + off, in.a.data() + 3, n), 0) << cpuIsaName(isa) << " n=" << n;
        for (size_t i = 0; i < off; ++i) ASSERT_EQ(out[i], 0xee) << "wrote before the destination";
        for (size_t i = off + n; i < out.size(); ++i) ASSERT_EQ(out[i], 0xee) << "wrote past the destination";
      }
    }
  }
}

}  // namespace
}  // namespace lockstep
