// Which algorithm implements which collective, and building a rank's schedule with it.
#pragma once

#include "src/algo/collective.h"
#include "src/algo/schedule.h"

namespace lockstep {

bool implements(Algorithm a, OpKind kind);
// Appends this rank's schedule of `kind` built with `a` (which must implement it). count is
// NCCL's count argument; root is the root of broadcast/reduce.
void buildSchedule(Algorithm a, OpKind kind, int rank, int nranks, size_t count, int root, Schedule* out);

}  // namespace lockstep
