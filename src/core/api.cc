// The C ABI. Arguments are validated here, and every exception becomes a lockstepResult_t plus a
// thread-local message here, in one place (guarded()).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "bootstrap/launch.h"
#include "bootstrap/root_service.h"
#include "bootstrap/tcp_bootstrap.h"
#include "kernels/dtype.h"
#include "lockstep/lockstep.h"
#include "src/algo/collective.h"
#include "src/core/api_internal.h"
#include "src/core/comm_handle.h"
#include "src/core/communicator.h"
#include "src/core/errors.h"
#include "src/core/group.h"
#include "src/core/keep.h"
#include "src/core/logging.h"
#include "src/core/memory_kind.h"
#include "src/core/op.h"
#include "src/exec/backoff.h"
#include "src/exec/cuda_driver.h"
#include "src/exec/float_env.h"
#include "src/topo/interfaces.h"

using namespace lockstep;

namespace {

// The last error's text, in this thread's own buffer, which never moves: a pointer from
// lockstepGetLastError stays readable through later calls (it then reads the latest message), as
// NCCL's does. A std::string here was reallocated by a longer message, and a pointer kept from
// before (saved to log after a cleanup call that failed too) read freed memory.
thread_local char tLastError[8192];

void setLastError(std::string_view text) {
  constexpr size_t kMax = sizeof(tLastError) - 1;
  const size_t n = std::min(text.size(), kMax);
  std::memcpy(tLastError, text.data(), n);
  // Cut only where a message lists thousands of ranks.
  if (text.size() > kMax) std::memcpy(tLastError + kMax - 3, "...", 3);
  tLastError[n] = '\0';
}

// Inlined, as guarded() is: see post().
template <typename F>
[[gnu::always_inline]] inline lockstepResult_t converted(F&& body) {
  // The library's own arithmetic (the tuner's prices and settled-call counts, parsed figures)
  // must not depend on the caller's rounding mode or flush-to-zero: ranks whose threads differ
  // there chose different algorithms for one call. Reductions hold it too (HostExecutor::run).
  const DefaultFloatEnv floatEnv;
  try {
    body();
    return lockstepSuccess;
  } catch (const Error& e) {
    setLastError(e.what());
    return e.code();
  } catch (const std::bad_alloc&) {
    setLastError("out of memory");
    return lockstepSystemError;
  } catch (const std::system_error& e) {
    // The system refused a resource (a thread, most often: std::thread's EAGAIN), not a bug.
    setLastError(std::string("system error: ") + e.what());
    return lockstepSystemError;
  } catch (const std::exception& e) {
    setLastError(std::string("internal error: ") + e.what());
    return lockstepInternalError;
  } catch (...) {
    setLastError("internal error: unknown exception");
    return lockstepInternalError;
  }
}

// A call that fails while this thread has a group open, whatever the call, fails the whole group
// at its GroupEnd: the ranks would no longer post matching calls.
[[gnu::noinline, gnu::cold]] void failGroup(lockstepResult_t r) {
  if (Group::current().active()) Group::current().recordFailure(r, tLastError);
}

// Every entry point runs here.
template <typename F>
[[gnu::always_inline]] inline lockstepResult_t guarded(F&& body) {
  const lockstepResult_t r = converted(std::forward<F>(body));
  // lockstepInProgress is a wait's deadline passing: an answer, not a failure.
  if (r != lockstepSuccess && r != lockstepInProgress) [[unlikely]]
    failGroup(r);
  return r;
}

Config loadConfig() {
  Config c = Config::fromEnvironment();
  setLogLevel(c.logLevel);
  return c;
}

}  // namespace

struct lockstepRequest {
  std::shared_ptr<RequestSlot> slot = std::make_shared<RequestSlot>();
  // As a communicator's (comm_handle.h): a forked child's copy waits on a progress thread that
  // exists only in the parent, so it is refused rather than waited for ever.
  const uint32_t generation = forkGeneration();
  // A thread is inside lockstepWait, lockstepTest or lockstepRequestFree on it (RequestClaim).
  std::atomic<bool> claimed{false};
};

