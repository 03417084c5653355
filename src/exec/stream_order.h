// Ops posted with a CUDA stream: ordered with that stream while the host executor moves their
// data. Device buffers are staged through pinned host memory, and the data crosses links as any
// host op's does, so this path works over every transport, across hosts too (a kernel path over
// cuda_ipc mappings is the faster one to come for ranks that share a host).
//
// On the user's stream, per Work:
//   copy device inputs to staging -> host fn "opened" -> wait until done >= gen
//   -> copy staged outputs to the device buffers -> host fn "released"
// On the communicator's executor, in issue order:
//   wait until opened (bounded by the op's deadline, and by abort) -> run the schedule on the
//   staging -> done = gen, whatever the outcome
// Writing done on failure, timeout and abort too means a stream never waits forever; the error
// reaches the user through lockstepCommGetAsyncError, as in NCCL. Works execute in gen order, so
// one done word per communicator is enough. Posting returns once the stream holds these
// commands: it never waits for the stream or for the peers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "src/core/clock.h"
#include "src/core/op.h"
#include "src/exec/cuda_driver.h"
#include "src/exec/pinned_pool.h"

namespace lockstep {

struct StreamTicket;  // one per Work: owned by the stream, freed by its "released" host fn

// The executor's side of one Work's protocol.
struct StreamGate {
  bool active = false;
  StreamTicket* ticket = nullptr;  // never touched once done is written: the stream frees it
  uint32_t gen = 0;
  // Set when the stream took the wait but not all that follows (the copy-out is lost): the Work
  // still runs, as its peers expect, and then fails with this.
  std::string failure;
};

// One op of a stream-ordered call, with pinned staging in place of its device buffers.
struct StagedOp {
  OpDesc op;
  const void* deviceIn = nullptr;  // copied to op.send before the op runs
  size_t inBytes = 0;
  void* deviceOut = nullptr;  // copied from op.recv after it
  size_t outBytes = 0;
  PinnedBlock* blocks[2] = {nullptr, nullptr};
};

// The bytes an op reads from sendbuff and writes to recvbuff on this rank.
size_t inputBytes(const OpDesc& op, int rank, int nranks);
size_t outputBytes(const OpDesc& op, int rank, int nranks);

class StreamOrder {
 public:
  // drainLimit bounds how long destruction waits for streams still holding staging; once
  // `aborted` is set it waits only briefly (a stream stuck before its op may never run).
  StreamOrder(const CudaDriver& driver, std::chrono::milliseconds drainLimit,
              std::shared_ptr<const std::atomic<bool>> aborted = nullptr);
  ~StreamOrder();
  StreamOrder(const StreamOrder&) = delete;
  StreamOrder& operator=(const StreamOrder&) = delete;

  // Device buffers (op.device) get staging blocks; host-accessible ones stay as they are (the
  // stream only orders them).
  StagedOp stage(const OpDesc& op, int rank, int nranks);
  // Gives back the blocks of ops that were staged but never ordered (a failed post).
  void unstage(StagedOp& op);
  // Enqueues the stream's side for one Work covering `ops` and returns the Work's gate. Calls
  // must be serialised with the enqueue of their Works, so that gens follow execution order.
  StreamGate order(void* stream, std::span<StagedOp> ops);

  // The executor's side.
  void awaitOpened(const StreamGate& g, Deadline deadline, const std::atomic<bool>& aborted,
                   const std::string& label) const;
  void done(StreamGate& g);

 private:
  const CudaDriver& driver_;
  std::chrono::milliseconds drainLimit_;
  std::shared_ptr<const std::atomic<bool>> aborted_;
  PinnedPool pool_;
  void* context_ = nullptr;                    // current at creation: the one frees run in
  std::atomic<uint32_t>* doneWord_ = nullptr;  // pinned and mapped, read by the streams
  CudaDriver::DevicePtr doneDevice_ = 0;
  uint32_t nextGen_ = 0;
  // Tickets the streams have not released yet; shared with them (see StreamTicket).
  std::shared_ptr<std::atomic<int64_t>> outstanding_ = std::make_shared<std::atomic<int64_t>>(0);
};

}  // namespace lockstep
