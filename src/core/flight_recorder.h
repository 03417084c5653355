// The flight recorder: the last ops of a communicator (sequence number, kind, size, dtype,
// algorithm, peers, and when each was queued, started and ended), kept in a fixed ring so that
// recording costs a few stores and never allocates. It is dumped as Chrome trace JSON (opens in
// Perfetto or chrome://tracing) on a timeout, on an abort, and at destroy when LOCKSTEP_TRACE is
// set. One event per line, so tools/lockstep_trace can read it without a JSON library.
//
// A communicator keeps two: ops its host executor runs (one writer at a time, no lock) and ops
// enqueued as cuda_ipc kernels (written by the enqueuing thread and the driver's callback thread,
// under the communicator's lock). A dump writes both, as two tracks of the rank's process.
#pragma once

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <vector>

#include "src/algo/schedule.h"
#include "src/core/clock.h"
#include "src/core/config.h"
#include "src/exec/host_executor.h"

namespace lockstep {

class FlightRecorder {
 public:
  static constexpr size_t kCapacity = 1024;

  // `track` names the records' lane in the dump ("host", "cuda_ipc") and is written with
  // each op as its "path".
  explicit FlightRecorder(const char* track = "host");

  // One writer at a time, and dumps only while nobody writes: the owner serialises (see above).
  // Times are steady-clock readings the caller already took (the start doubles as the op's
  // deadline base): recording adds no clock call. started() returns the record's id for ended().
  uint64_t started(const OpInfo& op, const PeerList& peers, Clock::time_point queued, Clock::time_point start);
  // Ends the newest record.
  void ended(lockstepResult_t result, Clock::time_point end);
  // Ends record `id`, if the ring still holds it (kernels may finish after later ones started).
  void ended(uint64_t id, lockstepResult_t result, Clock::time_point end);

  // Writes the trace of `tracks` (each a lane of the rank's process, oldest op first); returns
  // false (and logs) if the file cannot be written. `comm` names the communicator (tracePath);
  // `job` tells one run of it from another (its rank 0's host and pid), so that lockstep-trace
  // refuses a leftover dump of an earlier job written to the same path.
  static bool dump(const std::string& path, int rank, const std::string& who, const std::string& comm,
                   const std::string& job, std::initializer_list<const FlightRecorder*> tracks);

 private:
  struct Record {
    uint64_t seq = 0;
    const char* kind = "";
    const char* algorithm = "";
    uint64_t count = 0;
    uint8_t dtype = 0, op = 0;
    int32_t root = -1;
    PeerList peers;
    Clock::time_point queued, start, end;  // end == time_point{}: still running
    int32_t result = 0;
  };
  // Dumps use microseconds on the system clock, shared by every process on the host (and roughly
  // across hosts), so the traces of several ranks line up: steady time + this offset.
  int64_t toWallUs(Clock::time_point t) const;
  // Writes this recorder's events as lane `tid`; returns how many.
  uint64_t write(FILE* f, int rank, int tid) const;
  // The whole dump into `fd`, which it closes.
  struct Written;
  static Written writeDump(int fd, int rank, const std::string& who, const std::string& comm, const std::string& job,
                           std::initializer_list<const FlightRecorder*> tracks);
  const char* track_;
  int64_t wallOffsetUs_;
  std::vector<Record> records_;
  uint64_t next_ = 0;  // ops recorded so far; the newest is records_[(next_ - 1) % kCapacity]
};

// Where a dump goes: LOCKSTEP_TRACE's path with %r replaced by the rank, %p by the pid and %c by
// `comm` (or ".rank<r>.json" appended, in place of a final ".json", when it has no %r); without LOCKSTEP_TRACE, a file
// in $TMPDIR or /tmp. `comm` names the communicator alike on all its ranks: empty for one made by init,
// "split<k>c<color>" for the k-th split of its parent (after the parent's own name, and a dot, for splits of splits).
// Without %c a non-empty name goes before the path's ".json" (or at its end): a split child's rank r writes apart from
// its parent's rank r, in another process or the same one.
std::string tracePath(const Config& config, int rank, const std::string& comm = "");

// `path`, or, when another communicator of this process (another `commKey`) has dumped there
// already, `path` with ".<commKey in hex>" before its ".json": two communicators made by init in
// one process have the same name and rank, and the second's dump replaced the first's.
std::string claimTracePath(const std::string& path, uint64_t commKey);

}  // namespace lockstep
