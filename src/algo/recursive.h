// Recursive all-reduce algorithms, for small and medium messages.
#pragma once

#include "src/algo/schedule.h"

namespace lockstep {

// Recursive doubling: log2(p) rounds, each exchanging the whole buffer with the rank at
// distance 1, 2, 4, ...; every rank reduces everything. Latency-optimal; for small messages.
void recursiveDoublingAllReduce(int rank, int nranks, size_t count, Schedule* out);
// Rabenseifner: recursive-halving reduce-scatter, then recursive-doubling all-gather. log2(p)
// rounds each way, moving 2(p-1)/p of the buffer: for medium messages.
void rabenseifnerAllReduce(int rank, int nranks, size_t count, Schedule* out);

}  // namespace lockstep
