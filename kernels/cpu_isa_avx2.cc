// The kernel loops built for avx2 (compile flags in CMakeLists.txt).
#include "kernels/cpu_loops.h"

namespace lockstep {

const KernelTable& kernelTableAvx2() {
  static const KernelTable table = buildKernelTable();
  return table;
}

}  // namespace lockstep
