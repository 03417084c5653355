// Runs a cuda_ipc Program on host threads over host memory: one thread per worker of every
// lane, each running the interpreter (ipc_interpreter.h) with host policies. How the tests
// check lowering, the flag protocol, abort and timeouts without a GPU, and how the stand-in
// driver of tests/fakecuda "launches" the kernel.
#pragma once

#include "transport/cuda_ipc/ipc_program.h"

namespace lockstep {
namespace ipc {

// Returns when every worker has finished or failed; h->error says which.
void runOnHostThreads(const ProgramHeader* h);

}  // namespace ipc
}  // namespace lockstep
