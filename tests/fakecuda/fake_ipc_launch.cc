// A stand-in for liblockstep_cuda's lockstepCudaIpcLaunch, for binaries that run cuda_ipc against
// the stand-in driver: the "kernel" is a host function on the fake stream that runs the Program
// on host threads (transport/cuda_ipc/ipc_host_runner.h), so it starts when the stream reaches
// it and the stream goes on when every worker is done, as a kernel does. Defined in the
// executable and exported (ENABLE_EXPORTS), where Lockstep's dlsym(RTLD_DEFAULT) finds it.
#include <dlfcn.h>

#include <atomic>

#include "transport/cuda_ipc/ipc_host_runner.h"
#include "transport/cuda_ipc/ipc_kernel.h"

namespace {
std::atomic<unsigned long> gLaunches{0};

void runProgram(void* program) {
  lockstep::ipc::runOnHostThreads(static_cast<const lockstep::ipc::ProgramHeader*>(program));
}
}  // namespace

extern "C" __attribute__((visibility("default"))) int lockstepCudaIpcLaunch(const void*, const void* deviceProgram,
                                                                            void* stream) {
  using LaunchHostFunc = int (*)(void*, void (*)(void*), void*);
  static auto launchHostFunc = reinterpret_cast<LaunchHostFunc>(::dlsym(RTLD_DEFAULT, "cuLaunchHostFunc"));
  if (!launchHostFunc) return 1;
  gLaunches.fetch_add(1);
  return launchHostFunc(stream, &runProgram, const_cast<void*>(deviceProgram));
}

// How many "kernels" were launched: tests check that cuda_ipc, not the staged path, ran.
extern "C" __attribute__((visibility("default"))) unsigned long fakeIpcLaunches() { return gLaunches.load(); }