namespace {

// An abort reaches the communicators split from the aborted one, and theirs: their calls return
// lockstepAborted within milliseconds, and they stay to be destroyed by their owners (a library
// that splits a communicator of its own, as GradientSync does, is stopped with its parent).
void abortChildren(lockstepComm_t comm) {
  std::vector<lockstepComm_t> children;
  {
    std::lock_guard<std::mutex> lock(comm->childrenMu);
    children = comm->children;
  }
  for (lockstepComm_t child : children) {
    if (child->magic.load() == kCommMagic) {
      try {
        CommUse use(child);
        use->abort();
      } catch (const Error&) {
        // Its destroy is under way (or done): make it quick, as an abort during a destroy does.
        if (child->abortFlag) child->abortFlag->store(true);
      }
    }
    abortChildren(child);  // a destroyed child's own children live on: they are aborted too
  }
}

// An abort of a communicator whose destroy is under way (waiting for calls in flight, or draining
// queued work that may wait on a stalled peer) makes that destroy quick, and the destroy frees it.
bool abortClosing(lockstepComm_t comm) {
  if (!comm || comm->magic.load() != kCommMagic || !comm->closing.load() || !comm->abortFlag) return false;
  comm->abortFlag->store(true);
  abortChildren(comm);
  return true;
}

// Destroy and abort: refuse new calls, let the calls in flight leave, free.
void closeComm(lockstepComm_t comm, bool abort) {
  if (abort && abortClosing(comm)) return;
  // Created in a group: nothing built yet (pending: its group then leaves it out), or nothing
  // built for good (failed). Taken from kPending here, or refused while GroupEnd builds it.
  if (comm && comm->magic.load() == kCommMagic) {
    lockstepComm::Init state = comm->init.load(std::memory_order_acquire);
    if (state == lockstepComm::Init::kPending &&
        comm->init.compare_exchange_strong(state, lockstepComm::Init::kFailed, std::memory_order_acq_rel)) {
      state = lockstepComm::Init::kFailed;
    }
    // Being built by GroupEnd on another thread: an abort stops the build's waits within 100 ms,
    // and the build frees it when it returns (a watchdog may abort a hanging grouped init, as
    // with NCCL). A destroy, which would wait for the build, is refused.
    if (state == lockstepComm::Init::kBuilding && abort &&
        comm->init.compare_exchange_strong(state, lockstepComm::Init::kCancelled, std::memory_order_acq_rel)) {
      comm->groupCancel->store(true, std::memory_order_release);  // its partners in the group too
      return;
    }
    if (state == lockstepComm::Init::kCancelled) return;  // aborted already
    if (state == lockstepComm::Init::kBuilding) {
      throw InvalidUsage(
          "lockstepCommDestroy on a communicator that its group's lockstepGroupEnd is initialising (on another "
          "thread): abort it, or destroy it once GroupEnd has returned");
    }
    if (state == lockstepComm::Init::kFailed) {
      if (comm->closing.exchange(true)) throw InvalidUsage("comm is already being destroyed");
      comm->magic.store(kDeadMagic);
      keepForever(comm);
      return;
    }
  }
  Communicator* impl;
  {
    std::optional<CommUse> use;
    try {
      use.emplace(comm);
    } catch (const Error&) {
      if (abort && abortClosing(comm)) return;  // a destroy began since the check above
      throw;
    }
    impl = &**use;
    // An abort is the way out of whatever state the program is in, so it is never refused: the
    // open group's calls on this communicator then fail the group at its end, as when another
    // thread destroys it. A destroy there is a mistake worth saying.
    if (!abort && Group::current().uses(comm))
      throw InvalidUsage("lockstepCommDestroy on a communicator with calls in an open group");
    // Said before the handle closes: a call that finds it closing is told the abort, with its
    // code. Said after, a training thread racing its watchdog's abort was told "not a live
    // communicator" (lockstepInvalidUsage) in 66 of 20000 races (helper-93).
    if (abort) comm->aborted.store(true);
    if (comm->closing.exchange(true)) {
      if (abort && abortClosing(comm)) return;  // a destroy began since CommUse
      throw InvalidUsage("comm is already being destroyed");
    }
    // Abort: a blocked call notices within milliseconds and returns lockstepAborted.
    if (abort) impl->abort();
  }
  if (abort) abortChildren(comm);
  Backoff backoff;
  while (comm->inflight.load() > 0) backoff.pause();
  comm->impl.reset();
  // The shell is kept (reachable, never freed) so that a second destroy or a call on a
  // destroyed comm is detected instead of touching freed memory.
  comm->magic.store(kDeadMagic);
  keepForever(comm);
}

// `interrupt`, called through the rendezvous's and the bootstrap's waits, ends them by throwing.
std::unique_ptr<Communicator> buildImpl(Config config, const UniqueIdInfo& id, int rank, int nranks,
                                        std::function<void()> interrupt = nullptr) {
  refreshCudaDriver();  // a trainer has loaded CUDA by now, if it uses it
  // The interface on the root's subnet, unless LOCKSTEP_SOCKET_IFNAME says otherwise.
  InterfaceChoice nic = awaitInterface(config.socketIfname, id.root, config.timeout, rank);
  LS_INFO(rank, "rank " << rank << " listens on " << nic.name << " " << nic.addr.hostStr() << " (" << nic.why << ")");
  NetAddr local = nic.addr;
  uint64_t commId = commIdFromSecret(id.secret);
  auto bootstrap =
      std::make_unique<TcpBootstrap>(id, commId, rank, nranks, local, config.timeout, std::move(interrupt));
  return std::make_unique<Communicator>(std::move(config), std::move(bootstrap), commId, id.secret, local);
}

// Now, or inside a group at its outermost end (the handle is returned at once, pending).
// `rendezvous`, when rank 0 serves it here (LOCKSTEP_ROOT), must outlive the build.
lockstepComm_t buildComm(Config config, const UniqueIdInfo& id, int rank, int nranks,
                         std::shared_ptr<RootService> rendezvous = nullptr) {
  auto comm = std::make_unique<lockstepComm>();
  if (Group::current().active()) {
    // Built on another thread, which has no CUDA context current: it takes the caller's, as
    // the caller's thread would have used (cuda_ipc and the device paths are chosen by it).
    refreshCudaDriver();
    void* context = nullptr;
    if (const CudaDriver* d = cudaDriver(); d && d->ctxGetCurrent) d->ctxGetCurrent(&context);
    comm->init.store(lockstepComm::Init::kPending);
    lockstepComm_t shell = comm.get();
    Group::current().addInit(
        shell,
        [config, id, rank, nranks, rendezvous, context, shell] {
          const CudaDriver* d = cudaDriver();
          std::optional<ScopedContext> scope;
          if (d && context) scope.emplace(*d, context);
          // Another thread's lockstepCommAbort of the handle ends the build's waits.
          auto cancelled = [shell] {
            if (shell->init.load(std::memory_order_acquire) == lockstepComm::Init::kCancelled)
              throw Aborted("comm aborted (lockstepCommAbort) while its group's end initialised it");
            if (shell->groupCancel->load(std::memory_order_acquire)) {
              throw Aborted(
                  "another rank of this communicator, created in the same group, was aborted (lockstepCommAbort) "
                  "while the group's end initialised them");
            }
          };
          return buildImpl(config, id, rank, nranks, cancelled);
        },
        commIdFromSecret(id.secret), rank, "rank " + std::to_string(rank) + " of " + std::to_string(nranks));
    return comm.release();
  }
  comm->impl = buildImpl(std::move(config), id, rank, nranks);
  comm->abortFlag = comm->impl->abortFlag();
  return comm.release();
}

size_t elemSize(lockstepDataType_t t) {
  if (!validDataType(t)) throw InvalidArgument("invalid datatype " + std::to_string(static_cast<int>(t)));
  return dataTypeSize(t);
}

// count x blocks x element size, refusing overflow.
size_t bytesOf(size_t count, size_t blocks, lockstepDataType_t t) {
  // Multiplied with overflow checks, not compared by division: two divisions cost more than the
  // rest of an 8-byte call's validation.
  size_t elem = elemSize(t), bytes = 0;
  if (__builtin_mul_overflow(count, blocks, &bytes) || __builtin_mul_overflow(bytes, elem, &bytes) ||
      bytes > SIZE_MAX / 4) {
    throw InvalidArgument("count " + std::to_string(count) + " x " + std::to_string(blocks) + " x " +
                          std::to_string(elem) + " bytes overflows");
  }
  return bytes;
}

void requireBuffer(const void* p, size_t bytes, const char* name) {
  if (bytes > 0 && p == nullptr)
    throw InvalidArgument(std::string(name) + " is NULL with " + std::to_string(bytes) + " bytes to move");
}

bool overlap(const void* a, size_t an, const void* b, size_t bn) {
  auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return an > 0 && bn > 0 && x < y + bn && y < x + an;
}

// Overlapping buffers are only allowed in the exact in-place form NCCL defines.
void checkOverlap(const void* send, size_t sendBytes, const void* recv, size_t recvBytes, const void* inPlaceSend,
                  const char* form) {
  if (overlap(send, sendBytes, recv, recvBytes) && send != inPlaceSend) {
    throw InvalidArgument(std::string("sendbuff and recvbuff overlap but not in the in-place form (") + form + ")");
  }
}

void checkOp(lockstepRedOp_t op) {
  if (!validRedOp(op)) throw InvalidArgument("invalid reduction op " + std::to_string(static_cast<int>(op)));
}

void checkRank(int r, int nranks, const char* what) {
  if (r < 0 || r >= nranks) {
    throw InvalidArgument(std::string(what) + " " + std::to_string(r) + " is outside [0, " + std::to_string(nranks) +
                          ")");
  }
}

// A call ordered with a CUDA stream (device buffers, or any stream given) needs a loaded driver
// with the calls src/exec/stream_order.h makes.
void checkStreamPath(const char* op, bool request) {
  if (request) {
    throw InvalidUsage(std::string(op) +
                       ": device buffers complete through a CUDA stream: use the blocking call with a stream (the "
                       "non-blocking lockstepI* calls take host memory)");
  }
  const CudaDriver* driver = cudaDriver();
  if (!driver) {
    throw InvalidUsage(std::string(op) +
                       ": a CUDA stream was given, but this process has not loaded the CUDA driver (host-memory calls "
                       "take stream NULL)");
  }
  if (!driver->hasDevicePath()) {
    throw InvalidUsage(std::string(op) +
                       ": the loaded CUDA driver lacks the calls stream-ordered collectives need (cuMemHostAlloc, "
                       "cuLaunchHostFunc, cuStreamWaitValue32_v2: CUDA 11.7 or newer)");
  }
}

// Validates one call against the communicator and returns it as an OpDesc.
OpDesc validate(const Communicator& c, OpKind kind, const void* send, void* recv, size_t count, lockstepDataType_t t,
                lockstepRedOp_t op, int root) {
  const int n = c.size(), rank = c.rank();
  OpDesc d{kind, send, recv, count, t, op, root};
  switch (kind) {
    case OpKind::kAllReduce: {
      checkOp(op);
      size_t b = bytesOf(count, 1, t);
      requireBuffer(send, b, "sendbuff");
      requireBuffer(recv, b, "recvbuff");
      checkOverlap(send, b, recv, b, recv, "sendbuff == recvbuff");
      break;
    }
    case OpKind::kReduceScatter: {
      checkOp(op);
      size_t sb = bytesOf(count, n, t), rb = bytesOf(count, 1, t);
      requireBuffer(send, sb, "sendbuff");
      requireBuffer(recv, rb, "recvbuff");
      checkOverlap(send, sb, recv, rb, static_cast<const char*>(recv) - rank * rb,
                   "recvbuff == sendbuff + rank*recvcount");
      break;
    }
    case OpKind::kAllGather: {
      size_t sb = bytesOf(count, 1, t), rb = bytesOf(count, n, t);
      requireBuffer(send, sb, "sendbuff");
      requireBuffer(recv, rb, "recvbuff");
      checkOverlap(send, sb, recv, rb, static_cast<const char*>(recv) + rank * sb,
                   "sendbuff == recvbuff + rank*sendcount");
      break;
    }
    case OpKind::kBroadcast: {
      checkRank(root, n, "root");
      size_t b = bytesOf(count, 1, t);
      requireBuffer(recv, b, "recvbuff");
      if (rank == root) {
        requireBuffer(send, b, "sendbuff (on the root)");
        checkOverlap(send, b, recv, b, recv, "sendbuff == recvbuff");
      }
      break;
    }
    case OpKind::kReduce: {
      checkOp(op);
      checkRank(root, n, "root");
      size_t b = bytesOf(count, 1, t);
      requireBuffer(send, b, "sendbuff");
      if (rank == root) {
        requireBuffer(recv, b, "recvbuff (on the root)");
        checkOverlap(send, b, recv, b, recv, "sendbuff == recvbuff");
      }
      break;
    }
    case OpKind::kSend:
      checkRank(root, n, "peer");
      requireBuffer(send, bytesOf(count, 1, t), "sendbuff");
      break;
    case OpKind::kRecv:
      checkRank(root, n, "peer");
      requireBuffer(recv, bytesOf(count, 1, t), "recvbuff");
      break;
    case OpKind::kAllToAll: {
      size_t b = bytesOf(count, n, t);
      requireBuffer(send, b, "sendbuff");
      requireBuffer(recv, b, "recvbuff");
      if (overlap(send, b, recv, b)) throw InvalidArgument("all-to-all buffers must not overlap (no in-place form)");
      break;
    }
    case OpKind::kBarrier:
      break;
    case OpKind::kSplit:
      throw InternalError("lockstepCommSplit is not a collective call");
  }
  return d;
}

// The request out-parameter must exist before anything else is checked.
template <typename F>
lockstepResult_t requestArg(lockstepRequest_t* request, F&& body) {
  if (request) return body();
  return guarded([] { throw InvalidArgument("request is NULL"); });
}

void checkSameProcess(lockstepRequest_t request) {
  if (forkedSince(request->generation)) {
    throw InvalidUsage(
        "the request belongs to the process that made it: this process was forked from it since; its "
        "operation runs there");
  }
}

// Why a request cannot be waited for or tested yet.
std::string unlaunched() {
  return Group::current().active()
             ? "the request's operation belongs to the open group, which launches it at its outermost "
               "lockstepGroupEnd (waiting for it inside the group can never end)"
             : "the request's group has not ended yet (call lockstepGroupEnd first)";
}

// One thread at a time completes a request, as in MPI. Two at once once crashed the process:
// the first to finish freed the request under the other. A second thread that comes while the
// first is inside is refused; one that comes after finds the request NULL, as completed. (A
// thread that read the handle just before another freed it is beyond any check: the program's
// own race on its variable.)
class RequestClaim {
 public:
  explicit RequestClaim(lockstepRequest_t request) : request_(request) {
    if (request->claimed.exchange(true, std::memory_order_acquire)) {
      request_ = nullptr;
      throw InvalidUsage(
          "another thread is waiting for, testing or freeing this request: one thread at a time completes "
          "a request (as in MPI)");
    }
  }
  ~RequestClaim() {
    if (request_) request_->claimed.store(false, std::memory_order_release);
  }
  RequestClaim(const RequestClaim&) = delete;
  RequestClaim& operator=(const RequestClaim&) = delete;
  // The request is freed: nothing to release.
  void consumed() { request_ = nullptr; }

