// Header-only C++ layer over the C ABI: RAII communicators and exceptions.
//
//   lockstep::Comm comm = lockstep::Comm::fromEnv();
//   comm.allReduce(grads.data(), grads.data(), grads.size(), lockstep::Op::kSum);
//   lockstep::Request r = comm.iallReduce(g.data(), g.data(), g.size(), lockstep::Op::kAvg);
//   lockstep::group([&] { comm.send(a, n, next); comm.recv(b, n, prev); });
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

// The lockstepDataType_t of a C++ element type: float, double, and every integer type of 1, 4 or 8
// bytes by its size and signedness (long long, char and size_t too). The 16- and 8-bit floats
// have no standard C++ type: pass the lockstepDataType_t explicitly for those.
template <typename T>
constexpr lockstepDataType_t dataTypeOf() {
  if constexpr (std::is_same_v<T, float>) {
    return lockstepFloat32;
  } else if constexpr (std::is_same_v<T, double>) {
    return lockstepFloat64;
  } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool> && sizeof(T) == 1) {
    return std::is_signed_v<T> ? lockstepInt8 : lockstepUint8;
  } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool> && sizeof(T) == 4) {
    return std::is_signed_v<T> ? lockstepInt32 : lockstepUint32;
  } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool> && sizeof(T) == 8) {
    return std::is_signed_v<T> ? lockstepInt64 : lockstepUint64;
  } else {
    static_assert(sizeof(T) == 0, "no Lockstep datatype for this type; pass lockstepDataType_t");
  }
}

inline lockstepUniqueId uniqueId() {
  lockstepUniqueId id;
  check(lockstepGetUniqueId(&id));
  return id;
}

// A non-blocking operation (MPI_Request-like). wait() returns when it is done and throws its
// error; the destructor waits too, so buffers are never released under a running operation
// (for an operation of a group still open, which has not started, it only lets go of the handle).
// The destructor and move-assignment over a running request cannot throw: they drop its error,
// as a std::future's destructor does. Call wait() to see it.
class Request {
 public:
  Request() = default;
  explicit Request(lockstepRequest_t r) : req_(r) {}
  Request(Request&& o) noexcept : req_(std::exchange(o.req_, nullptr)) {}
  Request& operator=(Request&& o) noexcept {
    if (this != &o) {
      finish();
      req_ = std::exchange(o.req_, nullptr);
    }
    return *this;
  }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request() { finish(); }

  // True once done (then throws the operation's error, if any).
  bool test() {
    int done = 0;
    check(lockstepTest(&req_, &done));
    return done != 0;
  }
  void wait() { check(lockstepWait(&req_, -1)); }
  // False if still running after timeoutMs.
  bool waitFor(int64_t timeoutMs) {
    lockstepResult_t r = lockstepWait(&req_, timeoutMs);
    if (r == lockstepInProgress) return false;
    check(r);
    return true;
  }
  lockstepRequest_t* out() { return &req_; }

 private:
  void finish() {
    if (!req_) return;
    // An operation of a group still open has not started: let go of the handle (the group keeps
    // the operation). One already launched may be using its buffers: wait for it, inside a group
    // or not. (Waiting on the first kind would fail, and discard the open group.)
    int launched = 1;
    lockstepRequestLaunched(req_, &launched);
    if (launched) lockstepWait(&req_, -1);
    if (req_) lockstepRequestFree(&req_);
  }
  lockstepRequest_t req_ = nullptr;
};

// Runs fn() between lockstepGroupStart and lockstepGroupEnd. If fn throws (a failed lockstep
// call, or anything else), the group launches nothing and the exception goes on.
template <typename F>
void group(F&& fn) {
  check(lockstepGroupStart());
  try {
    fn();
  } catch (...) {
    lockstepGroupAbandon();
    throw;
  }
  check(lockstepGroupEnd());
}

class Comm {
 public:
  Comm(int nranks, const lockstepUniqueId& id, int rank) { check(lockstepCommInitRank(&comm_, nranks, id, rank)); }
  static Comm fromEnv() {
    lockstepComm_t c = nullptr;
    check(lockstepCommInitFromEnv(&c));
    return Comm(c);
  }
  // Takes ownership of a communicator made through the C API (lockstepCommInitMpi, say): the
  // Comm destroys it.
  static Comm adopt(lockstepComm_t c) { return Comm(c); }
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

  // Each call takes a typed pointer, or void pointers and an explicit lockstepDataType_t (for
  // float16, bfloat16 and the fp8 types, which C++ has no type for).
  void allReduce(const void* send, void* recv, size_t count, lockstepDataType_t type, Op op) {
    check(lockstepAllReduce(send, recv, count, type, static_cast<lockstepRedOp_t>(op), comm_, nullptr));
  }
  template <typename T>
  void allReduce(const T* send, T* recv, size_t count, Op op) {
    allReduce(send, recv, count, dataTypeOf<T>(), op);
  }
  void barrier() { check(lockstepBarrier(comm_, nullptr)); }

