// CPU reduction and copy kernels, type-erased behind one function pointer per (dtype, op).
#pragma once

#include <cstddef>

#include "lockstep/lockstep.h"

namespace lockstep {

// dst[i] = a[i] (op) b[i] for i < n. dst may alias a or b exactly (in-place accumulation).
using ReduceFn = void (*)(void* dst, const void* a, const void* b, size_t n);
// data[i] /= divisor: how avg finishes a sum.
using DivideFn = void (*)(void* data, size_t n, int divisor);

// lockstepAvg reduces as lockstepSum; the caller finishes with divideFn.
ReduceFn reduceFn(lockstepDataType_t type, lockstepRedOp_t op);
DivideFn divideFn(lockstepDataType_t type);

}  // namespace lockstep