 private:
  lockstepRequest_t request_;
};

// Frees a finished request and returns its operation's result, with its message as the last
// error. Not thrown: reporting an operation's failure is not a failure of the wait or test, and
// inside a group a failed call discards the group (helper-57: waiting there for an earlier
// request that had been refused, with its communicator still usable, left this rank out of the
// group its peers ran).
lockstepResult_t completeRequest(lockstepRequest_t* request, RequestClaim& claim) {
  std::shared_ptr<Work> w = (*request)->slot->work.exchange(nullptr);
  claim.consumed();
  delete *request;
  *request = nullptr;
  if (w->result != lockstepSuccess) setLastError(w->error);
  return w->result;
}

}  // namespace

namespace lockstep {
Communicator* communicatorOf(lockstepComm_t comm) {
  return comm != nullptr && comm->magic.load() == kCommMagic ? comm->impl.get() : nullptr;
}
}  // namespace lockstep

extern "C" {

lockstepResult_t lockstepGetVersion(int* version) {
  return guarded([&] {
    if (!version) throw InvalidArgument("version is NULL");
    *version = LOCKSTEP_VERSION_CODE;
  });
}

lockstepResult_t lockstepGetUniqueId(lockstepUniqueId* uniqueId) {
  return guarded([&] {
    if (!uniqueId) throw InvalidArgument("uniqueId is NULL");
    Config config = loadConfig();
    UniqueIdInfo info;
    info.secret = randomSecret();
    startDetachedRoot(awaitLocalAddress(config.socketIfname, config.timeout), info.secret, config.timeout, &info.root);
    *uniqueId = encodeUniqueId(info);
  });
}

lockstepResult_t lockstepUniqueIdToHex(const lockstepUniqueId* uniqueId, char* hex, size_t hexBytes) {
  return guarded([&] {
    if (!uniqueId || !hex) throw InvalidArgument("uniqueId or hex is NULL");
    if (hexBytes < 2 * LOCKSTEP_UNIQUE_ID_BYTES + 1) {
      throw InvalidArgument("hex buffer needs " + std::to_string(2 * LOCKSTEP_UNIQUE_ID_BYTES + 1) + " bytes");
    }
    std::string s = toHex(uniqueId->internal, LOCKSTEP_UNIQUE_ID_BYTES);
    std::memcpy(hex, s.c_str(), s.size() + 1);
  });
}

lockstepResult_t lockstepUniqueIdFromHex(const char* hex, lockstepUniqueId* uniqueId) {
  return guarded([&] {
    if (!uniqueId || !hex) throw InvalidArgument("uniqueId or hex is NULL");
    lockstepUniqueId id;
    fromHex(hex, id.internal, LOCKSTEP_UNIQUE_ID_BYTES, "unique id hex");
    decodeUniqueId(id);  // validates
    *uniqueId = id;
  });
}

lockstepResult_t lockstepCommInitRank(lockstepComm_t* comm, int nranks, lockstepUniqueId commId, int rank) {
  return guarded([&] {
    if (!comm) throw InvalidArgument("comm is NULL");
    *comm = nullptr;
    if (nranks < 1 || nranks > kMaxRanks) {
      throw InvalidArgument("nranks " + std::to_string(nranks) + " is outside [1, " + std::to_string(kMaxRanks) + "]");
    }
    if (rank < 0 || rank >= nranks) {
      throw InvalidArgument("rank " + std::to_string(rank) + " is outside [0, " + std::to_string(nranks) + ")");
    }
    UniqueIdInfo id = decodeUniqueId(commId);
    *comm = buildComm(loadConfig(), id, rank, nranks);
  });
}

lockstepResult_t lockstepCommInitFromEnv(lockstepComm_t* comm) {
  return guarded([&] {
    if (!comm) throw InvalidArgument("comm is NULL");
    *comm = nullptr;
    Config config = loadConfig();
    LaunchPlan plan = planLaunch(config);
    LS_INFO(plan.rank, "launch: rank " << plan.rank << " of " << plan.nranks << " from " << config.launch.launcher
                                       << " variables; rendezvous "
                                       << (config.launch.uniqueIdHex.empty()
                                               ? config.launch.root + " (" + config.launch.rootFrom + ")"
                                               : std::string("from LOCKSTEP_UNIQUE_ID")));
    *comm = buildComm(std::move(config), plan.id, plan.rank, plan.nranks, std::move(plan.rootService));
  });
}

// NULL is nothing to close, as in NCCL: cleanup code after a failed init may pass what it got.
lockstepResult_t lockstepCommDestroy(lockstepComm_t comm) {
  return guarded([&] {
    if (comm) closeComm(comm, /*abort=*/false);
  });
}

lockstepResult_t lockstepCommAbort(lockstepComm_t comm) {
  return guarded([&] {
    if (comm) closeComm(comm, /*abort=*/true);
  });
}

lockstepResult_t lockstepCommGetAsyncError(lockstepComm_t comm, lockstepResult_t* asyncError) {
  return guarded([&] {
    if (!asyncError) throw InvalidArgument("asyncError is NULL");
    // Created in a group that has not ended, or being built by its GroupEnd: in progress, as
    // NCCL says of a communicator whose non-blocking init runs, so that a watchdog thread polling
    // it can wait (it was refused, lockstepInvalidUsage, with no way to tell "not yet": helper-93).
    if (comm && comm->magic.load() == kCommMagic) {
      const lockstepComm::Init state = comm->init.load(std::memory_order_acquire);
      if (state == lockstepComm::Init::kPending || state == lockstepComm::Init::kBuilding) {
        *asyncError = lockstepInProgress;
        return;
      }
      // Its init failed: that failure, with its code, as NCCL gives a failed non-blocking init's
      // (it was refused, and the code was only in the refusal's text).
      if (state == lockstepComm::Init::kFailed && !comm->closing.load()) {
        *asyncError = comm->initCode;
        setLastError("comm's initialisation at the end of its group failed: " + comm->initError);
        return;
      }
    }
    // A failure found by the watchdog (a rooted or count-0 call that returned success) is
    // learned here: lockstepGetLastError then says what it was, as after a failed call.
    std::string why;
    *asyncError = CommUse(comm)->asyncError(&why);
    if (*asyncError != lockstepSuccess) setLastError(why);
  });
}

lockstepResult_t lockstepCommCount(const lockstepComm_t comm, int* count) {
  return guarded([&] {
    if (!count) throw InvalidArgument("count is NULL");
    *count = CommUse(comm)->size();
  });
}

lockstepResult_t lockstepCommUserRank(const lockstepComm_t comm, int* rank) {
  return guarded([&] {
    if (!rank) throw InvalidArgument("rank is NULL");
    *rank = CommUse(comm)->rank();
  });
}

const char* lockstepGetErrorString(lockstepResult_t result) {
  switch (result) {
    case lockstepSuccess:
      return "no error";
    case lockstepSystemError:
      return "system error (a system call failed)";
    case lockstepInternalError:
      return "internal error (a bug in Lockstep)";
    case lockstepInvalidArgument:
      return "invalid argument";
    case lockstepInvalidUsage:
      return "invalid usage";
    case lockstepRemoteError:
      return "remote error (a peer died, disconnected or misbehaved)";
    case lockstepInProgress:
      return "operation in progress";
    case lockstepTimeout:
      return "timeout";
    case lockstepMismatch:
      return "mismatch between ranks";
    case lockstepAborted:
      return "communicator aborted";
    default:
      return "unknown result code";
  }
}

const char* lockstepGetLastError(lockstepComm_t /*comm*/) { return tLastError; }

// Every collective goes through here: validate, then run now, record in the open group, or queue
// (non-blocking, when request != NULL). Kept out of line, with guarded() inlined into it, so that
// each entry point is a jump here: when the compiler inlined post into lockstepAllReduce instead
// and left guarded() out of line, an 8-byte all-reduce took 1.04-1.065x the time (paired,
// perf/ab_latency.sh, 40 rounds).
[[gnu::noinline]] lockstepResult_t post(lockstepComm_t comm, OpKind kind, const void* send, void* recv, size_t count,
                                        lockstepDataType_t t, lockstepRedOp_t op, int root, lockstepStream_t stream,
                                        lockstepRequest_t* request) {
  Group& group = Group::current();
  lockstepResult_t r = guarded([&] {
    if (request) *request = nullptr;
    CommUse use(comm);
    PostGuard one(comm);
    Communicator& c = *use;
    OpDesc d = validate(c, kind, send, recv, count, t, op, root);
    // Only the buffers this rank uses are classified: NCCL lets a non-root pass anything as a
    // broadcast's sendbuff or a reduce's recvbuff.
    const bool nonRoot = root != c.rank();
    const BufferRole buffers[] = {{kind == OpKind::kBroadcast && nonRoot ? nullptr : send, "sendbuff"},
                                  {kind == OpKind::kReduce && nonRoot ? nullptr : recv, "recvbuff"}};
    d.device = checkBufferKinds(buffers, 2, opKindName(kind)) == MemoryKind::kDevice;
    if (d.device) checkDeviceAlignment(buffers, 2, dataTypeSize(t), dataTypeName(t), opKindName(kind));
    // Device buffers are stream-ordered, on the legacy default stream when stream is NULL (as
    // in NCCL); host buffers are when a stream is given.
    const bool onStream = d.device || stream != nullptr;
    if (onStream) checkStreamPath(opKindName(kind), request != nullptr);
    auto req = request ? std::make_unique<lockstepRequest>() : nullptr;
    if (group.active()) {
      group.add(comm, d, req ? req->slot : nullptr, onStream, stream);
    } else if (req) {
      req->slot->work.store(c.submit(d));
    } else if (onStream) {
      c.postOnStream({&d, 1}, stream);
    } else {
      c.run(d);
    }
    if (request) *request = req.release();
  });
  return r;
}

lockstepResult_t lockstepAllReduce(const void* sendbuff, void* recvbuff, size_t count, lockstepDataType_t datatype,
                                   lockstepRedOp_t op, lockstepComm_t comm, lockstepStream_t stream) {
  return post(comm, OpKind::kAllReduce, sendbuff, recvbuff, count, datatype, op, -1, stream, nullptr);
}
lockstepResult_t lockstepBarrier(lockstepComm_t comm, lockstepStream_t stream) {
  return post(comm, OpKind::kBarrier, nullptr, nullptr, 0, lockstepUint8, lockstepMax, -1, stream, nullptr);
}
lockstepResult_t lockstepReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                                       lockstepDataType_t datatype, lockstepRedOp_t op, lockstepComm_t comm,
                                       lockstepStream_t stream) {
  return post(comm, OpKind::kReduceScatter, sendbuff, recvbuff, recvcount, datatype, op, -1, stream, nullptr);
}
lockstepResult_t lockstepAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, lockstepDataType_t datatype,
                                   lockstepComm_t comm, lockstepStream_t stream) {
  return post(comm, OpKind::kAllGather, sendbuff, recvbuff, sendcount, datatype, lockstepSum, -1, stream, nullptr);
}
lockstepResult_t lockstepBroadcast(const void* sendbuff, void* recvbuff, size_t count, lockstepDataType_t datatype,
                                   int root, lockstepComm_t comm, lockstepStream_t stream) {
  return post(comm, OpKind::kBroadcast, sendbuff, recvbuff, count, datatype, lockstepSum, root, stream, nullptr);
}
lockstepResult_t lockstepReduce(const void* sendbuff, void* recvbuff, size_t count, lockstepDataType_t datatype,
                                lockstepRedOp_t op, int root, lockstepComm_t comm, lockstepStream_t stream) {
  return post(comm, OpKind::kReduce, sendbuff, recvbuff, count, datatype, op, root, stream, nullptr);
}
lockstepResult_t lockstepSend(const void* sendbuff, size_t count, lockstepDataType_t datatype, int peer,
                              lockstepComm_t comm, lockstepStream_t stream) {
  return post(comm, OpKind::kSend, sendbuff, nullptr, count, datatype, lockstepSum, peer, stream, nullptr);
}
lockstepResult_t lockstepRecv(void* recvbuff, size_t count, lockstepDataType_t datatype, int peer, lockstepComm_t comm,
                              lockstepStream_t stream) {
  return post(comm, OpKind::kRecv, nullptr, recvbuff, count, datatype, lockstepSum, peer, stream, nullptr);
}
lockstepResult_t lockstepAllToAll(const void* sendbuff, void* recvbuff, size_t count, lockstepDataType_t datatype,
                                  lockstepComm_t comm, lockstepStream_t stream) {
  return post(comm, OpKind::kAllToAll, sendbuff, recvbuff, count, datatype, lockstepSum, -1, stream, nullptr);
}

