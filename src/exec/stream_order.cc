#include "src/exec/stream_order.h"

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

#include "kernels/dtype.h"
#include "src/core/errors.h"
#include "src/core/keep.h"
#include "src/core/logging.h"
#include "src/exec/backoff.h"
#include "transport/fifo.h"

namespace lockstep {

struct StreamTicket {
  // Shared with the StreamOrder, which may be gone by the time a stream that was stuck past a
  // destroy runs this ticket's host function (the blocks are then leaked, never freed).
  std::shared_ptr<std::atomic<int64_t>> outstanding;
  std::atomic<uint32_t> opened{0};
  std::vector<PinnedBlock*> blocks;

  // Host functions: they run on a CUDA thread, so they make no CUDA calls. The wake spares the
  // progress thread, asleep while the GPU was busy before the op, up to a sleep interval.
  static void onOpened(void* t) {
    auto* ticket = static_cast<StreamTicket*>(t);
    ticket->opened.store(1, std::memory_order_release);
    futexWakeAll(&ticket->opened);
  }
  static void onReleased(void* t) {
    auto* ticket = static_cast<StreamTicket*>(t);
    for (PinnedBlock* b : ticket->blocks) PinnedPool::release(b);
    const std::shared_ptr<std::atomic<int64_t>> outstanding = std::move(ticket->outstanding);
    delete ticket;
    outstanding->fetch_sub(1, std::memory_order_release);
  }
};

size_t inputBytes(const OpDesc& op, int rank, int nranks) {
  const size_t b = op.count * dataTypeSize(op.dtype), n = static_cast<size_t>(nranks);
  switch (op.kind) {
    case OpKind::kAllReduce:
    case OpKind::kAllGather:
    case OpKind::kReduce:
    case OpKind::kSend:
      return b;
    case OpKind::kReduceScatter:
    case OpKind::kAllToAll:
      return b * n;
    case OpKind::kBroadcast:
      return rank == op.root ? b : 0;
    case OpKind::kRecv:
    case OpKind::kBarrier:
    case OpKind::kSplit:
      return 0;
  }
  return 0;
}

size_t outputBytes(const OpDesc& op, int rank, int nranks) {
  const size_t b = op.count * dataTypeSize(op.dtype), n = static_cast<size_t>(nranks);
  switch (op.kind) {
    case OpKind::kAllReduce:
    case OpKind::kReduceScatter:
    case OpKind::kBroadcast:
    case OpKind::kRecv:
      return b;
    case OpKind::kAllGather:
    case OpKind::kAllToAll:
      return b * n;
    case OpKind::kReduce:
      return rank == op.root ? b : 0;
    case OpKind::kSend:
    case OpKind::kBarrier:
    case OpKind::kSplit:
      return 0;
  }
  return 0;
}

StreamOrder::StreamOrder(const CudaDriver& driver, std::chrono::milliseconds drainLimit,
                         std::shared_ptr<const std::atomic<bool>> aborted)
    : driver_(driver), drainLimit_(drainLimit), aborted_(std::move(aborted)), pool_(driver) {
  if (driver_.ctxGetCurrent) driver_.ctxGetCurrent(&context_);
  void* p = nullptr;
  // Mapped, so that a stream can wait on it; portable, so that any context's streams can.
  driver_.check(driver_.memHostAlloc(&p, 64, kCuMemHostAllocPortable | kCuMemHostAllocDeviceMap),
                "cuMemHostAlloc (done word)");
  doneWord_ = new (p) std::atomic<uint32_t>(0);
  try {
    driver_.check(driver_.memHostGetDevicePointer(&doneDevice_, p, 0), "cuMemHostGetDevicePointer (done word)");
  } catch (...) {
    driver_.memFreeHost(p);
    throw;
  }
}

StreamOrder::~StreamOrder() {
  // Every Work has written done by now (the executor has stopped), so each stream can run to
  // its "released" host function; wait for that before freeing what the streams read.
  // After an abort, streams that run get a moment: one stuck before its op (the reason to
  // abort, often) would otherwise hold the abort for the whole timeout.
  constexpr auto kAbortGrace = std::chrono::milliseconds(200);
  auto end = Clock::now() + drainLimit_;
  bool sawAbort = false;
  while (outstanding_->load(std::memory_order_acquire) > 0 && Clock::now() < end) {
    if (!sawAbort && aborted_ && aborted_->load()) {
      sawAbort = true;
      end = std::min(end, Clock::now() + kAbortGrace);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  if (outstanding_->load(std::memory_order_acquire) > 0) {
    // A stream that never ran (blocked on an event never recorded, say) may still read the
    // staging and the done word: keep them rather than let the GPU read freed memory.
    LS_WARN(-1, "communicator destroyed while " << outstanding_->load()
                                                << " stream-ordered op(s) were never reached by their CUDA streams; "
                                                   "their pinned staging is kept, not freed");
    pool_.leak();
    return;
  }
  // Destroy (or abort) may come from a thread that never made the context current.
  ScopedContext scope(driver_, context_);
  pool_.freeAll();
  driver_.memFreeHost(doneWord_);
}

StagedOp StreamOrder::stage(const OpDesc& op, int rank, int nranks) {
  StagedOp s;
  s.op = op;
  if (!op.device) return s;
  // Input and output get separate blocks even for in-place calls: the host schedule then runs
  // out of place, which every collective's in-place form is equivalent to.
  s.inBytes = inputBytes(op, rank, nranks);
  s.outBytes = outputBytes(op, rank, nranks);
  s.op.send = nullptr;
  s.op.recv = nullptr;
  try {
    if (s.inBytes) {
      s.blocks[0] = pool_.acquire(s.inBytes);
      s.deviceIn = op.send;
      s.op.send = s.blocks[0]->data;
    }
    if (s.outBytes) {
      s.blocks[1] = pool_.acquire(s.outBytes);
      s.deviceOut = op.recv;
      s.op.recv = s.blocks[1]->data;
    }
  } catch (...) {
    unstage(s);
    throw;
  }
  return s;
}

void StreamOrder::unstage(StagedOp& s) {
  for (PinnedBlock*& b : s.blocks) {
    if (b) PinnedPool::release(b);
    b = nullptr;
  }
}

StreamGate StreamOrder::order(void* stream, std::span<StagedOp> ops) {
  auto* ticket = new StreamTicket{outstanding_, {}, {}};
  for (StagedOp& s : ops) {
    for (PinnedBlock* b : s.blocks) {
      if (b) ticket->blocks.push_back(b);
    }
  }
  // Until the wait is enqueued nothing waits on the next gen, so a failure leaves no stream
  // stuck and the call fails without taking part. Staging that a copy was already enqueued for
  // stays in use (leaked), as that copy may still write it.
  bool enqueued = false;
  const uint32_t gen = nextGen_ + 1;
  try {
    for (const StagedOp& s : ops) {
      if (s.inBytes) {
        driver_.check(driver_.memcpyDtoHAsync(const_cast<void*>(s.op.send),
                                              reinterpret_cast<CudaDriver::DevicePtr>(s.deviceIn), s.inBytes, stream),
                      "cuMemcpyDtoHAsync (input to staging)");
        enqueued = true;
      }
    }
    driver_.check(driver_.launchHostFunc(stream, &StreamTicket::onOpened, ticket), "cuLaunchHostFunc");
    enqueued = true;
    driver_.check(driver_.streamWaitValue32(stream, doneDevice_, gen, kCuStreamWaitValueGeq), "cuStreamWaitValue32");
  } catch (...) {
    if (!enqueued) {
      for (StagedOp& s : ops) unstage(s);
      delete ticket;
    } else {
      keepForever(ticket);  // the stream may still run onOpened: never freed under it
    }
    throw;
  }
  nextGen_ = gen;
  outstanding_->fetch_add(1, std::memory_order_relaxed);
  StreamGate gate{true, ticket, gen, {}};
  // From here the Work must run (its peers expect it) and write done. A failure to enqueue the
  // rest only loses the copy-out: the gate carries it.
  try {
    for (const StagedOp& s : ops) {
      if (s.outBytes) {
        driver_.check(driver_.memcpyHtoDAsync(reinterpret_cast<CudaDriver::DevicePtr>(s.deviceOut), s.op.recv,
                                              s.outBytes, stream),
                      "cuMemcpyHtoDAsync (staging to output)");
      }
    }
    driver_.check(driver_.launchHostFunc(stream, &StreamTicket::onReleased, ticket), "cuLaunchHostFunc");
  } catch (const Error& e) {
    gate.failure = e.what();
    // Nothing will release this ticket, and the stream may still run its onOpened.
    outstanding_->fetch_sub(1, std::memory_order_relaxed);
    keepForever(ticket);
  }
  return gate;
}

void StreamOrder::awaitOpened(const StreamGate& g, Deadline deadline, const std::atomic<bool>& aborted,
                              const std::string& label) const {
  Backoff backoff;
  std::atomic<uint32_t>* opened = &g.ticket->opened;
  while (!opened->load(std::memory_order_acquire)) {
    backoff.pause([&](long ns) { futexWait(opened, 0, ns); });
    if (!backoff.sleeping()) continue;
    if (aborted.load(std::memory_order_relaxed)) {
      throw Aborted(label + ": communicator aborted while waiting for its CUDA stream to reach the op");
    }
    if (deadline.expired()) {
      throw Timeout(label +
                    ": this rank's CUDA stream did not reach the op before the timeout (is the stream waiting "
                    "on work queued after it, or on an event never recorded? Or is work queued before the op "
                    "running longer than LOCKSTEP_TIMEOUT, which counts the wait for the stream?)");
    }
  }
}

void StreamOrder::done(StreamGate& g) {
  g.ticket = nullptr;
  g.active = false;
  doneWord_->store(g.gen, std::memory_order_release);
}

}  // namespace lockstep
