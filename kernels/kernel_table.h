// The CPU kernels of one instruction set: every (dtype, op) loop, compiled once per ISA level and
// picked at run time (kernels/cpu_isa_*.cc build the same loops with different -m flags).
#pragma once

#include "kernels/cpu_reduce.h"
#include "lockstep/lockstep.h"

namespace lockstep {

enum class CpuIsa { kBaseline, kAvx2, kAvx512, kCount };

const char* cpuIsaName(CpuIsa isa);

struct KernelTable {
  ReduceFn reduce[lockstepNumTypes][4];  // sum (also avg), prod, max, min
  PremulSumFn premulSum[lockstepNumTypes];
  ScaleFn scale[lockstepNumTypes];
  DivideFn divide[lockstepNumTypes];
  CopyFn streamCopy;  // memcpy with non-temporal stores, for large outputs nobody reads soon
};

// The table built for `isa`, or nullptr when this build or this CPU lacks it.
const KernelTable* kernelTable(CpuIsa isa);
// The best table this CPU runs, chosen once.
const KernelTable& activeKernels();
CpuIsa activeIsa();

// One per ISA translation unit.
const KernelTable& kernelTableBaseline();
const KernelTable& kernelTableAvx2();
const KernelTable& kernelTableAvx512();

}  // namespace lockstep
