#include "transport/cuda_ipc/ipc_host_runner.h"

#include <sched.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "kernels/cpu_reduce.h"
#include "transport/cuda_ipc/ipc_interpreter.h"

namespace lockstep {
namespace ipc {
namespace {

// A worker is one thread: it leads itself, and its broadcasts and syncs are no-ops.
struct HostSync {
  bool leader() const { return true; }
  uint64_t load(const uint64_t* p) const { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
  void store(uint64_t* p, uint64_t v) const { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
  uint64_t add(uint64_t* p, uint64_t v) const { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
  void fence() const { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
  void sync() const {}
  bool broadcast(bool ok) const { return ok; }
  const Instr& fetch(const Instr* code, uint32_t k, uint32_t) const { return code[k]; }
  uint64_t nowNs() const {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
  }
  // Tests run more workers than this machine has cores: spin briefly, then give the core away.
  void pause(uint32_t spins) const {
    if (spins < 64) {
      __builtin_ia32_pause();
    } else {
      sched_yield();
    }
  }
  bool aborted(const volatile uint32_t* flag) const {
    return __atomic_load_n(const_cast<const uint32_t*>(flag), __ATOMIC_ACQUIRE) != 0;
  }
  bool failed(const ErrorRecord* e) const { return __atomic_load_n(&e->code, __ATOMIC_ACQUIRE) != kOk; }
  void fail(ErrorRecord* e, const ErrorRecord& r) const {
    uint32_t expected = kOk;
    if (__atomic_compare_exchange_n(&e->code, &expected, r.code, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      e->peer = r.peer;
      e->lane = r.lane;
      e->instr = r.instr;
      e->want = r.want;
      e->got = r.got;
    }
  }
};

// The CPU's kernels (kernels/cpu_reduce.h), so host runs compute the host path's bits.
struct HostMath {
  ReduceKernels k;
  int nranks;
  void copy(char* d, const char* s, size_t bytes) const { std::memcpy(d, s, bytes); }
  void reduce(char* d, const char* a, const char* b, uint64_t n) const { k.reduce(d, a, b, n); }
  void premul(char* d, const char* a, const char* b, uint64_t n) const { k.premulSum(d, a, b, n, nranks); }
  void scale(char* d, const char* s, uint64_t n) const { k.scale(d, s, n, nranks); }
  void divide(char* d, uint64_t n) const { k.divide(d, n, nranks); }
  void sync() const {}
};

}  // namespace

void runOnHostThreads(const ProgramHeader* h) {
  HostMath math{reduceKernels(static_cast<lockstepDataType_t>(h->dtype), static_cast<lockstepRedOp_t>(h->op)),
                h->nranks};
  std::vector<std::thread> threads;
  for (uint32_t lane = 0; lane < h->lanes; ++lane) {
    for (uint32_t w = 0; w < h->workers; ++w) {
      threads.emplace_back([h, lane, w, &math] {
        HostSync sync;
        HostMath m = math;
        runWorker(h, *h, lane, w, sync, m);
      });
    }
  }
  for (auto& t : threads) t.join();
}

}  // namespace ipc
}  // namespace lockstep
