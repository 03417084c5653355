// A broken library for the perf drivers' own check: linked with -Wl,--wrap, in-place all-gathers
// and broadcasts move no data (each rank only joins a barrier). `*_perf -c 1` must count wrong
// values in the in-place column. It once checked the in-place call on the buffer the
// out-of-place check had just filled with the right answer, and passed.
#include "kernels/dtype.h"
#include "lockstep/lockstep.h"

extern "C" {

lockstepResult_t __real_lockstepAllGather(const void* send, void* recv, size_t count, lockstepDataType_t t,
                                          lockstepComm_t comm, lockstepStream_t stream);
lockstepResult_t __real_lockstepBroadcast(const void* send, void* recv, size_t count, lockstepDataType_t t, int root,
                                          lockstepComm_t comm, lockstepStream_t stream);

lockstepResult_t __wrap_lockstepAllGather(const void* send, void* recv, size_t count, lockstepDataType_t t,
                                          lockstepComm_t comm, lockstepStream_t stream) {
  int rank = 0;
  lockstepCommUserRank(comm, &rank);
  const char* own = static_cast<const char*>(recv) + rank * count * lockstep::dataTypeSize(t);
  if (send == own) return lockstepBarrier(comm, stream);
  return __real_lockstepAllGather(send, recv, count, t, comm, stream);
}

lockstepResult_t __wrap_lockstepBroadcast(const void* send, void* recv, size_t count, lockstepDataType_t t, int root,
                                          lockstepComm_t comm, lockstepStream_t stream) {
  if (send == recv) return lockstepBarrier(comm, stream);
  return __real_lockstepBroadcast(send, recv, count, t, root, comm, stream);
}

}  // extern "C"