  void reduceScatter(const void* send, void* recv, size_t recvcount, lockstepDataType_t type, Op op) {
    check(lockstepReduceScatter(send, recv, recvcount, type, static_cast<lockstepRedOp_t>(op), comm_, nullptr));
  }
  template <typename T>
  void reduceScatter(const T* send, T* recv, size_t recvcount, Op op) {
    reduceScatter(send, recv, recvcount, dataTypeOf<T>(), op);
  }
  void allGather(const void* send, void* recv, size_t sendcount, lockstepDataType_t type) {
    check(lockstepAllGather(send, recv, sendcount, type, comm_, nullptr));
  }
  template <typename T>
  void allGather(const T* send, T* recv, size_t sendcount) {
    allGather(send, recv, sendcount, dataTypeOf<T>());
  }
  void broadcast(const void* send, void* recv, size_t count, lockstepDataType_t type, int root) {
    check(lockstepBroadcast(send, recv, count, type, root, comm_, nullptr));
  }
  template <typename T>
  void broadcast(const T* send, T* recv, size_t count, int root) {
    broadcast(send, recv, count, dataTypeOf<T>(), root);
  }
  void reduce(const void* send, void* recv, size_t count, lockstepDataType_t type, Op op, int root) {
    check(lockstepReduce(send, recv, count, type, static_cast<lockstepRedOp_t>(op), root, comm_, nullptr));
  }
  template <typename T>
  void reduce(const T* send, T* recv, size_t count, Op op, int root) {
    reduce(send, recv, count, dataTypeOf<T>(), op, root);
  }
  void send(const void* buf, size_t count, lockstepDataType_t type, int peer) {
    check(lockstepSend(buf, count, type, peer, comm_, nullptr));
  }
  template <typename T>
  void send(const T* buf, size_t count, int peer) {
    send(buf, count, dataTypeOf<T>(), peer);
  }
  void recv(void* buf, size_t count, lockstepDataType_t type, int peer) {
    check(lockstepRecv(buf, count, type, peer, comm_, nullptr));
  }
  template <typename T>
  void recv(T* buf, size_t count, int peer) {
    recv(buf, count, dataTypeOf<T>(), peer);
  }
  void allToAll(const void* send, void* recv, size_t count, lockstepDataType_t type) {
    check(lockstepAllToAll(send, recv, count, type, comm_, nullptr));
  }
  template <typename T>
  void allToAll(const T* send, T* recv, size_t count) {
    allToAll(send, recv, count, dataTypeOf<T>());
  }

  // A datatype where a typed form wants the peer or the root (comm.recv(floats, n,
  // lockstepBfloat16)) would convert to int and name rank 9: refused at compile time.
  template <typename T>
  void send(const T*, size_t, lockstepDataType_t) = delete;
  template <typename T>
  void recv(T*, size_t, lockstepDataType_t) = delete;
  template <typename T>
  void broadcast(const T*, T*, size_t, lockstepDataType_t) = delete;
  template <typename T>
  void reduce(const T*, T*, size_t, Op, lockstepDataType_t) = delete;

  // Non-blocking all-reduce; the other collectives have lockstepI* forms in the C API.
  Request iallReduce(const void* send, void* recv, size_t count, lockstepDataType_t type, Op op) {
    Request r;
    check(lockstepIallReduce(send, recv, count, type, static_cast<lockstepRedOp_t>(op), comm_, r.out()));
    return r;
  }
  template <typename T>
  Request iallReduce(const T* send, T* recv, size_t count, Op op) {
    return iallReduce(send, recv, count, dataTypeOf<T>(), op);
  }

  // Collective: a new communicator of the ranks with the same color, ordered by key. An empty
  // Comm (valid() false) for color LOCKSTEP_SPLIT_NOCOLOR.
  Comm split(int color, int key) const {
    lockstepComm_t c = nullptr;
    check(lockstepCommSplit(comm_, color, key, &c));
    return Comm(c);
  }
  bool valid() const { return comm_ != nullptr; }

  // Frees the communicator now without waiting for peers (lockstepCommAbort).
  void abort() {
    if (comm_) lockstepCommAbort(std::exchange(comm_, nullptr));
  }

 private:
  explicit Comm(lockstepComm_t c) : comm_(c) {}
  // Must free what it holds: a destroy refused (inside an open group that uses the communicator)
  // becomes an abort, which is never refused, rather than a communicator no handle reaches.
  void reset() {
    if (!comm_) return;
    lockstepComm_t c = std::exchange(comm_, nullptr);
    if (lockstepCommDestroy(c) == lockstepInvalidUsage) lockstepCommAbort(c);
  }
  lockstepComm_t comm_ = nullptr;
};

}  // namespace lockstep
