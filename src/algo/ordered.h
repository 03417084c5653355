// Rank-ordered reductions for deterministic mode (LOCKSTEP_DETERMINISTIC=1): every element is
// reduced on exactly one rank as x[0] (op) x[1] (op) ... (op) x[N-1], in that order, whatever
// the message size, slice size or algorithm family; the result is then copied to whoever needs
// it. The bits depend only on the inputs and N.
#pragma once

#include "src/algo/schedule.h"

namespace lockstep {

// Every rank sends chunk p of its input to rank p; each rank combines its chunk in rank order;
// a ring all-gather distributes the chunks. Moves the same bytes as the ring.
void orderedAllReduce(int rank, int nranks, size_t count, Schedule* out);
// The reduce-scatter half on its own: block p of every rank's input to rank p.
void orderedReduceScatter(int rank, int nranks, size_t recvcount, Schedule* out);
// Every rank sends its input to the root, which combines in rank order.
void orderedReduce(int rank, int nranks, int root, size_t count, Schedule* out);

}  // namespace lockstep
