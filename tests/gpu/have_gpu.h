// Whether this machine has a GPU the CUDA runtime can use; GPU tests skip, and say why, without.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <string>

namespace lockstep::testing {

inline bool haveGpu(std::string* why) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    *why = e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device";
    return false;
  }
  return true;
}

}  // namespace lockstep::testing

#define SKIP_WITHOUT_GPU()                                                                               \
  do {                                                                                                   \
    std::string why_;                                                                                    \
    if (!::lockstep::testing::haveGpu(&why_)) GTEST_SKIP() << "no GPU on this machine (" << why_ << ")"; \
  } while (0)