lockstepResult_t lockstepIallReduce(const void* sendbuff, void* recvbuff, size_t count, lockstepDataType_t datatype,
                                    lockstepRedOp_t op, lockstepComm_t comm, lockstepRequest_t* request) {
  return requestArg(request, [&] {
    return post(comm, OpKind::kAllReduce, sendbuff, recvbuff, count, datatype, op, -1, nullptr, request);
  });
}
lockstepResult_t lockstepIreduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                                        lockstepDataType_t datatype, lockstepRedOp_t op, lockstepComm_t comm,
                                        lockstepRequest_t* request) {
  return requestArg(request, [&] {
    return post(comm, OpKind::kReduceScatter, sendbuff, recvbuff, recvcount, datatype, op, -1, nullptr, request);
  });
}
lockstepResult_t lockstepIallGather(const void* sendbuff, void* recvbuff, size_t sendcount, lockstepDataType_t datatype,
                                    lockstepComm_t comm, lockstepRequest_t* request) {
  return requestArg(request, [&] {
    return post(comm, OpKind::kAllGather, sendbuff, recvbuff, sendcount, datatype, lockstepSum, -1, nullptr, request);
  });
}
lockstepResult_t lockstepIbroadcast(const void* sendbuff, void* recvbuff, size_t count, lockstepDataType_t datatype,
                                    int root, lockstepComm_t comm, lockstepRequest_t* request) {
  return requestArg(request, [&] {
    return post(comm, OpKind::kBroadcast, sendbuff, recvbuff, count, datatype, lockstepSum, root, nullptr, request);
  });
}
lockstepResult_t lockstepIreduce(const void* sendbuff, void* recvbuff, size_t count, lockstepDataType_t datatype,
                                 lockstepRedOp_t op, int root, lockstepComm_t comm, lockstepRequest_t* request) {
  return requestArg(request, [&] {
    return post(comm, OpKind::kReduce, sendbuff, recvbuff, count, datatype, op, root, nullptr, request);
  });
}
lockstepResult_t lockstepIsend(const void* sendbuff, size_t count, lockstepDataType_t datatype, int peer,
                               lockstepComm_t comm, lockstepRequest_t* request) {
  return requestArg(request, [&] {
    return post(comm, OpKind::kSend, sendbuff, nullptr, count, datatype, lockstepSum, peer, nullptr, request);
  });
}
lockstepResult_t lockstepIrecv(void* recvbuff, size_t count, lockstepDataType_t datatype, int peer, lockstepComm_t comm,
                               lockstepRequest_t* request) {
  return requestArg(request, [&] {
    return post(comm, OpKind::kRecv, nullptr, recvbuff, count, datatype, lockstepSum, peer, nullptr, request);
  });
}
lockstepResult_t lockstepIallToAll(const void* sendbuff, void* recvbuff, size_t count, lockstepDataType_t datatype,
                                   lockstepComm_t comm, lockstepRequest_t* request) {
  return requestArg(request, [&] {
    return post(comm, OpKind::kAllToAll, sendbuff, recvbuff, count, datatype, lockstepSum, -1, nullptr, request);
  });
}
lockstepResult_t lockstepIbarrier(lockstepComm_t comm, lockstepRequest_t* request) {
  return requestArg(request, [&] {
    return post(comm, OpKind::kBarrier, nullptr, nullptr, 0, lockstepUint8, lockstepMax, -1, nullptr, request);
  });
}

