#include "transport/cuda_ipc/cuda_ipc.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "src/algo/collective.h"
#include "src/core/errors.h"
#include "src/core/logging.h"
#include "src/exec/fingerprint.h"
#include "transport/cuda_ipc/ipc_kernel.h"

namespace lockstep {
namespace {

// liblockstep_cuda's launcher: already in the process (the application links liblockstep_cuda,
// or a test defines it), else liblockstep_cuda.so.<version> beside the code that holds this function
// (liblockstep.so, or an executable linking it statically) or in ../ or ../lib from there (the
// build tree's and an install's layouts), else on the search path. The host library never links
// CUDA itself (cmake/cuda.cmake).
// By its soname (cmake: liblockstep_cuda.so.<major>.<minor> before 1.0): one of another version
// would read this version's data types and program header its own way.
std::string cudaLibraryName() {
  std::string name = "liblockstep_cuda.so." + std::to_string(LOCKSTEP_MAJOR);
  if (LOCKSTEP_MAJOR == 0) name.append(".").append(std::to_string(LOCKSTEP_MINOR));  // not "." + s: GCC 12 warns
  return name;
}

#ifndef LOCKSTEP_INSTALL_LIBDIR
#define LOCKSTEP_INSTALL_LIBDIR "lib"
#endif

// What the search for the launcher tried and why the last try failed, for the warning a program
// with a CUDA context gets when it is not found (device calls then take the slower staged path,
// which was said nowhere: helper-82).
std::string& launcherSearch() {
  static std::string text;
  return text;
}

LockstepCudaIpcLaunchFn findIpcLauncher() {
  static LockstepCudaIpcLaunchFn found = [] {
    if (void* f = ::dlsym(RTLD_DEFAULT, "lockstepCudaIpcLaunch")) return reinterpret_cast<LockstepCudaIpcLaunchFn>(f);
    const std::string name = cudaLibraryName();
    std::vector<std::string> candidates;
    Dl_info self{};
    if (::dladdr(reinterpret_cast<void*>(&findIpcLauncher), &self) && self.dli_fname) {
      std::string dir = self.dli_fname;
      dir = dir.substr(0, dir.find_last_of('/') + 1);
      // Beside it (the build tree, an install's lib), and an install's library directory seen
      // from its bin (an executable linking the static library).
      for (const std::string& rel : {std::string(), std::string("../"), std::string("../lib/"),
                                     std::string("../lib64/"), "../" + std::string(LOCKSTEP_INSTALL_LIBDIR) + "/"}) {
        if (std::find(candidates.begin(), candidates.end(), dir + rel + name) == candidates.end()) {
          candidates.push_back(dir + rel + name);
        }
      }
    }
    candidates.push_back(name);
    std::string tried, last;
    for (const std::string& path : candidates) {
      tried += (tried.empty() ? "" : ", ") + path;
      if (void* lib = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) {
        if (void* f = ::dlsym(lib, "lockstepCudaIpcLaunch")) return reinterpret_cast<LockstepCudaIpcLaunchFn>(f);
        last = path + " has no lockstepCudaIpcLaunch";
      } else if (const char* why = ::dlerror()) {
        // A file that exists but cannot load (its libcudart missing) says more than "not found".
        if (last.empty() || std::strstr(why, "No such file") == nullptr) last = why;
      }
    }
    launcherSearch() = "tried " + tried + (last.empty() ? "" : "; " + last);
    return LockstepCudaIpcLaunchFn{nullptr};
  }();
  return found;
}

// What each rank tells the others about its segment.
struct SegmentRecord {
  int32_t ok;  // 1: allocated and exported
  int32_t slots;
  uint64_t slotBytes;
  int32_t blocks;
  int32_t pad;
  int64_t pid;
  uint64_t processToken;
  uint64_t pointer;  // its address in its own process (for ranks in the same process)
  uint64_t context;  // its CUDA context, likewise
  CudaDriver::IpcHandle handle;
};

bool allAgree(Bootstrap& bootstrap, bool mine) {
  std::vector<int32_t> all(bootstrap.size());
  all[bootstrap.rank()] = mine ? 1 : 0;
  bootstrap.allGather(all.data(), sizeof(int32_t));
  for (int32_t v : all) {
    if (v != 1) return false;
  }
  return true;
}

// Segments of the ranks in this process, which its other ranks use by pointer (a process cannot
// open its own IPC handles). Each is freed by whichever engine lets go of it last, so a rank that
// destroys its communicator first does not free memory a peer thread's kernel still writes to
// (ranks in other processes hold an opened handle instead).
class LocalSegments {
 public:
  static LocalSegments& get() {
    static auto* s = new LocalSegments;  // never destroyed: engines may outlive static destructors
    return *s;
  }
  void add(CudaDriver::DevicePtr p, void* context) {
    std::lock_guard<std::mutex> lock(mu_);
    refs_[p] = Ref{1, context};
  }
  bool retain(CudaDriver::DevicePtr p) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = refs_.find(p);
    if (it == refs_.end()) return false;
    ++it->second.count;
    return true;
  }
  // The context to free it in when this was the last reference, else nullptr.
  void* release(CudaDriver::DevicePtr p) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = refs_.find(p);
    if (it == refs_.end() || --it->second.count > 0) return nullptr;
    void* context = it->second.context;
    refs_.erase(it);
    return context;
  }

