// The cuda_ipc interpreter: what one worker of one lane does with a Program (ipc_program.h).
// Compiled twice from this one text: into the kernel (a worker is a thread block,
// ipc_kernel.cu) and into host code (a worker is a thread, ipc_host_runner.h), where the tests
// run it over ordinary memory. The two differ only in their policies:
//
//   Sync: leader() (the thread that polls and publishes), load (acquire) / store (release) /
//         add of 64-bit words, fence(), sync() (the worker's threads meet), broadcast(bool)
//         (the leader's answer to every thread of the worker), fetch(code, k, end) (instruction k,
//         from wherever the worker keeps its copy), nowNs(), pause(), aborted(flag), failed() and
//         fail(record) on the program's ErrorRecord (first failure wins).
//   Math: copy, reduce, premul, scale, divide over element ranges (the element functors of
//         kernels/functors.h, on either side), and sync() between dependent passes.
//
// The workers of a lane split every slice by elements, and each sends, receives and releases its
// own part with its own header and tail line: a worker waits only for the same worker of the
// peer, never for the others of its lane, except at a phase start (a counter in the segment).
// Both ends of a link split alike (same elements, same worker count), and a step that reads an
// earlier step's results reads the same ranges (the executors' slicing rule), so each worker
// only ever reads what it wrote itself. Every wait is bounded by the program's timeout and
// watches the host-mapped abort flag.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/float_types.h"  // LS_HD
#include "transport/cuda_ipc/ipc_program.h"

