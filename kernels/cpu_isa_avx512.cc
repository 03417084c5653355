// The kernel loops built for avx512 (compile flags in CMakeLists.txt).
#include "kernels/cpu_loops.h"

namespace lockstep {

const KernelTable& kernelTableAvx512() {
  static const KernelTable table = buildKernelTable();
  return table;
}

}  // namespace lockstep