 private:
  struct Ref {
    int count;
    void* context;
  };
  std::mutex mu_;
  std::unordered_map<CudaDriver::DevicePtr, Ref> refs_;
};

lockstepResult_t resultOf(uint32_t code) {
  switch (code) {
    case ipc::kAborted:
      return lockstepAborted;
    case ipc::kSizeMismatch:
    case ipc::kTagMismatch:
      return lockstepMismatch;
    default:
      return lockstepTimeout;
  }
}

}  // namespace

struct IpcEngine::Posted {
  IpcEngine* engine;
  PinnedBlock* block;
  size_t recordOffset;  // where in the block the kernel's error record lands
  OpInfo op;            // the error's label, made only on failure, and the seq completed
  uint64_t token;       // the poster's, for the completion
};

bool IpcEngine::locallyAvailable(const Config& config) {
  if (!config.cudaIpc) return false;
  const CudaDriver* d = cudaDriver();
  if (!d || !d->hasIpc()) return false;
  void* ctx = nullptr;
  if (d->ctxGetCurrent(&ctx) != 0 || ctx == nullptr) return false;
  if (findIpcLauncher() != nullptr) return true;
  static std::once_flag once;
  std::call_once(once, [] {
    LS_WARN(-1, "cuda_ipc off: " << cudaLibraryName()
                                 << " (the kernels) was not found or does not load, so calls on device buffers "
                                    "take the staged path through host memory (" +
                                        launcherSearch() + ")");
  });
  return false;
}

IpcEngine::IpcEngine(const CudaDriver& driver, const Config& config, int rank, int nranks)
    : driver_(driver),
      launch_(findIpcLauncher()),
      rank_(rank),
      geometry_{nranks, config.ipcSlots, config.ipcSlotBytes, config.ipcBlocks},
      blockBudget_(std::max(1, kBlocksPerGpu / nranks)),
      timeout_(config.timeout),
      segments_(nranks, nullptr),
      counters_(nranks),
      pool_(driver, kCuMemHostAllocPortable | kCuMemHostAllocDeviceMap) {}  // kernels read programs in place

