// Data patterns whose exact all-reduce result is known for every dtype and op, shared by the perf
// drivers and the tests.
//
// Values are small integers (and, for prod, factors of 1, 2 and -1) chosen so that every partial
// result, in any reduction order, is exactly representable in the dtype: then the result does not
// depend on the algorithm and can be compared bit for bit. The pattern repeats every kPeriod
// elements (a prime, so it does not line up with chunk or slice boundaries).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/dtype.h"
#include "kernels/functors.h"
#include "lockstep/lockstep.h"

namespace lockstep {

class Pattern {
 public:
  static constexpr size_t kPeriod = 1021;

  Pattern(lockstepDataType_t type, lockstepRedOp_t op, int nranks)
      : type_(type), op_(op), nranks_(nranks), elem_(dataTypeSize(type)), expected_(kPeriod * elem_) {
    std::vector<double> acc(kPeriod);
    for (int r = 0; r < nranks; ++r) {
      for (size_t i = 0; i < kPeriod; ++i) {
        double v = value(r, i);
        if (r == 0)
          acc[i] = v;
        else if (op == lockstepProd)
          acc[i] *= v;
        else if (op == lockstepMax)
          acc[i] = std::max(acc[i], v);
        else if (op == lockstepMin)
          acc[i] = std::min(acc[i], v);
        else
          acc[i] += v;
      }
    }
    for (size_t i = 0; i < kPeriod; ++i) {
      store(expected_.data() + i * elem_, acc[i]);
      if (op == lockstepAvg) finishAvg(expected_.data() + i * elem_);
    }
  }

  // This rank's input.
  void fill(void* buf, size_t count, int rank) const {
    std::vector<char> row(kPeriod * elem_);
    for (size_t i = 0; i < kPeriod; ++i) store(row.data() + i * elem_, value(rank, i));
    repeat(static_cast<char*>(buf), count, row.data());
  }
  // The exact result every rank must hold.
  void fillExpected(void* buf, size_t count) const { repeat(static_cast<char*>(buf), count, expected_.data()); }

  // Elements of `buf` that differ (bitwise) from the exact result.
  size_t countWrong(const void* buf, size_t count) const {
    switch (elem_) {
      case 1:
        return wrongAs<uint8_t>(buf, count);
      case 2:
        return wrongAs<uint16_t>(buf, count);
      case 4:
        return wrongAs<uint32_t>(buf, count);
      default:
        return wrongAs<uint64_t>(buf, count);
    }
  }

 private:
  bool isSigned() const { return type_ != lockstepUint8 && type_ != lockstepUint32 && type_ != lockstepUint64; }
  // Largest integer magnitude up to which every integer is exact (and in range) in the dtype.
  double exactLimit() const {
    switch (type_) {
      case lockstepInt8:
        return 127;
      case lockstepUint8:
        return 255;
      case lockstepFloat16:
        return 2048;
      case lockstepBfloat16:
        return 256;
      case lockstepFloat8e4m3:
        return 16;
      case lockstepFloat8e5m2:
        return 8;
      default:
        return 1000;
    }
  }
  // How many factors of 2 a product may collect.
  int maxDoublings() const {
    switch (type_) {
      case lockstepInt8:
        return 6;
      case lockstepUint8:
        return 7;
      case lockstepFloat8e4m3:
        return 8;
      case lockstepFloat16:
      case lockstepFloat8e5m2:
        return 15;
      default:
        return 30;
    }
  }
  double value(int r, size_t i) const {
    uint64_t h = (i * 2654435761u + static_cast<uint64_t>(r) * 40503u + 17) % 1000003;
    if (op_ == lockstepProd) {
      if (r < maxDoublings() && (i + static_cast<size_t>(r)) % 3 == 0) return 2;
      return isSigned() && h % 5 == 0 ? -1 : 1;
    }
    double limit = exactLimit();
    int m = static_cast<int>(limit / nranks_);
    if (m == 0) {  // more ranks than exact integers: at most `limit` ranks contribute a 1
      int stride = static_cast<int>(std::ceil(nranks_ / limit));
      return (static_cast<size_t>(r) + i) % stride == 0 ? 1 : 0;
    }
    return isSigned() ? static_cast<double>(static_cast<int64_t>(h % (2 * m + 1)) - m)
                      : static_cast<double>(h % (m + 1));
  }
  void store(char* p, double v) const {
    dispatchType(type_, [&](auto t) {
      using T = decltype(t);
      T x = ElemTraits<T>::store(static_cast<typename ElemTraits<T>::Compute>(v));
      std::memcpy(p, &x, sizeof(T));
    });
  }
  // Avg divides the exact sum once, in the dtype's compute type (see kernels/functors.h).
  void finishAvg(char* p) const {
    dispatchType(type_, [&](auto t) {
      using T = decltype(t);
      T v;
      std::memcpy(&v, p, sizeof(T));
      v = ElemTraits<T>::store(divideBy(ElemTraits<T>::load(v), nranks_));
      std::memcpy(p, &v, sizeof(T));
    });
  }
  void repeat(char* dst, size_t count, const char* row) const {
    for (size_t i = 0; i < count; i += kPeriod) {
      std::memcpy(dst + i * elem_, row, std::min(kPeriod, count - i) * elem_);
    }
  }
  template <typename U>
  size_t wrongAs(const void* buf, size_t count) const {
    const U* got = static_cast<const U*>(buf);
    const U* want = reinterpret_cast<const U*>(expected_.data());
    size_t wrong = 0;
    for (size_t i = 0; i < count;) {
      size_t n = std::min(kPeriod, count - i);
      for (size_t k = 0; k < n; ++k) wrong += got[i + k] != want[k];
      i += n;
    }
    return wrong;
  }

  lockstepDataType_t type_;
  lockstepRedOp_t op_;
  int nranks_;
  size_t elem_;
  std::vector<char> expected_;
};

}  // namespace lockstep