lockstepResult_t lockstepTest(lockstepRequest_t* request, int* done) {
  lockstepResult_t result = lockstepSuccess;
  const lockstepResult_t r = guarded([&] {
    if (!request || !done) throw InvalidArgument("request or done is NULL");
    *done = 0;
    if (*request == nullptr) {
      *done = 1;
      return;
    }
    checkSameProcess(*request);
    RequestClaim claim(*request);
    const std::shared_ptr<Work> w = (*request)->slot->work.load();
    if (!w) throw InvalidUsage(unlaunched());
    if (!w->done.load(std::memory_order_acquire)) return;
    *done = 1;
    result = completeRequest(request, claim);
  });
  return r != lockstepSuccess ? r : result;
}

lockstepResult_t lockstepWait(lockstepRequest_t* request, int64_t timeoutMs) {
  lockstepResult_t result = lockstepSuccess;
  const lockstepResult_t r = guarded([&] {
    if (!request) throw InvalidArgument("request is NULL");
    if (*request == nullptr) return;
    checkSameProcess(*request);
    RequestClaim claim(*request);
    // An operation launched before the open group (a non-blocking call, an earlier group) runs on
    // its own and may be waited for here; one of the open group cannot start before its GroupEnd.
    const std::shared_ptr<Work> w = (*request)->slot->work.load();
    if (!w) throw InvalidUsage(unlaunched());
    // A year and more is forever: now + INT64_MAX ms would overflow the clock into the past.
    constexpr int64_t kForeverMs = int64_t{1} << 35;
    Deadline dl = timeoutMs < 0 || timeoutMs >= kForeverMs ? Deadline::never()
                                                           : Deadline::after(std::chrono::milliseconds(timeoutMs));
    if (!waitWork(*w, dl)) {
      throw Error(lockstepInProgress, w->info.label() + " still running after " + std::to_string(timeoutMs) + " ms");
    }
    result = completeRequest(request, claim);
  });
  return r != lockstepSuccess ? r : result;
}

