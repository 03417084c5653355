#pragma once

#include "src/algo/schedule.h"

namespace lockstep {

// Appends this rank's ring all-reduce to `out`: 2(N-1) communication steps (see ring.cc).
void ringAllReduce(int rank, int nranks, size_t count, Schedule* out);

}  // namespace lockstep
