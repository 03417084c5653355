#include "src/algo/simulator.h"

#include <algorithm>
#include <functional>
#include <queue>
#include <unordered_map>

#include "kernels/dtype.h"
#include "src/algo/slicing.h"
#include "src/core/errors.h"
#include "src/exec/apply.h"

namespace lockstep {

namespace {

struct Message {
  std::vector<char> data;  // empty when not moving data
  size_t bytes;
  double arrivalUs;
  int depth;  // messages on the longest chain that ends with this one
};

// Kept small: the one-shot algorithms at thousands of ranks use millions of links.
struct Link {
  std::vector<Message> queue;  // [head, end) in flight
  size_t head = 0;
  std::vector<double> consumedUs;  // ring: when the receiver took each of the last `slots` messages
  uint64_t consumed = 0;
  int64_t receiverLane = -1;  // the lane waiting for a message here
  int64_t senderLane = -1;    // the lane waiting for a credit here
  size_t inFlight() const { return queue.size() - head; }
  Message& front() { return queue[head]; }
  void pop(double nowUs, size_t slots) {
    if (consumedUs.empty()) consumedUs.assign(slots, 0);
    consumedUs[consumed++ % slots] = nowUs;
    if (++head == queue.size()) {
      queue.clear();
      head = 0;
    } else if (head >= 64 && 2 * head >= queue.size()) {
      queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(head));
      head = 0;
    }
  }
  // The next message may start once the one `slots` sends back has been taken (credit flow).
  double creditUs(size_t slots) const {
    const uint64_t index = consumed + inFlight();
    return index < slots ? 0 : consumedUs[(index - slots) % slots];
  }
};

// Send and receive ports per rank and link class: when each is next free.
struct Ports {
  std::vector<double> sendFree[2], recvFree[2];
  explicit Ports(int n) {
    for (int c = 0; c < 2; ++c) sendFree[c].assign(n, 0), recvFree[c].assign(n, 0);
  }
};

}  // namespace

