// Launching a Program's kernel (ipc_kernel.cu, in liblockstep_cuda).
#pragma once

#include "transport/cuda_ipc/ipc_program.h"

namespace lockstep {
namespace ipc {

// Enqueues the kernel on `stream` (a cudaStream_t): lanes x workers blocks reading the program
// at `deviceProgram` (its host-mapped address); `hostProgram` is the same bytes as the host sees
// them, for the launch geometry. Returns the launch's cudaError_t.
int launchProgram(const ProgramHeader* hostProgram, const ProgramHeader* deviceProgram, void* stream);

}  // namespace ipc
}  // namespace lockstep

// The C entry point the host library finds with dlsym (the same as launchProgram).
extern "C" int lockstepCudaIpcLaunch(const void* hostProgram, const void* deviceProgram, void* stream);
using LockstepCudaIpcLaunchFn = int (*)(const void* hostProgram, const void* deviceProgram, void* stream);
