// Ring algorithms: all-reduce, and its two halves on their own (reduce-scatter, all-gather).
#pragma once

#include "src/algo/schedule.h"

namespace lockstep {

// count elements in, count out, reduced everywhere: 2(N-1) hops.
void ringAllReduce(int rank, int nranks, size_t count, Schedule* out);
// nranks*recvcount elements in; this rank's recvcount-element block out: N-1 hops.
void ringReduceScatter(int rank, int nranks, size_t recvcount, Schedule* out);
// sendcount elements in; nranks*sendcount out, block r from rank r: N-1 hops.
void ringAllGather(int rank, int nranks, size_t sendcount, Schedule* out);

}  // namespace lockstep
