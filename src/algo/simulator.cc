#include "src/algo/simulator.h"

#include <deque>
#include <map>
#include <memory>

#include "kernels/dtype.h"
#include "src/algo/slicing.h"
#include "src/core/errors.h"
#include "src/exec/apply.h"

namespace lockstep {

SimStats simulate(const std::vector<Schedule>& schedules, const std::vector<const void*>& inputs,
                  const std::vector<void*>& outputs, lockstepDataType_t dtype, lockstepRedOp_t op, size_t sliceBytes,
                  int slots) {
  const int n = static_cast<int>(schedules.size());
  const size_t elem = dataTypeSize(dtype);
  SliceKernels k{reduceFn(dtype, op), op == lockstepAvg ? divideFn(dtype) : nullptr, elem, n};
  std::vector<std::unique_ptr<SliceWalker>> walkers;
  for (const auto& s : schedules) walkers.push_back(std::make_unique<SliceWalker>(s, sliceBytes / elem));
  std::map<std::pair<int, int>, std::deque<std::vector<char>>> wire;  // (src, dst) -> messages in flight
  SimStats stats;
  stats.messagesSent.assign(n, 0);
  stats.bytesSent.assign(n, 0);

  for (int remaining = n;;) {
    bool progress = false;
    remaining = 0;
    ++stats.rounds;
    for (int r = 0; r < n; ++r) {
      SliceWalker& w = *walkers[r];
      // Run this rank until it blocks: like a real rank, it does not wait for the others' turn.
      while (!w.done()) {
        const Step& s = w.step();
        const size_t bytes = w.count() * elem;
        std::deque<std::vector<char>>* inq = primRecvs(s.prim) ? &wire[{s.recvPeer, r}] : nullptr;
        std::deque<std::vector<char>>* outq = primSends(s.prim) ? &wire[{r, s.sendPeer}] : nullptr;
        if ((inq && inq->empty()) || (outq && outq->size() >= static_cast<size_t>(slots))) break;
        if (inq && inq->front().size() != bytes) {
          throw InternalError("simulator: rank " + std::to_string(r) + " expected " + std::to_string(bytes) +
                              " bytes from rank " + std::to_string(s.recvPeer) + ", got " +
                              std::to_string(inq->front().size()));
        }
        std::vector<char> out(outq ? bytes : 0);
        const char* in = static_cast<const char*>(inputs[r]);
        char* o = static_cast<char*>(outputs[r]);
        const char* src = (s.src == Buf::kInput ? in : o) + (s.srcOffset + w.first()) * elem;
        char* dst = (s.dst == Buf::kInput ? const_cast<char*>(in) : o) + (s.dstOffset + w.first()) * elem;
        applyPrim(s, inq ? inq->front().data() : nullptr, src, dst, outq ? out.data() : nullptr, w.count(), k);
        if (inq) inq->pop_front();
        if (outq) {
          outq->push_back(std::move(out));
          ++stats.messagesSent[r];
          stats.bytesSent[r] += bytes;
        }
        w.advance();
        progress = true;
      }
      remaining += !w.done();
    }
    if (remaining == 0) break;
    if (!progress) {
      std::string stuck;
      for (int r = 0; r < n && stuck.size() < 200; ++r) {
        if (!walkers[r]->done())
          stuck.append(" ").append(std::to_string(r)).append(":").append(primName(walkers[r]->step().prim));
      }
      throw InternalError("simulator: deadlock with " + std::to_string(remaining) + " ranks blocked:" + stuck);
    }
  }
  for (const auto& [key, q] : wire) {
    if (!q.empty()) {
      throw InternalError("simulator: " + std::to_string(q.size()) + " messages from rank " +
                          std::to_string(key.first) + " to " + std::to_string(key.second) + " never received");
    }
  }
  return stats;
}

}  // namespace lockstep
