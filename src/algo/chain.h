// Rooted collectives as pipelined chains along the ring.
#pragma once

#include "src/algo/schedule.h"

namespace lockstep {

// The root's input reaches every rank's output.
void chainBroadcast(int rank, int nranks, int root, size_t count, Schedule* out);
// Every rank's input, reduced, reaches the root's output (other outputs are untouched).
void chainReduce(int rank, int nranks, int root, size_t count, Schedule* out);

}  // namespace lockstep
