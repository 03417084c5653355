// Data patterns whose exact all-reduce result is known for every dtype and op, shared by the perf
// drivers and the tests.
//
// Values are small integers (and, for prod, factors of 1, 2 and -1) chosen so that every partial
// result, in any reduction order, is exactly representable in the dtype: then the result does not
// depend on the algorithm and can be compared bit for bit. Floating avg inputs are nranks times
// such integers, so that avg's scaling by 1/nranks is exact too. The values come from a table of
// kPeriod elements (a prime, so it does not line up with chunk or slice boundaries), each period
// of the buffer read from another phase of it (run()).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/dtype.h"
#include "kernels/functors.h"
#include "lockstep/lockstep.h"

namespace lockstep {

class Pattern {
 public:
  static constexpr size_t kPeriod = 1021;
  size_t elemBytes() const { return elem_; }

  Pattern(lockstepDataType_t type, lockstepRedOp_t op, int nranks)
      : type_(type),
        op_(op),
        nranks_(nranks),
        elem_(dataTypeSize(type)),
        expected_(kPeriod * elem_),
        rows_(static_cast<size_t>(nranks) * kPeriod * elem_) {
    for (int r = 0; r < nranks; ++r) {
      for (size_t i = 0; i < kPeriod; ++i) store(row(r) + i * elem_, value(r, i));
    }
    std::vector<double> acc(kPeriod);
    for (int r = 0; r < nranks; ++r) {
      for (size_t i = 0; i < kPeriod; ++i) {
        double v = term(r, i);
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
      if (op == lockstepAvg && !isFloating()) finishAvg(expected_.data() + i * elem_);  // integers divide last
    }
  }

  // Rank `rank`'s data for global elements [offset, offset + count).
  void fill(void* buf, size_t count, int rank, size_t offset = 0) const {
    repeat(static_cast<char*>(buf), count, row(rank), offset);
  }
  // The exact reduction of every rank's data over global elements [offset, offset + count).
  void fillExpected(void* buf, size_t count, size_t offset = 0) const {
    repeat(static_cast<char*>(buf), count, expected_.data(), offset);
  }

  // Whether the expected result has any nonzero element: for floating avg on some rank counts
  // (fp8 e5m2 on 9 ranks: no multiple of 9 is exact there) no input scales exactly, every input is
  // 0, and a check cannot tell a wrong result from a right one.
  bool informative() const {
    for (size_t i = 0; i < kPeriod; ++i) {
      if (load(expected_.data() + i * elem_) != 0) return true;
    }
    return false;
  }

  // Elements of `buf` that differ (bitwise) from the exact reduction over [offset, offset + count).
  size_t countWrong(const void* buf, size_t count, size_t offset = 0) const {
    return compare(buf, count, expected_.data(), offset);
  }
  // Elements of `buf` that differ from rank `rank`'s own data over [offset, offset + count).
  size_t countWrongFrom(const void* buf, size_t count, int rank, size_t offset = 0) const {
    return compare(buf, count, row(rank), offset);
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
  bool isFloating() const {
    return dispatchType(type_, [](auto t) { return !std::is_integral_v<typename ElemTraits<decltype(t)>::Compute>; });
  }
  // Rank r's input at element i. For floating avg (which multiplies each input by 1/nranks, rounded
  // to the compute type, before summing) it is nranks times a small integer v, kept only where the
  // kernel's scaling gives back exactly v, so every scaled term, and the sum, stays exact.
  double value(int r, size_t i) const {
    double v = baseValue(r, i);
    if (op_ != lockstepAvg || !isFloating()) return v;
    double x = v * nranks_;
    return scalesExactly(x, v) ? x : 0;  // otherwise it contributes nothing
  }
  bool scalesExactly(double x, double v) const {
    return dispatchType(type_, [&](auto t) {
      using Tr = ElemTraits<decltype(t)>;
      using C = typename Tr::Compute;
      auto in = Tr::store(static_cast<C>(x));
      if (static_cast<double>(Tr::load(in)) != x) return false;  // x itself not representable
      const C factor = C(1) / static_cast<C>(nranks_);           // as kernels/cpu_reduce.cc
      return static_cast<double>(Tr::load(Tr::store(Tr::load(in) * factor))) == v;
    });
  }
  // The contribution of rank r's element i to the exact result.
  double term(int r, size_t i) const {
    return op_ == lockstepAvg && isFloating() ? value(r, i) / nranks_ : value(r, i);
  }
  double load(const char* p) const {
    return dispatchType(type_, [&](auto t) {
      using T = decltype(t);
      T x;
      std::memcpy(&x, p, sizeof(T));
      return static_cast<double>(ElemTraits<T>::load(x));
    });
  }
  double baseValue(int r, size_t i) const {
    uint64_t h = (i * 2654435761u + static_cast<uint64_t>(r) * 40503u + 17) % 1000003;
    if (op_ == lockstepProd) {
      if (r < maxDoublings() && (i + static_cast<size_t>(r)) % 3 == 0) return 2;
      return isSigned() && h % 5 == 0 ? -1 : 1;
    }
    double limit = exactLimit();
    if (op_ == lockstepMax || op_ == lockstepMin) {
      // Nothing accumulates, so the whole exact range serves. Element i's extreme b(i) (a hash
      // of i alone) is held by rank i % nranks and the others lie 1-3 beyond it on the near
      // side: the result varies along the buffer and comes from a different rank at each element.
      // (Draws from a range narrowed by the rank count made min at 16-64 ranks almost all 0, a
      // value that a call writing zeros would have matched.)
      const int span = static_cast<int>(limit);
      const uint64_t hi = (i * 2654435761u + 7) % 1000003;
      const int lo = isSigned() ? -span : 0;
      const int b = lo + static_cast<int>(hi % static_cast<uint64_t>(span - lo + 1));
      if (static_cast<size_t>(r) == i % static_cast<size_t>(nranks_)) return b;
      const int d = 1 + static_cast<int>(h % 3);
      return op_ == lockstepMax ? std::max(b - d, lo) : std::min(b + d, span);
    }
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
  char* row(int rank) { return rows_.data() + static_cast<size_t>(rank) * kPeriod * elem_; }
  const char* row(int rank) const { return rows_.data() + static_cast<size_t>(rank) * kPeriod * elem_; }
  // Where global element g reads the one-period `table`, and for how many elements on from there
  // (at most `left`) the table runs on contiguously. Each period of the buffer starts at a phase
  // drawn from a hash of the period's number: were the buffer periodic, a block misplaced by a
  // multiple of kPeriod elements (a reduce-scatter's or all-to-all's blocks when the count is
  // one) would hold the same values as the right one, and the check would pass it. (A phase
  // linear in the period's number still let blocks 1 and 6 of 7 ranks at 175 periods each pass
  // as each other: helper-42.)
  static std::pair<size_t, size_t> run(size_t g, size_t left) {
    const uint64_t q = g / kPeriod, rem = g % kPeriod;
    uint64_t x = q + 0x9e3779b97f4a7c15ull;  // splitmix64's finaliser
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    const size_t phase = static_cast<size_t>((rem + (x ^ (x >> 31)) % kPeriod) % kPeriod);
    return {phase, std::min({kPeriod - phase, kPeriod - static_cast<size_t>(rem), left})};
  }
  // Copies `table` into dst as the elements [offset, offset + count) of the buffer (run()).
  void repeat(char* dst, size_t count, const char* table, size_t offset) const {
    for (size_t i = 0; i < count;) {
      const auto [phase, n] = run(offset + i, count - i);
      std::memcpy(dst + i * elem_, table + phase * elem_, n * elem_);
      i += n;
    }
  }
  size_t compare(const void* buf, size_t count, const char* table, size_t offset) const {
    switch (elem_) {
      case 1:
        return compareAs<uint8_t>(buf, count, table, offset);
      case 2:
        return compareAs<uint16_t>(buf, count, table, offset);
      case 4:
        return compareAs<uint32_t>(buf, count, table, offset);
      default:
        return compareAs<uint64_t>(buf, count, table, offset);
    }
  }
  template <typename U>
  size_t compareAs(const void* buf, size_t count, const char* table, size_t offset) const {
    const U* got = static_cast<const U*>(buf);
    const U* want = reinterpret_cast<const U*>(table);
    size_t wrong = 0;
    for (size_t i = 0; i < count;) {
      const auto [phase, n] = run(offset + i, count - i);
      for (size_t k = 0; k < n; ++k) wrong += got[i + k] != want[phase + k];
      i += n;
    }
    return wrong;
  }

  lockstepDataType_t type_;
  lockstepRedOp_t op_;
  int nranks_;
  size_t elem_;
  std::vector<char> expected_;
  std::vector<char> rows_;  // each rank's data, one period per rank
};

}  // namespace lockstep
