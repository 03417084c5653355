// Bit-for-bit comparison of a GPU result with the CPU's, where NaN payloads may differ: an NVIDIA
// GPU's float32 and float64 arithmetic returns its canonical NaN for any NaN result, where the
// CPU kernels keep an operand's payload and sign (x86). Every other bit must be equal.
#pragma once

#include <cmath>
#include <cstring>
#include <string>

#include "kernels/dtype.h"

namespace lockstep::testing {

template <typename F>
bool sameOrBothNaN(const unsigned char* a, const unsigned char* b, size_t count, size_t* at) {
  for (size_t i = 0; i < count; ++i) {
    F x, y;
    std::memcpy(&x, a + i * sizeof(F), sizeof(F));
    std::memcpy(&y, b + i * sizeof(F), sizeof(F));
    if (std::isnan(x) && std::isnan(y)) continue;
    if (std::memcmp(&x, &y, sizeof(F)) != 0) return *at = i, false;
  }
  return true;
}

// True if the `bytes` at a and b hold the same values of `type`; otherwise *why says where.
inline bool sameValues(lockstepDataType_t type, const void* a, const void* b, size_t bytes, std::string* why) {
  const auto* x = static_cast<const unsigned char*>(a);
  const auto* y = static_cast<const unsigned char*>(b);
  size_t at = 0;
  bool same;
  if (type == lockstepFloat32) {
    same = sameOrBothNaN<float>(x, y, bytes / 4, &at);
  } else if (type == lockstepFloat64) {
    same = sameOrBothNaN<double>(x, y, bytes / 8, &at);
  } else {
    same = std::memcmp(x, y, bytes) == 0;
    for (; !same && at < bytes && x[at] == y[at]; ++at) {
    }
    at /= dataTypeSize(type);
  }
  if (!same) *why = "element " + std::to_string(at) + " differs";
  return same;
}

}  // namespace lockstep::testing
