// The kernel loops built for baseline (compile flags in CMakeLists.txt).
#include "kernels/cpu_loops.h"

namespace lockstep {

const KernelTable& kernelTableBaseline() {
  static const KernelTable table = buildKernelTable();
  return table;
}

}  // namespace lockstep