std::unique_ptr<IpcEngine> IpcEngine::connect(const Config& config, Bootstrap& bootstrap,
                                              const std::vector<PeerInfo>& peers, int rank) {
  const int n = bootstrap.size();
  const CudaDriver* d = cudaDriver();
  std::unique_ptr<IpcEngine> e;
  SegmentRecord mine{};
  std::string why;
  try {
    if (!d || !d->hasIpc()) throw Error(lockstepSystemError, "no CUDA driver with IPC in this process");
    e.reset(new IpcEngine(*d, config, rank, n));
    for (int r = 0; r < n; ++r) e->names_.push_back(peers[r].describe());
    d->check(d->ctxGetCurrent(&e->context_), "cuCtxGetCurrent");
    d->check(d->memAlloc(&e->segment_, e->geometry_.bytes()), "cuMemAlloc (cuda_ipc segment)");
    LocalSegments::get().add(e->segment_, e->context_);
    // Zeroed, and finished before any peer can see the handle: on a stream of its own, waited
    // for (a synchronous cuMemsetD8 may still run, and cuCtxSynchronize would wait for other
    // communicators' kernels, which may be waiting for this thread).
    CudaDriver::Stream zeroing = nullptr;
    d->check(d->streamCreate(&zeroing, kCuStreamNonBlocking), "cuStreamCreate");
    const int set = d->memsetD8Async(e->segment_, 0, e->geometry_.bytes(), zeroing);
    const int synced = set == 0 ? d->streamSynchronize(zeroing) : set;
    d->streamDestroy(zeroing);
    d->check(synced, "cuMemsetD8Async (cuda_ipc segment)");
    d->check(d->ipcGetMemHandle(&mine.handle, e->segment_), "cuIpcGetMemHandle");
    void* abortHost = nullptr;
    d->check(d->memHostAlloc(&abortHost, 64, kCuMemHostAllocPortable | kCuMemHostAllocDeviceMap),
             "cuMemHostAlloc (cuda_ipc abort flag)");
    e->abortHost_ = static_cast<uint32_t*>(abortHost);
    *e->abortHost_ = 0;
    d->check(d->memHostGetDevicePointer(&e->abortDevice_, abortHost, 0), "cuMemHostGetDevicePointer");
    mine.ok = 1;
  } catch (const std::exception& err) {  // every rank must still reach the exchange below
    why = err.what();
  }
  mine.slots = config.ipcSlots;
  mine.slotBytes = config.ipcSlotBytes;
  mine.blocks = config.ipcBlocks;
  mine.pid = static_cast<int64_t>(::getpid());
  mine.processToken = peers[rank].processToken;
  mine.pointer = e ? e->segment_ : 0;
  mine.context = e ? reinterpret_cast<uintptr_t>(e->context_) : 0;
  std::vector<SegmentRecord> all(n);
  all[rank] = mine;
  bootstrap.allGather(all.data(), sizeof(SegmentRecord));
  bool usable = true;
  for (const SegmentRecord& r : all) {
    usable = usable && r.ok == 1 && r.slots == mine.slots && r.slotBytes == mine.slotBytes && r.blocks == mine.blocks;
  }
  // Every rank now sees the same table: all map, or none does.
  if (usable) {
    try {
      for (int r = 0; r < n; ++r) {
        if (all[r].processToken == mine.processToken) {
          // A process cannot open its own handles: its ranks use the pointer itself, which a rank
          // on another GPU (another context) reaches once peer access is on.
          if (all[r].context != mine.context) {
            if (!d->ctxEnablePeerAccess) throw Error(lockstepSystemError, "no cuCtxEnablePeerAccess in this driver");
            const int rc = d->ctxEnablePeerAccess(reinterpret_cast<void*>(static_cast<uintptr_t>(all[r].context)), 0);
            if (rc != kCuErrorPeerAccessAlreadyEnabled) {
              const std::string what = "cuCtxEnablePeerAccess (the GPU of " + peers[r].describe() + ")";
              d->check(rc, what.c_str());
            }
          }
          if (r != rank) {
            if (!LocalSegments::get().retain(all[r].pointer)) {
              throw Error(lockstepSystemError, "the segment of " + peers[r].describe() + " is already freed");
            }
            e->borrowed_.push_back(all[r].pointer);
          }
          e->segments_[r] = reinterpret_cast<char*>(static_cast<uintptr_t>(all[r].pointer));
          continue;
        }
        CudaDriver::DevicePtr p = 0;
        const std::string what = "cuIpcOpenMemHandle (the segment of " + peers[r].describe() + ")";
        d->check(d->ipcOpenMemHandle(&p, all[r].handle, kCuIpcMemLazyEnablePeerAccess), what.c_str());
        e->opened_.push_back(p);
        e->segments_[r] = reinterpret_cast<char*>(static_cast<uintptr_t>(p));
      }
    } catch (const std::exception& err) {
      why = err.what();
      usable = false;
    }
  } else if (why.empty()) {
    why = "a peer could not export a segment, or the ranks' LOCKSTEP_CUDA_IPC_SLOTS / _SLOT_BYTES / _BLOCKS differ";
  }
  if (!allAgree(bootstrap, usable)) {
    LS_INFO(rank, "cuda_ipc off: " << (why.empty() ? "a peer could not map every segment" : why)
                                   << "; device buffers take the staged path");
    return nullptr;
  }
  LS_INFO(rank, "cuda_ipc on: " << n << " ranks, " << config.ipcSlots << " slots of " << config.ipcSlotBytes
                                << " bytes per link, " << config.ipcBlocks << " blocks per lane");
  return e;
}