lockstepResult_t lockstepRequestLaunched(lockstepRequest_t request, int* launched) {
  return guarded([&] {
    if (!launched) throw InvalidArgument("launched is NULL");
    *launched = request == nullptr || request->slot->work.load() != nullptr;
  });
}

lockstepResult_t lockstepRequestFree(lockstepRequest_t* request) {
  return guarded([&] {
    if (!request) throw InvalidArgument("request is NULL");
    if (*request == nullptr) return;
    RequestClaim claim(*request);
    claim.consumed();
    delete *request;  // the open group, if any, keeps the slot alive
    *request = nullptr;
  });
}

lockstepResult_t lockstepGroupStart(void) {
  return guarded([] { Group::current().start(); });
}

lockstepResult_t lockstepGroupEnd(void) {
  return guarded([] { Group::current().end(); });
}

lockstepResult_t lockstepGroupAbandon(void) {
  return guarded([] {
    Group& group = Group::current();
    if (!group.active()) throw InvalidUsage("lockstepGroupAbandon without a matching lockstepGroupStart");
    group.recordFailure(lockstepInvalidUsage, "the caller abandoned the group (lockstepGroupAbandon)");
    try {
      group.end();
    } catch (const Error&) {
      // The outermost level discards the group and says so: what was asked for.
    }
  });
}

