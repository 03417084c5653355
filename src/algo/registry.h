// Which algorithm implements which collective, and building a rank's schedule with it.
#pragma once

#include "src/algo/collective.h"
#include "src/algo/schedule.h"

namespace lockstep {

bool implements(Algorithm a, OpKind kind);
// The most ranks the tuner picks it for (forcing it still works at any size): the one-shot
// all-reduce sends N-1 copies of everything and keeps N-1 messages in flight per rank.
int maxRanks(Algorithm a, OpKind kind);
// Appends this rank's schedule of `kind` built with `a` (which must implement it). count is
// NCCL's count argument; root is the root of broadcast/reduce.
void buildSchedule(Algorithm a, OpKind kind, int rank, int nranks, size_t count, int root, Schedule* out);

}  // namespace lockstep