bool IpcEngine::drain(std::chrono::milliseconds timeout, const std::atomic<bool>* aborted) {
  auto until = std::chrono::steady_clock::now() + timeout;
  bool abortSent = false;
  // Kernels whose completion will never be reported (orphaned_) are not waited for; they keep
  // the engine alive (false) all the same.
  while (inFlight_.load(std::memory_order_acquire) > orphaned_.load(std::memory_order_acquire) &&
         std::chrono::steady_clock::now() < until) {
    if (aborted && !abortSent && aborted->load()) {
      abort();
      abortSent = true;
      // Running kernels see the abort flag within milliseconds; a kernel on a stream stuck
      // before it never starts, and would hold the abort for the whole timeout.
      until = std::min(until, std::chrono::steady_clock::now() + std::chrono::milliseconds(500));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return inFlight_.load(std::memory_order_acquire) == 0;
}

IpcEngine::~IpcEngine() {
  // The communicator drained first (or leaked this engine): no kernel of ours is left to read
  // the segments or the pinned programs, and no host function of ours will run.
  // Frees belong to the allocating context (a destroy may come from another thread).
  {
    ScopedContext scope(driver_, context_);
    for (CudaDriver::DevicePtr p : opened_) driver_.ipcCloseMemHandle(p);
    if (abortHost_) driver_.memFreeHost(abortHost_);
    pool_.freeAll();
  }
  // This rank's segment and the ones borrowed from ranks of this process: the last user frees.
  if (segment_) borrowed_.push_back(segment_);
  for (CudaDriver::DevicePtr p : borrowed_) {
    if (void* context = LocalSegments::get().release(p)) {
      ScopedContext scope(driver_, context);
      driver_.memFree(p);
    }
  }
}

void IpcEngine::abort() {
  if (abortHost_) __atomic_store_n(abortHost_, 1u, __ATOMIC_RELEASE);
}

std::string IpcEngine::errorText() const {
  std::lock_guard<std::mutex> lock(errorMu_);
  return errorText_;
}

uint32_t IpcEngine::workersFor(const OpInfo& info) const {
  // Both ends of a link must split alike, so the count depends only on what every rank knows of
  // the op. Sends and receives (a group's lanes differ between its two ends) and all-to-all (a
  // lane per peer) get one block per lane; a collective shares this rank's share of the GPU
  // between as many lanes as a rank of its algorithm may have (four for the double binary tree,
  // whose ranks hold up to two per tree; two otherwise, for the fold's sit-out ranks).
  const auto kind = static_cast<OpKind>(info.fp.kind);
  if (kind == OpKind::kSend || kind == OpKind::kRecv || kind == OpKind::kAllToAll) return 1;
  const int lanes = kind == OpKind::kAllReduce && info.fp.algorithm == static_cast<uint8_t>(Algorithm::kTree) ? 4 : 2;
  return static_cast<uint32_t>(std::clamp(blockBudget_ / lanes, 1, geometry_.workers));
}

bool IpcEngine::post(const Schedule& schedule, std::span<char* const> buffers, const OpInfo& info, void* stream,
                     uint64_t token) {
  std::lock_guard<std::mutex> lock(postMu_);
  ipc::LowerArgs a{};
  a.schedule = &schedule;
  a.buffers = buffers;
  a.dtype = info.dtype;
  a.op = info.op;
  a.rank = rank_;
  a.geometry = geometry_;
  a.segments = segments_;
  a.workers = workersFor(info);
  // Collectives carry the communicator's sequence number, so ranks that disagree about the
  // order are told apart; send/recv carry none (the two ends post different calls by design).
  const MessageTag tag = info.fp.tag();
  for (int i = 0; i < 3; ++i) a.tag[i] = tag.words[i];
  a.timeoutNs = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout_).count());
  char* own = segments_[rank_];
  a.state = geometry_.state(own);
  a.abortFlag = reinterpret_cast<const volatile uint32_t*>(static_cast<uintptr_t>(abortDevice_));
  a.error = &a.state->error;
  if (!ipc::lower(a, counters_, blob_)) return false;
  if (blob_.empty()) {  // nothing moves
    completedOp(token, info.fp.seq, lockstepSuccess);
    return true;
  }

  const size_t programBytes = blob_.size() * sizeof(uint64_t);
  const size_t recordOffset = (programBytes + 63) & ~size_t(63);
  auto fail = [&](const std::string& what) {
    // The peers enqueue their side with the numbers this call has taken: the communicator
    // cannot go on, refuses later calls with this error, and tells the group, whose kernels
    // would otherwise wait for this rank until the timeout.
    LS_WARN(rank_, what);
    {
      std::lock_guard<std::mutex> l(errorMu_);
      if (errorText_.empty()) errorText_ = what;
      error_.store(lockstepSystemError, std::memory_order_release);
    }
    std::lock_guard<std::mutex> l(sinkMu_);
    if (sink_) sink_(lockstepSystemError, rank_, what);
  };
  // A thread may drive several devices' communicators (a group over one thread, as in NCCL):
  // the kernel goes in the context the segments belong to.
  ScopedContext scope(driver_, context_);
  if (!scope.ok()) {
    fail(std::string(info.kind) + ": cuCtxPushCurrent failed for the cuda_ipc launch");
    throw Error(lockstepSystemError, errorText());
  }
  PinnedBlock* block = nullptr;
  try {
    block = pool_.acquire(recordOffset + sizeof(ipc::ErrorRecord));
    std::memcpy(block->data, blob_.data(), programBytes);
    CudaDriver::DevicePtr deviceProgram = 0;
    driver_.check(driver_.memHostGetDevicePointer(&deviceProgram, block->data, 0), "cuMemHostGetDevicePointer");
    const int launched =
        launch_(block->data, reinterpret_cast<const void*>(static_cast<uintptr_t>(deviceProgram)), stream);
    if (launched != 0) {
      throw Error(lockstepSystemError, std::string(info.kind) + ": the cuda_ipc kernel launch failed (cudaError " +
                                           std::to_string(launched) + ")");
    }
  } catch (const Error& err) {
    if (block) PinnedPool::release(block);  // nothing was enqueued that reads it
    fail(err.what());
    throw;
  }
  auto* posted = new Posted{this, block, recordOffset, info, token};
  inFlight_.fetch_add(1, std::memory_order_acq_rel);
  try {
    driver_.check(driver_.memcpyDtoHAsync(block->data + recordOffset, reinterpret_cast<uintptr_t>(a.error),
                                          sizeof(ipc::ErrorRecord), stream),
                  "cuMemcpyDtoHAsync (cuda_ipc error record)");
    driver_.check(driver_.launchHostFunc(stream, &IpcEngine::afterKernel, posted), "cuLaunchHostFunc");
  } catch (const Error& err) {
    // The kernel is queued: its pinned program, the abort flag and the segments must outlive it,
    // so the block is not returned and the kernel stays counted, as orphaned (nothing will
    // report its end): a destroy then keeps the engine instead of freeing what it reads.
    orphaned_.fetch_add(1, std::memory_order_acq_rel);
    delete posted;
    fail(err.what());
    throw;
  }
  return true;
}

