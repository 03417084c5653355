// A rank program for the steady-state test: after a warm-up, a repeated all-reduce must not
// allocate or page-fault on the calling thread. Start it under lockstep-run.
//
//   steady_check [--iters N] [--sizes 8,65536,1048576] [--mark]
//
// malloc, calloc, realloc and free are interposed (operator new goes through malloc), counting
// calls made by the thread that runs the collectives; page faults come from getrusage
// (RUSAGE_THREAD). Both are read around N calls of each size, after N warm-up calls.
// Prints "steady_check: <bytes> B: <allocs> allocations, <faults> page faults" per size and
// exits 1 if any count is not zero. With --mark, each measured loop is bracketed by a failing
// write(-1, "steady-begin <bytes>") and write(-1, "steady-end") so that perf/steady.sh can count,
// under strace, the system calls the calling thread makes in between.
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "lockstep/lockstep.h"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void __libc_free(void*);
}

namespace {
thread_local bool counting = false;
thread_local long allocations = 0;
}  // namespace

extern "C" {
void* malloc(size_t n) {
  if (counting) ++allocations;
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t m) {
  if (counting) ++allocations;
  return __libc_calloc(n, m);
}
void* realloc(void* p, size_t n) {
  if (counting) ++allocations;
  return __libc_realloc(p, n);
}
void free(void* p) {
  if (counting && p) ++allocations;
  __libc_free(p);
}
}

namespace {

long minorFaults() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_minflt + u.ru_majflt;
}

int fail(lockstepResult_t r, int rank, const char* what) {
  std::fprintf(stderr, "steady_check rank %d: %s: %s: %s\n", rank, what, lockstepGetErrorString(r),
               lockstepGetLastError(nullptr));
  return 2;
}

}  // namespace

// Under UBSan the vptr check fills the runtime's own type cache as new (type, vtable) pairs come
// up, which faults pages in the calling thread (perf record -e page-faults: every fault seen in a
// failing run was in __ubsan::checkDynamicType). Those are printed, not held against the library.
#ifdef STEADY_SANITIZER_FAULTS
constexpr bool kSanitizerFaults = true;
#else
constexpr bool kSanitizerFaults = false;
#endif

int main(int argc, char** argv) {
  int iters = 1000;
  bool mark = false;
  std::vector<size_t> sizes = {8, 65536, 1 << 20};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--mark") == 0) {
      mark = true;
      continue;
    }
    if (i + 1 >= argc) break;
    if (std::strcmp(argv[i], "--iters") == 0)
      iters = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--sizes") == 0) {
      sizes.clear();
      for (char* s = argv[++i]; *s;) {
        char* end;
        sizes.push_back(std::strtoull(s, &end, 10));
        s = *end ? end + 1 : end;
      }
    }
  }
  lockstepComm_t comm;
  lockstepResult_t r = lockstepCommInitFromEnv(&comm);
  if (r != lockstepSuccess) return fail(r, -1, "init");
  int rank = 0;
  lockstepCommUserRank(comm, &rank);
  bool clean = true;
  for (size_t bytes : sizes) {
    const size_t count = bytes / sizeof(float);
    std::vector<float> in(count, 1.0f), out(count, 0.0f);
    for (int i = 0; i < iters; ++i) {  // warm-up: first-touch faults, the tuner's cache, staging
      r = lockstepAllReduce(in.data(), out.data(), count, lockstepFloat32, lockstepSum, comm, nullptr);
      if (r != lockstepSuccess) return fail(r, rank, "warm-up all-reduce");
    }
    char label[64];
    const int labelLen = std::snprintf(label, sizeof label, "steady-begin %zu", bytes);
    if (mark) (void)!::write(-1, label, labelLen);  // fails (EBADF): only strace sees it
    const long faults0 = minorFaults();
    allocations = 0;
    counting = true;
    for (int i = 0; i < iters && r == lockstepSuccess; ++i) {
      r = lockstepAllReduce(in.data(), out.data(), count, lockstepFloat32, lockstepSum, comm, nullptr);
    }
    counting = false;
    if (mark) (void)!::write(-1, "steady-end", 10);
    const long faults = minorFaults() - faults0;
    if (r != lockstepSuccess) return fail(r, rank, "all-reduce");
    std::printf("steady_check: rank %d, %zu B x %d: %ld allocations, %ld page faults\n", rank, bytes, iters,
                allocations, faults);
    clean = clean && allocations == 0 && (faults == 0 || kSanitizerFaults);
  }
  lockstepCommDestroy(comm);
  return clean ? 0 : 1;
}
