// The one switch from a runtime lockstepDataType_t to its storage type: fn(T{}) is called with a
// value of the storage type (int8_t ... double, Half, BFloat16, Fp8E4M3, Fp8E5M2).
#pragma once

#include <cstdint>

#include "kernels/float_types.h"
#include "lockstep/lockstep.h"

namespace lockstep {

template <typename Fn>
auto dispatchType(lockstepDataType_t type, Fn&& fn) {
  switch (type) {
    case lockstepInt8:
      return fn(int8_t{});
    case lockstepUint8:
      return fn(uint8_t{});
    case lockstepInt32:
      return fn(int32_t{});
    case lockstepUint32:
      return fn(uint32_t{});
    case lockstepInt64:
      return fn(int64_t{});
    case lockstepUint64:
      return fn(uint64_t{});
    case lockstepFloat16:
      return fn(Half{});
    case lockstepBfloat16:
      return fn(BFloat16{});
    case lockstepFloat32:
      return fn(float{});
    case lockstepFloat64:
      return fn(double{});
    case lockstepFloat8e4m3:
      return fn(Fp8E4M3{});
    case lockstepFloat8e5m2:
      return fn(Fp8E5M2{});
    default:
      return decltype(fn(float{})){};
  }
}

}  // namespace lockstep
