// CPU reduction and copy kernels, type-erased behind one function pointer per (dtype, op). The
// loops are compiled for several instruction sets (kernels/kernel_table.h); the best one this CPU
// runs is picked once. Every ISA computes the same bits (tests/unit/kernels_test.cc checks it).
//
// avg, as in NCCL: floating types pre-multiply every rank's input by 1/nranks where it enters
// the reduction (PreMulSum), so an average of large values cannot overflow a narrow type;
// integers sum, then divide once, truncating (SumPostDiv).
#pragma once

#include <cstddef>

#include "lockstep/lockstep.h"

namespace lockstep {

// dst[i] = a[i] (op) b[i] for i < n. dst may alias a or b exactly (in-place accumulation).
using ReduceFn = void (*)(void* dst, const void* a, const void* b, size_t n);
// dst[i] = a[i] + round(b[i] * (1/nranks)): a is a partial result, b this rank's raw input. The
// scaled input is rounded to the type first, as ScaleFn rounds what a rank sends, so a rank that
// folds its own input here adds the very value its peers receive.
using PremulSumFn = void (*)(void* dst, const void* a, const void* b, size_t n, int nranks);
// dst[i] = src[i] * (1/nranks). dst may alias src.
using ScaleFn = void (*)(void* dst, const void* src, size_t n, int nranks);
// data[i] /= divisor.
using DivideFn = void (*)(void* data, size_t n, int divisor);
// memcpy of non-overlapping ranges.
using CopyFn = void (*)(void* dst, const void* src, size_t bytes);

// lockstepAvg reduces as lockstepSum here; avg's extra work comes from the functions below.
ReduceFn reduceFn(lockstepDataType_t type, lockstepRedOp_t op);
// For floating types (nullptr for integers).
PremulSumFn premulSumFn(lockstepDataType_t type);
ScaleFn scaleFn(lockstepDataType_t type);
// For integer types (nullptr for floating types).
DivideFn divideFn(lockstepDataType_t type);

// The kernels one reduction needs, by what its avg requires.
struct ReduceKernels {
  ReduceFn reduce;
  PremulSumFn premulSum;  // set for floating avg: reduce steps use it instead of reduce
  ScaleFn scale;          // set for floating avg: a step that forwards raw input scales it
  DivideFn divide;        // set for integer avg: the finishing step divides
};
ReduceKernels reduceKernels(lockstepDataType_t type, lockstepRedOp_t op);

// memcpy with non-temporal stores: for large outputs that nobody reads soon, it saves the read
// for ownership a normal store costs (a third of a copy's memory traffic).
void streamCopy(void* dst, const void* src, size_t bytes);

}  // namespace lockstep
