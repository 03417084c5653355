// CUDA reduction and copy kernels for every dtype x op, type-erased like the CPU ones
// (kernels/cpu_reduce.h): the same element functors (kernels/functors.h, __host__ __device__), so
// the arithmetic and rounding are the CPU's, checked on the CPU by the kernels' unit tests.
//
// Every launcher enqueues on `stream` and returns the launch's cudaError_t; nothing blocks. The
// kernels are grid-stride loops; when every pointer has the same alignment modulo 16 the body
// moves 16-byte vectors (after a scalar head that reaches alignment), otherwise it goes element
// by element. Lengths need not be multiples of anything.
//
// This header only needs the CUDA runtime's types: code that includes it links lockstep_cuda.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "lockstep/lockstep.h"

namespace lockstep {
namespace cuda {

// dst[i] = a[i] (op) b[i]; avg reduces as sum (its scaling is premulSum / scale / divide, as on
// the CPU). dst may alias a or b exactly.
cudaError_t reduce(lockstepDataType_t type, lockstepRedOp_t op, void* dst, const void* a, const void* b, size_t n,
                   cudaStream_t stream);
// dst[i] = a[i] + b[i] * (1/nranks), floating types only.
cudaError_t premulSum(lockstepDataType_t type, void* dst, const void* a, const void* b, size_t n, int nranks,
                      cudaStream_t stream);
// dst[i] = src[i] * (1/nranks), floating types only.
cudaError_t scale(lockstepDataType_t type, void* dst, const void* src, size_t n, int nranks, cudaStream_t stream);
// data[i] /= divisor, integer types only.
cudaError_t divide(lockstepDataType_t type, void* data, size_t n, int divisor, cudaStream_t stream);
// A device-side copy with the same vector body (for staging buffers the copy engines cannot see).
cudaError_t copy(void* dst, const void* src, size_t bytes, cudaStream_t stream);

// Whether the (type, op) pair has a kernel: every valid pair for reduce; floating types for
// premulSum/scale; integers for divide. Launchers return cudaErrorInvalidValue otherwise.
bool hasPremul(lockstepDataType_t type);

}  // namespace cuda
}  // namespace lockstep