SimStats simulate(const std::vector<Schedule>& schedules, const std::vector<std::vector<char*>>& buffers,
                  lockstepDataType_t dtype, lockstepRedOp_t op, const SimOptions& options) {
  const int n = static_cast<int>(schedules.size());
  const size_t elem = dataTypeSize(dtype);
  const size_t slots = static_cast<size_t>(options.slots);
  const NetworkModel* net = options.network;
  SliceKernels k{reduceKernels(dtype, op), elem, n};
  struct Lane {
    int rank;
    SliceWalker walker;
    double timeUs = 0;
    int depth = 0;
  };
  std::vector<Lane> lanes;
  for (int r = 0; r < n; ++r) {
    for (size_t i = 0; i < schedules[r].lanes(); ++i)
      lanes.push_back({r, SliceWalker(schedules[r].lane(i), options.sliceBytes / elem, schedules[r].order(i))});
  }
  // (src * n + dst) -> that link's state
  std::unordered_map<uint64_t, Link> wire;
  auto link = [&](int src, int dst) -> Link& {
    return wire[static_cast<uint64_t>(src) * static_cast<uint64_t>(n) + static_cast<uint64_t>(dst)];
  };
  Ports ports(net ? n : 0);
  SimStats stats;
  stats.messagesSent.assign(n, 0);
  stats.bytesSent.assign(n, 0);

  // Event order: of the lanes that can take their next step, the one that can start it earliest
  // goes first, so ports are granted in time order. A lane that cannot (no message yet, or no
  // credit) waits on its link until the other end acts. Lanes never share a directed link, so
  // each link end has at most one waiter. The earliest start counts the rank's send port, which
  // another lane of the rank may take after this one was queued: checked again when it comes
  // out, and queued again if the port now frees later. Without that a rank's second send, ready
  // at 0 but starting when its first had left, took a receiver's port before an earlier message
  // and held it up a whole transfer: the direct all-reduce cost 2N - 3 transfers for N - 1
  // (helper-100). Ties go to the lane ready first, so a port serves lanes in turn.
  struct Ready {
    double startUs, readyUs;
    size_t lane;
    bool operator>(const Ready& o) const {
      return startUs != o.startUs ? startUs > o.startUs : readyUs != o.readyUs ? readyUs > o.readyUs : lane > o.lane;
    }
  };
  std::priority_queue<Ready, std::vector<Ready>, std::greater<>> ready;
  // When `lane`'s step, a send, can take its port (0 without a network model, or for a receive).
  auto sendPortFree = [&](const Lane& lane, const Step& s) {
    if (!net || !primSends(s.prim)) return 0.0;
    return ports.sendFree[net->sameNode(lane.rank, s.sendPeer) ? 0 : 1][lane.rank];
  };
  size_t remaining = 0;
  auto schedule = [&](size_t i) {
    Lane& lane = lanes[i];
    if (lane.walker.done()) return;
    const Step& s = lane.walker.step();
    double start = lane.timeUs;
    if (primRecvs(s.prim)) {
      Link& in = link(s.recvPeer, lane.rank);
      if (in.inFlight() == 0) return void(in.receiverLane = static_cast<int64_t>(i));
      start = std::max(start, in.front().arrivalUs);
    }
    if (primSends(s.prim)) {
      Link& out = link(lane.rank, s.sendPeer);
      if (out.inFlight() >= slots) return void(out.senderLane = static_cast<int64_t>(i));
      start = std::max(start, out.creditUs(slots));
    }
    ready.push({std::max(start, sendPortFree(lane, s)), start, i});
  };
  auto wake = [&](int64_t* waiter) {
    if (*waiter < 0) return;
    size_t i = static_cast<size_t>(*waiter);
    *waiter = -1;
    schedule(i);
  };
  for (size_t i = 0; i < lanes.size(); ++i) {
    remaining += !lanes[i].walker.done();
    schedule(i);
  }

  while (!ready.empty()) {
    const Ready top = ready.top();
    const size_t i = top.lane;
    ready.pop();
    if (const double port = sendPortFree(lanes[i], lanes[i].walker.step()); port > top.startUs) {
      ready.push({port, top.readyUs, i});
      continue;
    }
    Lane& lane = lanes[i];
    SliceWalker& w = lane.walker;
    const int r = lane.rank;
    const Step& s = w.step();
    const size_t bytes = w.count() * elem;
    Link* in = primRecvs(s.prim) ? &link(s.recvPeer, r) : nullptr;
    Link* out = primSends(s.prim) ? &link(r, s.sendPeer) : nullptr;
    if (in && in->front().bytes != bytes) {
      throw InternalError("simulator: rank " + std::to_string(r) + " expected " + std::to_string(bytes) +
                          " bytes from rank " + std::to_string(s.recvPeer) + ", got " +
                          std::to_string(in->front().bytes));
    }
    std::vector<char> data(out && options.moveData ? bytes : 0);
    if (options.moveData) {
      applyPrim(s, w.first(), w.count(), buffers[r].data(), in ? in->front().data.data() : nullptr,
                out ? data.data() : nullptr, k);
    }
    if (in) {
      lane.timeUs = std::max(lane.timeUs, in->front().arrivalUs);
      lane.depth = std::max(lane.depth, in->front().depth);
      in->pop(lane.timeUs, slots);
    }
    if (net && net->reduceGBps > 0 && (primReduces(s.prim) || s.prim == Prim::kCopy)) {
      lane.timeUs += static_cast<double>(bytes) / (net->reduceGBps * 1e3);
    }
    if (out) {
      Message m{std::move(data), bytes, 0, lane.depth + 1};
      if (net) {
        const int peer = s.sendPeer, cls = net->sameNode(r, peer) ? 0 : 1;
        const LinkCost& cost = cls == 0 ? net->intra : net->inter;
        const double xfer = static_cast<double>(bytes) / (cost.gbps * 1e3);
        double start = std::max({lane.timeUs, ports.sendFree[cls][r], out->creditUs(slots)});
        ports.sendFree[cls][r] = start + cost.gapUs + xfer;
        m.arrivalUs = std::max(start + cost.alphaUs + xfer, ports.recvFree[cls][peer] + xfer);
        ports.recvFree[cls][peer] = m.arrivalUs;
        lane.timeUs = start + cost.gapUs + xfer;
      }
      stats.latencySteps = std::max(stats.latencySteps, m.depth);
      out->queue.push_back(std::move(m));
      ++stats.messagesSent[r];
      stats.bytesSent[r] += bytes;
    }
    w.advance();
    if (w.done()) --remaining;
    // Whoever waited on this step's links may go on; then this lane's next step.
    if (in) wake(&in->senderLane);
    if (out) wake(&out->receiverLane);
    schedule(i);
  }
  if (remaining != 0) {
    std::string stuck;
    for (const Lane& lane : lanes) {
      if (lane.walker.done() || stuck.size() > 200) continue;
      stuck.append(" ").append(std::to_string(lane.rank)).append(":").append(primName(lane.walker.step().prim));
    }
    throw InternalError("simulator: deadlock with " + std::to_string(remaining) + " lanes blocked:" + stuck);
  }
  for (const auto& [key, l] : wire) {
    if (l.inFlight() != 0) {
      throw InternalError("simulator: " + std::to_string(l.inFlight()) + " messages from rank " +
                          std::to_string(key / n) + " to " + std::to_string(key % n) + " never received");
    }
  }
  for (const Lane& lane : lanes) stats.timeUs = std::max(stats.timeUs, lane.timeUs);
  return stats;
}

}  // namespace lockstep