namespace lockstep {
namespace ipc {

// Spins between checks of the abort flag, the error record and the clock.
constexpr uint32_t kCheckEvery = 256;

template <typename S>
LS_HD void failWith(S& s, const ProgramHeader& h, uint32_t code, int peer, uint32_t lane, uint32_t instr, uint64_t want,
                    uint64_t got) {
  ErrorRecord r{code, peer, lane, instr, want, got};
  s.fail(h.error, r);
}

// Waits until *word >= target (the leader polls, every thread gets the answer). On timeout,
// records `onTimeout` naming `peer`.
template <typename S>
LS_HD bool waitGeq(S& s, const ProgramHeader& h, const uint64_t* word, uint64_t target, uint32_t onTimeout, int peer,
                   uint32_t lane, uint32_t instr) {
  bool ok = true;
  if (s.leader() && s.load(word) < target) {
    const uint64_t start = s.nowNs();
    for (uint32_t spins = 1;; ++spins) {
      if (s.load(word) >= target) break;
      if (spins % kCheckEvery == 0) {
        if (s.aborted(h.abortFlag)) {
          failWith(s, h, kAborted, peer, lane, instr, target, s.load(word));
          ok = false;
          break;
        }
        if (s.failed(h.error)) {  // another worker or lane of this rank failed first
          ok = false;
          break;
        }
        if (s.nowNs() - start > h.timeoutNs) {
          failWith(s, h, onTimeout, peer, lane, instr, target, s.load(word));
          ok = false;
          break;
        }
      }
      s.pause(spins);
    }
  }
  return s.broadcast(ok);
}

// Every worker of the lane has reached phase start number `k` (0-based within the op's lane).
template <typename S>
LS_HD bool laneBarrier(S& s, const ProgramHeader& h, uint32_t lane, uint32_t k, uint32_t instr) {
  s.sync();
  // Counted even with one worker: the lane's count must stay what the lowering expects.
  uint64_t* counter = &h.state->barrier[lane * 8];
  if (s.leader()) {
    s.fence();
    s.add(counter, 1);
  }
  return waitGeq(s, h, counter, h.barrierBase[lane] + uint64_t(h.workers) * (k + 1), kBarrierTimeout, -1, lane, instr);
}

// The elements [*first, *first + *n) of a slice of `elems` that worker w of `workers` handles.
// The parts are cut from a full slice (`sliceElems`), not from this one, so a worker owns the same
// bytes of every slot whatever the size of the message in it: a short last slice then leaves
// the tail workers little or nothing, and never moves a boundary into bytes another worker of
// the peer may still be reading. 16-byte multiples keep vector loads aligned where the slot is.
LS_HD void workerPart(uint64_t sliceElems, uint64_t elems, uint32_t w, uint32_t workers, size_t elem, uint64_t* first,
                      uint64_t* n) {
  const uint64_t align = elem >= 16 ? 1 : 16 / elem;
  uint64_t chunk = (sliceElems + workers - 1) / workers;
  chunk = (chunk + align - 1) / align * align;
  *first = uint64_t(w) * chunk;
  *n = *first >= elems ? 0 : (elems - *first < chunk ? elems - *first : chunk);
}

// One primitive on elements [first, first + n) of a slice: src/exec/apply.h's applyPrim, over
// the message slot and the send slot instead of host links.
template <typename M>
LS_HD void applyInstr(const Instr& in, uint64_t first, uint64_t n, size_t elem, M& m) {
  const size_t off = first * elem, bytes = n * elem;
  const char* src = in.src ? in.src + off : nullptr;
  char* dst = in.dst ? in.dst + off : nullptr;
  const char* rin = (in.flags & kRecvs) ? in.inData + off : nullptr;
  char* out = (in.flags & kSends) ? in.outData + off : nullptr;
  const bool scaled = (in.flags & kScaled) != 0;
  auto combine = [&](char* to, const char* partial) {
    if (scaled && (in.flags & kLocalFirst)) {
      m.scale(to, src, n);  // my scaled input first, as applyPrim does
      m.sync();
      m.reduce(to, to, partial, n);
    } else if (scaled) {
      m.premul(to, partial, src, n);
    } else if (in.flags & kLocalFirst) {
      m.reduce(to, src, partial, n);
    } else {
      m.reduce(to, partial, src, n);
    }
  };
  switch (in.prim) {
    case 0:  // kSend
      if (scaled)
        m.scale(out, src, n);
      else
        m.copy(out, src, bytes);
      break;
    case 1:  // kRecv
      m.copy(dst, rin, bytes);
      break;
    case 2:  // kRecvReduceSend
      combine(out, rin);
      break;
    case 3:  // kRecvReduceCopy
    case 4:  // kRecvReduceCopySend
      combine(dst, rin);
      if (in.flags & kDivide) {
        m.sync();
        m.divide(dst, n);
      }
      if (out) {
        m.sync();  // another thread of the worker may have written the dst element it copies
        m.copy(out, dst, bytes);
      }
      break;
    case 5:  // kRecvCopySend
      m.copy(out, rin, bytes);
      m.copy(dst, rin, bytes);
      break;
    case 6:  // kCopy
      if (scaled)
        m.scale(dst, src, n);
      else if (dst != src)
        m.copy(dst, src, bytes);
      if (in.flags & kDivide) {
        m.sync();
        m.divide(dst, n);
      }
      break;
    case 7:  // kLocalReduce
      combine(dst, dst);
      if (in.flags & kDivide) {
        m.sync();
        m.divide(dst, n);
      }
      break;
  }
}

// Runs worker `w` of lane `lane` of `program`, whose header the caller may have copied to faster
// memory as `h`. Returns normally on failure too; the ErrorRecord says why.
template <typename S, typename M>
LS_HD void runWorker(const ProgramHeader* program, const ProgramHeader& h, uint32_t lane, uint32_t w, S& s, M& m) {
  // cuda_ipc ops of one communicator run one after another even when issued on different streams:
  // the counters of this op continue from where the previous one left them.
  if (!waitGeq(s, h, &h.state->opsDone, h.opIndex, kOrderTimeout, -1, lane, 0)) return;
  const uint32_t* lanes = laneTable(program);
  const Instr* code = instructions(program);
  const size_t elem = h.elemBytes;
  uint32_t phase = 0;
  const uint32_t end = lanes[lane + 1];
  for (uint32_t k = lanes[lane]; k < end; ++k) {
    const Instr& in = s.fetch(code, k, end);
    const uint32_t at = k - lanes[lane];
    if (in.flags & kDrain) {
      for (uint32_t t = 0; w == 0 && t < h.maxWorkers; ++t) {
        if (!waitGeq(s, h, in.outTail + t * kTailWords, in.outCredit, kCreditTimeout, in.sendPeer, lane, at)) return;
      }
      continue;
    }
    if ((in.flags & kPhase) && !laneBarrier(s, h, lane, phase++, at)) return;
    uint64_t first, n;
    workerPart(h.sliceElems, in.elems, w, h.workers, elem, &first, &n);
    if (in.flags & kRecvs) {
      const SlotHeader* header = in.inHeader + w;
      if (!waitGeq(s, h, &header->seq, in.inSeq, kRecvTimeout, in.recvPeer, lane, at)) return;
      bool ok = true;
      if (s.leader()) {
        const uint64_t bytes = s.load(&header->bytes);
        if (bytes != n * elem) {
          failWith(s, h, kSizeMismatch, in.recvPeer, lane, at, n * elem, bytes);
          ok = false;
        } else {
          for (int i = 0; i < 3 && ok; ++i) {
            const uint64_t got = s.load(&header->tag[i]);
            if (got != h.tag[i]) {
              failWith(s, h, kTagMismatch, in.recvPeer, lane, at, h.tag[i], got);
              ok = false;
            }
          }
        }
      }
      if (!s.broadcast(ok)) return;
    }
    if ((in.flags & kSends) && in.outCredit != 0) {
      // This worker's own tail line, or (a slot an earlier op filled) every line.
      const uint32_t from = (in.flags & kCreditAll) ? 0 : w, to = (in.flags & kCreditAll) ? h.maxWorkers : w + 1;
      for (uint32_t t = from; t < to; ++t) {
        if (!waitGeq(s, h, in.outTail + t * kTailWords, in.outCredit, kCreditTimeout, in.sendPeer, lane, at)) return;
      }
    }
    if (n != 0) applyInstr(in, first, n, elem, m);
    s.sync();  // every thread of the worker has written (and read) its elements
    if (s.leader()) {
      if (in.flags & kSends) {
        SlotHeader* header = in.outHeader + w;
        header->bytes = n * elem;
        for (int i = 0; i < 3; ++i) header->tag[i] = h.tag[i];
        s.fence();
        s.store(&header->seq, in.outSeq);
      }
      if (in.flags & kRecvs) {
        // Released. The lines of workers this op does not have are kept current too, so that a
        // later op with more workers finds every line at this message.
        for (uint32_t t = w; t < h.maxWorkers; t += h.workers) s.store(in.inTail + t * kTailWords, in.inSeq);
      }
    }
  }
  s.sync();
  if (s.leader()) {
    s.fence();
    const uint64_t before = s.add(&h.state->workersDone, 1);
    if (before + 1 == h.workersBase + uint64_t(h.workers) * h.lanes) {
      s.fence();  // the other workers' fenced adds came first: their writes go with this store
      s.store(&h.state->opsDone, h.opIndex + 1);
    }
  }
}

}  // namespace ipc
}  // namespace lockstep
