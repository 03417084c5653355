// cuda_ipc: device collectives among the ranks of one host, run by kernels over each other's
// device memory. Every rank allocates one segment (transport/cuda_ipc/ipc_layout.h) and exports
// it with a CUDA IPC handle; the handles travel over the bootstrap and every rank maps every
// peer's segment (ranks in one process use the pointer itself: a process cannot open its own
// handle). A call is then lowered into a Program (ipc_lowering.h) and enqueued on the caller's
// stream as one kernel (ipc_kernel.cu, reached through liblockstep_cuda's lockstepCudaIpcLaunch)
// followed by a copy of the kernel's error record and a host function that reads it.
//
// Several ranks may share one GPU (NCCL refuses this): their kernels meet in device memory. All
// ranks of the communicator must be on one host and must pass device buffers for the same
// calls, as in NCCL. The communicator enters each op with the control plane when it enqueues the
// kernel, so a rank that passed host memory instead (the host path) is a mismatch, and a peer
// that left stops the kernels, both within the watchdog's beat; a rank that does not make the
// call at all leaves its peers waiting until the timeout, which then names it.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "src/algo/schedule.h"
#include "src/core/config.h"
#include "src/exec/cuda_driver.h"
#include "src/exec/host_executor.h"
#include "src/exec/pinned_pool.h"
#include "src/topo/peer_info.h"
#include "transport/cuda_ipc/ipc_lowering.h"

namespace lockstep {

class IpcEngine {
 public:
  // Whether this process can take part: config allows it, the loaded driver has the IPC entry
  // points, a context is current, and the kernel launcher is found (see findIpcLauncher).
  static bool locallyAvailable(const Config& config);
  // Collective over `bootstrap`, for communicators whose ranks all share one host and all said
  // locallyAvailable (PeerInfo::cudaIpc). Returns nullptr on every rank when any rank could not
  // allocate, export or map a segment (the reason is logged at INFO).
  static std::unique_ptr<IpcEngine> connect(const Config& config, Bootstrap& bootstrap,
                                            const std::vector<PeerInfo>& peers, int rank);
  ~IpcEngine();
  IpcEngine(const IpcEngine&) = delete;
  IpcEngine& operator=(const IpcEngine&) = delete;

  // Enqueues one planned op on `stream`, in the engine's context (pushed if the caller has
  // another current). False if cuda_ipc cannot run this schedule (more lanes than a segment has
  // barriers): nothing was enqueued. Throws (and fails the communicator, telling the group) if
  // the driver refuses an enqueue. `token` comes back with the op's completion.
  bool post(const Schedule& schedule, std::span<char* const> buffers, const OpInfo& info, void* stream,
            uint64_t token = 0);
  // Makes running kernels stop within microseconds of their next check (the abort flag).
  void abort();
  // Told of the first failure a kernel reports (not of aborts): the communicator passes it to the
  // control plane, so every rank's kernels stop and name the same culprit (-1: none known).
  // Runs on the CUDA driver's callback thread. Set before the first post.
  using FailureSink = std::function<void(lockstepResult_t code, int culprit, const std::string& text)>;
  void setFailureSink(FailureSink sink) {
    std::lock_guard<std::mutex> lock(sinkMu_);
    sink_ = std::move(sink);
  }
  // Told when an op's kernel has finished and been read back (or at once, for an op with
  // nothing to move here), whatever its outcome: the post's token, the op's fingerprint seq (for
  // the control plane's "completed") and its result. Runs on the CUDA driver's callback thread or
  // the posting one. Set before the first post.
  using CompletionSink = std::function<void(uint64_t token, uint64_t seq, lockstepResult_t code)>;
  void setCompletionSink(CompletionSink sink) {
    std::lock_guard<std::mutex> lock(sinkMu_);
    completed_ = std::move(sink);
  }
  // Waits (bounded by `timeout`) until every kernel this engine enqueued has finished and been
  // read back. False if some never did: then the engine must not be destroyed (its host
  // functions will still run), so the communicator leaks it.
  // `aborted` (optional): once it is set, the kernels still queued are aborted, so the wait ends
  // soon (an abort that comes while a destroy drains).
  bool drain(std::chrono::milliseconds timeout, const std::atomic<bool>* aborted = nullptr);
  // The first failure a kernel reported (lockstepSuccess if none), and its text.
  lockstepResult_t error() const { return error_.load(std::memory_order_acquire); }
  std::string errorText() const;

 private:
  IpcEngine(const CudaDriver& driver, const Config& config, int rank, int nranks);
  struct Posted;
  // Thread blocks per lane for this op (the same on every rank).
  uint32_t workersFor(const OpInfo& info) const;
  // Blocks every rank's kernels may hold at once: all of them must be resident together (they
  // wait for each other), and a GPU holds at least two of the kernel's 512-thread blocks per SM
  // (__launch_bounds__(512, 2); 108 SMs on an A100, 132 on an H100) when every rank of the
  // communicator shares it.
  static constexpr int kBlocksPerGpu = 192;
  static void afterKernel(void* posted);
  void report(const ipc::ErrorRecord& record, const std::string& label);
  void completedOp(uint64_t token, uint64_t seq, lockstepResult_t code);

  const CudaDriver& driver_;
  int (*launch_)(const void*, const void*, void*) = nullptr;
  int rank_;
  ipc::Geometry geometry_;
  int blockBudget_;  // this rank's share of kBlocksPerGpu
  std::chrono::milliseconds timeout_;
  std::vector<std::string> names_;  // peers, for errors
  void* context_ = nullptr;         // the CUDA context the segment belongs to
  CudaDriver::DevicePtr segment_ = 0;
  std::vector<char*> segments_;                  // every rank's segment, as mapped here
  std::vector<CudaDriver::DevicePtr> opened_;    // peers' segments opened by handle (to close)
  std::vector<CudaDriver::DevicePtr> borrowed_;  // segments of ranks in this process (LocalSegments)
  uint32_t* abortHost_ = nullptr;                // pinned, host-mapped
  CudaDriver::DevicePtr abortDevice_ = 0;
  std::mutex postMu_;  // counters_ and the order of enqueues
  ipc::Counters counters_;
  std::vector<uint64_t> blob_;
  PinnedPool pool_;
  std::atomic<int> inFlight_{0};
  std::atomic<int> orphaned_{0};  // in flight, but their end will never be reported (post failed after the launch)
  std::atomic<lockstepResult_t> error_{lockstepSuccess};
  mutable std::mutex errorMu_;
  std::string errorText_;
  std::mutex sinkMu_;  // held while a sink runs or changes
  FailureSink sink_;
  CompletionSink completed_;
};

}  // namespace lockstep