void IpcEngine::afterKernel(void* p) {
  std::unique_ptr<Posted> posted(static_cast<Posted*>(p));
  ipc::ErrorRecord record;
  std::memcpy(&record, posted->block->data + posted->recordOffset, sizeof(record));
  if (record.code != ipc::kOk) posted->engine->report(record, posted->op.label());
  posted->engine->completedOp(posted->token, posted->op.fp.seq,
                              record.code == ipc::kOk ? lockstepSuccess : resultOf(record.code));
  PinnedPool::release(posted->block);
  posted->engine->inFlight_.fetch_sub(1, std::memory_order_acq_rel);
}

void IpcEngine::completedOp(uint64_t token, uint64_t seq, lockstepResult_t code) {
  std::lock_guard<std::mutex> lock(sinkMu_);
  if (completed_) completed_(token, seq, code);
}

void IpcEngine::report(const ipc::ErrorRecord& r, const std::string& label) {
  const std::string peer =
      r.peer >= 0 && r.peer < static_cast<int>(names_.size()) ? names_[r.peer] : std::string("a peer");
  const std::string within = " within " + std::to_string(timeout_.count()) + " ms";
  std::string text = label + " (cuda_ipc): ";
  switch (r.code) {
    case ipc::kAborted:
      text += "communicator aborted";
      break;
    case ipc::kRecvTimeout:
      text += "no message from " + peer + within + " (message " + std::to_string(r.want) +
              " on that link; that rank may itself be waiting for another)";
      break;
    case ipc::kCreditTimeout:
      text += peer + " did not release a slot (its message " + std::to_string(r.want) + " from this rank)" + within;
      break;
    case ipc::kSizeMismatch:
      text += peer + " sent " + std::to_string(r.got) + " bytes where " + std::to_string(r.want) +
              " were expected: the ranks called different collectives or counts";
      break;
    case ipc::kTagMismatch:
      text += peer + " is running a different operation (its fingerprint differs from this rank's)";
      break;
    case ipc::kOrderTimeout:
      text += "the communicator's previous cuda_ipc op did not finish" + within +
              " (was it issued on a stream that never ran?)";
      break;
    default:
      text += "the blocks of lane " + std::to_string(r.lane) + " did not all run" + within +
              " (too few free SMs for the ranks sharing this GPU? lower LOCKSTEP_CUDA_IPC_BLOCKS)";
      break;
  }
  const lockstepResult_t code = resultOf(r.code);
  {
    lockstepResult_t expected = lockstepSuccess;
    std::lock_guard<std::mutex> lock(errorMu_);
    if (!error_.compare_exchange_strong(expected, code)) return;
    errorText_ = text;
  }
  LS_WARN(rank_, text);
  const bool namesPeer = r.code == ipc::kRecvTimeout || r.code == ipc::kCreditTimeout || r.code == ipc::kSizeMismatch ||
                         r.code == ipc::kTagMismatch;
  std::lock_guard<std::mutex> lock(sinkMu_);
  if (code != lockstepAborted && sink_) sink_(code, namesPeer ? r.peer : -1, text);
}

}  // namespace lockstep
