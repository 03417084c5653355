// Runs a Schedule on host memory over Links, slice by slice.
//
// Every step's range is cut into slices of at most one slot. The executor runs slice 0 of every
// step, then slice 1 of every step, and so on: a peer can start forwarding slice j while this
// rank already works on slice j+1, which pipelines the steps. Sender and receiver of a hop cut
// the same range the same way, so messages on a link always arrive in the order they are wanted.
//
// With at least two slots per link this order cannot deadlock a ring: every rank has at most one
// more message out than in, so N links of 2 slots can never all be full at once.
#pragma once

#include <string>
#include <vector>

#include "lockstep/lockstep.h"
#include "src/algo/schedule.h"
#include "src/core/clock.h"
#include "transport/transport.h"

namespace lockstep {

// Describes the op for kernels and for error messages.
struct OpInfo {
  const char* kind;  // "allreduce"
  uint64_t seq;      // the communicator's op sequence number
  lockstepDataType_t dtype;
  lockstepRedOp_t op;
  size_t count;
};

class HostExecutor {
 public:
  // links[r] reaches rank r (nullptr for this rank); names[r] describes rank r in errors.
  HostExecutor(int rank, std::vector<Link*> links, std::vector<std::string> names, size_t slotBytes,
               std::chrono::milliseconds timeout);

  // Returns when this rank's part is done and every byte it sent has left the process.
  void run(const Schedule& schedule, const void* input, void* output, const OpInfo& op);

 private:
  struct Ctx;
  void runSlice(const Step& step, size_t first, size_t n, Ctx& ctx);
  // Waits until the needed message and/or send slot are available.
  void waitFor(const Step& step, Message* in, size_t inBytes, void** slot, Ctx& ctx);
  void flush(Ctx& ctx);
  void progressAll();
  [[noreturn]] void timeout(const Ctx& ctx, const std::string& waitingFor);

  int rank_;
  int nranks_;
  std::vector<Link*> links_;
  std::vector<Link*> active_;  // non-null links, for progress
  std::vector<std::string> names_;
  size_t slotBytes_;
  std::chrono::milliseconds timeout_;
};

}  // namespace lockstep
