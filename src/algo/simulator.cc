#include "src/algo/simulator.h"

#include <deque>
#include <unordered_map>

#include "kernels/dtype.h"
#include "src/algo/slicing.h"
#include "src/core/errors.h"
#include "src/exec/apply.h"

namespace lockstep {

SimStats simulate(const std::vector<Schedule>& schedules, const std::vector<std::vector<char*>>& buffers,
                  lockstepDataType_t dtype, lockstepRedOp_t op, size_t sliceBytes, int slots) {
  const int n = static_cast<int>(schedules.size());
  const size_t elem = dataTypeSize(dtype);
  SliceKernels k{reduceKernels(dtype, op), elem, n};
  struct Lane {
    int rank;
    SliceWalker walker;
  };
  std::vector<Lane> lanes;
  for (int r = 0; r < n; ++r) {
    for (size_t i = 0; i < schedules[r].lanes(); ++i)
      lanes.push_back({r, SliceWalker(schedules[r].lane(i), sliceBytes / elem, schedules[r].order(i))});
  }
  // (src * n + dst) -> messages in flight on that link
  std::unordered_map<uint64_t, std::deque<std::vector<char>>> wire;
  auto link = [&](int src, int dst) -> std::deque<std::vector<char>>& {
    return wire[static_cast<uint64_t>(src) * static_cast<uint64_t>(n) + static_cast<uint64_t>(dst)];
  };
  SimStats stats;
  stats.messagesSent.assign(n, 0);
  stats.bytesSent.assign(n, 0);

  for (;;) {
    bool progress = false;
    size_t remaining = 0;
    ++stats.rounds;
    for (Lane& lane : lanes) {
      SliceWalker& w = lane.walker;
      const int r = lane.rank;
      // Run this lane until it blocks: like a real rank, it does not wait for the others' turn.
      while (!w.done()) {
        const Step& s = w.step();
        const size_t bytes = w.count() * elem;
        std::deque<std::vector<char>>* inq = primRecvs(s.prim) ? &link(s.recvPeer, r) : nullptr;
        std::deque<std::vector<char>>* outq = primSends(s.prim) ? &link(r, s.sendPeer) : nullptr;
        if ((inq && inq->empty()) || (outq && outq->size() >= static_cast<size_t>(slots))) break;
        if (inq && inq->front().size() != bytes) {
          throw InternalError("simulator: rank " + std::to_string(r) + " expected " + std::to_string(bytes) +
                              " bytes from rank " + std::to_string(s.recvPeer) + ", got " +
                              std::to_string(inq->front().size()));
        }
        std::vector<char> out(outq ? bytes : 0);
        applyPrim(s, w.first(), w.count(), buffers[r].data(), inq ? inq->front().data() : nullptr,
                  outq ? out.data() : nullptr, k);
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
      for (const Lane& lane : lanes) {
        if (lane.walker.done() || stuck.size() > 200) continue;
        stuck.append(" ").append(std::to_string(lane.rank)).append(":").append(primName(lane.walker.step().prim));
      }
      throw InternalError("simulator: deadlock with " + std::to_string(remaining) + " lanes blocked:" + stuck);
    }
  }
  for (const auto& [key, q] : wire) {
    if (!q.empty()) {
      throw InternalError("simulator: " + std::to_string(q.size()) + " messages from rank " + std::to_string(key / n) +
                          " to " + std::to_string(key % n) + " never received");
    }
  }
  return stats;
}

}  // namespace lockstep