lockstepResult_t lockstepCommSplit(lockstepComm_t comm, int color, int key, lockstepComm_t* newcomm) {
  return guarded([&] {
    if (newcomm) *newcomm = nullptr;  // first, as every out-parameter: also when comm is refused
    CommUse use(comm);
    // A split drives the communicator as a collective does: beside another thread's call it once
    // waited for ever for that call's end (and an abort waited with it).
    PostGuard one(comm);
    Communicator& c = *use;
    // Refused here, the others would wait in the exchange and pair with this rank's next split:
    // a bad call still takes part, and every rank fails naming it.
    std::string refusal;
    if (!newcomm) {
      refusal = "newcomm is NULL";
    } else if (color < 0 && color != LOCKSTEP_SPLIT_NOCOLOR) {
      refusal = "color " + std::to_string(color) + " is negative (use LOCKSTEP_SPLIT_NOCOLOR to opt out)";
    }
    const bool inGroup = Group::current().active();
    if (inGroup) {
      // Refused, and the group discarded. Where another rank may be this thread's (threads of one
      // process drive ranks in a group), at once: its split would wait for the others' calls,
      // which come after this one returns. Otherwise it takes part as a refusal, so the others
      // fail now naming this rank, where they waited in the exchange to the timeout (helper-84).
      // By process, not transport: threads of one process use sockets under
      // LOCKSTEP_TRANSPORTS=socket (helper-85).
      if (c.sharesProcessWithAPeer()) throw InvalidUsage("lockstepCommSplit inside a group");
      if (refusal.empty()) refusal = "called inside a group (call it outside any group)";
    }
    std::unique_ptr<Communicator> child = c.split(color, key, refusal, inGroup);
    if (!child) return;
    auto shell = std::make_unique<lockstepComm>();
    shell->impl = std::move(child);
    shell->abortFlag = shell->impl->abortFlag();
    {
      std::lock_guard<std::mutex> lock(comm->childrenMu);
      comm->children.push_back(shell.get());
    }
    // An abort of the parent while the child was being built (tens of milliseconds) found no
    // child to abort: it set the parent's flag first, and took the list after this push or
    // before it, so one of the two sees the other.
    if (c.abortFlag()->load()) shell->impl->abort();
    *newcomm = shell.release();
  });
}

}  // extern "C"
