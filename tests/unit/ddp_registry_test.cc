// Parameter registration checks (include/lockstep/ddp/param_registry.h): bad input is refused with a clear
// error at the call, not later in a collective.
#include <gtest/gtest.h>

#include <vector>

#include "lockstep/ddp/param_registry.h"

namespace lockstep::ddp {
namespace {

void expectError(lockstepResult_t code, const std::string& phrase, const std::function<void()>& fn) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << phrase << "'";
  } catch (const Exception& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
  }
}

TEST(DdpRegistry, AcceptsFloatingParametersAndFindsThemByPointer) {
  std::vector<float> w(10), dw(10);
  std::vector<double> b(3), db(3);
  ParamRegistry reg;
  EXPECT_EQ(reg.add({"w", w.data(), dw.data(), 10, lockstepFloat32}, Memory::kHost), 0u);
  EXPECT_EQ(reg.add({"b", b.data(), db.data(), 3, lockstepFloat64}, Memory::kHost), 1u);
  EXPECT_EQ(reg.find(b.data()), 1u);
  EXPECT_EQ(reg.shapes()[1].dtype, lockstepFloat64);
  expectError(lockstepInvalidArgument, "the gradient of 'w': pass the parameter's data pointer",
              [&] { reg.find(dw.data()); });
  std::vector<float> stranger(4);
  expectError(lockstepInvalidArgument, "not a registered parameter", [&] { reg.find(stranger.data()); });
}

TEST(DdpRegistry, RejectsBadRegistrations) {
  std::vector<float> a(16), ga(16), b(16);
  std::vector<int32_t> i(4), gi(4);
  ParamRegistry reg;
  reg.add({"a", a.data(), ga.data(), 16, lockstepFloat32}, Memory::kHost);
  expectError(lockstepInvalidArgument, "must be float16, bfloat16, float32 or float64", [&] {
    reg.add({"i", i.data(), gi.data(), 4, lockstepInt32}, Memory::kHost);
  });
  expectError(lockstepInvalidArgument, "null", [&] {
    reg.add({"n", nullptr, b.data(), 4, lockstepFloat32}, Memory::kHost);
  });
  expectError(lockstepInvalidArgument, "parameter and gradient memory overlap", [&] {
    reg.add({"self", b.data(), b.data() + 2, 4, lockstepFloat32}, Memory::kHost);
  });
  expectError(lockstepInvalidArgument, "overlaps the memory of parameter 'a'", [&] {
    reg.add({"inside", a.data() + 8, b.data(), 4, lockstepFloat32}, Memory::kHost);
  });
  expectError(lockstepInvalidArgument, "overlaps the memory of parameter 'a'", [&] {
    reg.add({"grad-on-grad", b.data(), ga.data() + 15, 4, lockstepFloat32}, Memory::kHost);
  });
  expectError(lockstepInvalidUsage, "device memory", [&] {
    reg.add({"gpu", b.data(), b.data() + 8, 4, lockstepFloat32}, Memory::kDevice);
  });
  EXPECT_EQ(reg.size(), 1u);  // nothing half-registered
  // Adjacent but not overlapping is fine; so is an empty parameter.
  EXPECT_EQ(reg.add({"b", b.data(), b.data() + 8, 8, lockstepFloat32}, Memory::kHost), 1u);
  EXPECT_EQ(reg.add({"empty", nullptr, nullptr, 0, lockstepFloat32}, Memory::kHost), 2u);
}

TEST(DdpRegistry, SignatureDependsOnCountAndDtypeOnly) {
  std::vector<float> a(8), ga(8), c(8), gc(8);
  ParamRegistry x, y, z;
  x.add({"a", a.data(), ga.data(), 8, lockstepFloat32}, Memory::kHost);
  y.add({"renamed", c.data(), gc.data(), 8, lockstepFloat32}, Memory::kHost);
  z.add({"a", a.data(), ga.data(), 4, lockstepBfloat16}, Memory::kHost);
  EXPECT_EQ(x.signature(), y.signature());
  EXPECT_NE(x.signature(), z.signature());
}

}  // namespace
}  // namespace lockstep::ddp
