// Header-only C++ layer over the C ABI: RAII communicators and exceptions.
//
//   lockstep::Comm comm = lockstep::Comm::fromEnv();
//   comm.allReduce(grads.data(), grads.data(), grads.size(), lockstep::Op::kSum);
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "lockstep/lockstep.h"

namespace lockstep {

// Thrown for every non-success result; code() is the C result.
class Exception : public std::runtime_error {
 public:
  Exception(lockstepResult_t code, const std::string& what) : std::runtime_error(what), code_(code) {}
  lockstepResult_t code() const { return code_; }

 private:
  lockstepResult_t code_;
};

inline void check(lockstepResult_t r) {
  if (r != lockstepSuccess) {
    throw Exception(r, std::string(lockstepGetErrorString(r)) + ": " + lockstepGetLastError(nullptr));
  }
}

enum class Op { kSum = lockstepSum, kProd = lockstepProd, kMax = lockstepMax, kMin = lockstepMin, kAvg = lockstepAvg };

// The lockstepDataType_t of a C++ element type (the 16- and 8-bit floats have no standard C++
// type: pass the lockstepDataType_t explicitly for those).
template <typename T>
constexpr lockstepDataType_t dataTypeOf() {
  if constexpr (std::is_same_v<T, int8_t>)
    return lockstepInt8;
  else if constexpr (std::is_same_v<T, uint8_t>)
    return lockstepUint8;
  else if constexpr (std::is_same_v<T, int32_t>)
    return lockstepInt32;
  else if constexpr (std::is_same_v<T, uint32_t>)
    return lockstepUint32;
  else if constexpr (std::is_same_v<T, int64_t>)
    return lockstepInt64;
  else if constexpr (std::is_same_v<T, uint64_t>)
    return lockstepUint64;
  else if constexpr (std::is_same_v<T, float>)
    return lockstepFloat32;
  else if constexpr (std::is_same_v<T, double>)
    return lockstepFloat64;
  else
    static_assert(sizeof(T) == 0, "no Lockstep datatype for this type; pass lockstepDataType_t");
}

inline lockstepUniqueId uniqueId() {
  lockstepUniqueId id;
  check(lockstepGetUniqueId(&id));
  return id;
}

class Comm {
 public:
  Comm(int nranks, const lockstepUniqueId& id, int rank) { check(lockstepCommInitRank(&comm_, nranks, id, rank)); }
  static Comm fromEnv() {
    lockstepComm_t c = nullptr;
    check(lockstepCommInitFromEnv(&c));
    return Comm(c);
  }
  Comm(Comm&& o) noexcept : comm_(std::exchange(o.comm_, nullptr)) {}
  Comm& operator=(Comm&& o) noexcept {
    if (this != &o) {
      reset();
      comm_ = std::exchange(o.comm_, nullptr);
    }
    return *this;
  }
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  ~Comm() { reset(); }

  int rank() const {
    int r;
    check(lockstepCommUserRank(comm_, &r));
    return r;
  }
  int size() const {
    int n;
    check(lockstepCommCount(comm_, &n));
    return n;
  }
  lockstepComm_t get() const { return comm_; }

  void allReduce(const void* send, void* recv, size_t count, lockstepDataType_t type, Op op) {
    check(lockstepAllReduce(send, recv, count, type, static_cast<lockstepRedOp_t>(op), comm_, nullptr));
  }
  template <typename T>
  void allReduce(const T* send, T* recv, size_t count, Op op) {
    allReduce(send, recv, count, dataTypeOf<T>(), op);
  }
  void barrier() { check(lockstepBarrier(comm_, nullptr)); }

  // Frees the communicator now without waiting for peers (lockstepCommAbort).
  void abort() {
    if (comm_) lockstepCommAbort(std::exchange(comm_, nullptr));
  }

 private:
  explicit Comm(lockstepComm_t c) : comm_(c) {}
  void reset() {
    if (comm_) lockstepCommDestroy(std::exchange(comm_, nullptr));
  }
  lockstepComm_t comm_ = nullptr;
};

}  // namespace lockstep
