/*
 * A C program that knows only <lockstep/lockstep.h>: it all-reduces every datatype with every
 * reduction op, in place and out of place, and checks every element. Start it with lockstep-run:
 *
 *   cc allreduce_check.c $(pkg-config --cflags --libs lockstep) -lm -o allreduce_check
 *   lockstep-run -n 4 ./allreduce_check
 *
 * Inputs are small integers, so sums and products are exact in every type for up to 8 ranks.
 * avg follows NCCL: floating types scale each input by 1/nranks before summing; integers sum,
 * then divide once, truncating.
 */
#include <lockstep/lockstep.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT 4099

/* Indexed by the enums' names, not their order. */
static const char* typeNames[lockstepNumTypes] = {
    [lockstepInt8] = "int8",       [lockstepUint8] = "uint8",        [lockstepInt32] = "int32",
    [lockstepUint32] = "uint32",   [lockstepInt64] = "int64",        [lockstepUint64] = "uint64",
    [lockstepFloat16] = "float16", [lockstepBfloat16] = "bfloat16",  [lockstepFloat32] = "float32",
    [lockstepFloat64] = "float64", [lockstepFloat8e4m3] = "fp8e4m3", [lockstepFloat8e5m2] = "fp8e5m2"};
static const char* opNames[lockstepNumOps] = {[lockstepSum] = "sum",
                                              [lockstepProd] = "prod",
                                              [lockstepMax] = "max",
                                              [lockstepMin] = "min",
                                              [lockstepAvg] = "avg"};
static const size_t typeSizes[lockstepNumTypes] = {
    [lockstepInt8] = 1,    [lockstepUint8] = 1,   [lockstepInt32] = 4,      [lockstepUint32] = 4,
    [lockstepInt64] = 8,   [lockstepUint64] = 8,  [lockstepFloat16] = 2,    [lockstepBfloat16] = 2,
    [lockstepFloat32] = 4, [lockstepFloat64] = 8, [lockstepFloat8e4m3] = 1, [lockstepFloat8e5m2] = 1};

/* Round-to-nearest-even encoding of a (small, finite) value into a binary float format. */
static uint32_t encodeBinary(double v, int expBits, int manBits) {
  uint32_t sign = signbit(v) ? 1u << (expBits + manBits) : 0;
  double a = fabs(v);
  int bias = (1 << (expBits - 1)) - 1, e;
  if (a == 0) return sign;
  frexp(a, &e);
  e -= 1;             /* a = 1.m * 2^e */
  if (e < 1 - bias) { /* subnormal */
    return sign | (uint32_t)rint(a / ldexp(1.0, 1 - bias - manBits));
  }
  double q = rint(a / ldexp(1.0, e - manBits)); /* in [2^manBits, 2^(manBits+1)] */
  if (q == ldexp(1.0, manBits + 1)) q /= 2, e += 1;
  return sign | ((uint32_t)(e + bias) << manBits) | ((uint32_t)q - (1u << manBits));
}

static int isFloating(int t) {
  return t == lockstepFloat16 || t == lockstepBfloat16 || t == lockstepFloat32 || t == lockstepFloat64 ||
         t == lockstepFloat8e4m3 || t == lockstepFloat8e5m2;
}

/* Small integers. Floating avg scales each input by 1/nranks before summing (as NCCL does), so
 * its inputs are nranks times 0 or 1: every scaled term is then exactly 0 or 1. */
static double inputValue(int t, int op, int nranks, int rank, size_t i) {
  if (op == lockstepProd) return ((rank + i) % 4 == 0) ? 2 : 1;
  if (op == lockstepAvg && isFloating(t)) return (double)(nranks * (int)((rank + i) % 2));
  return (double)((rank + i) % 2);
}

/* Stores v as datatype t at p. */
static void store(int t, void* p, double v) {
  switch (t) {
    case lockstepInt8:
      *(int8_t*)p = (int8_t)v;
      break;
    case lockstepUint8:
      *(uint8_t*)p = (uint8_t)v;
      break;
    case lockstepInt32:
      *(int32_t*)p = (int32_t)v;
      break;
    case lockstepUint32:
      *(uint32_t*)p = (uint32_t)v;
      break;
    case lockstepInt64:
      *(int64_t*)p = (int64_t)v;
      break;
    case lockstepUint64:
      *(uint64_t*)p = (uint64_t)v;
      break;
    case lockstepFloat16:
      *(uint16_t*)p = (uint16_t)encodeBinary(v, 5, 10);
      break;
    case lockstepBfloat16:
      *(uint16_t*)p = (uint16_t)encodeBinary(v, 8, 7);
      break;
    case lockstepFloat32:
      *(float*)p = (float)v;
      break;
    case lockstepFloat64:
      *(double*)p = v;
      break;
    case lockstepFloat8e4m3:
      *(uint8_t*)p = (uint8_t)encodeBinary(v, 4, 3);
      break;
    case lockstepFloat8e5m2:
      *(uint8_t*)p = (uint8_t)encodeBinary(v, 5, 2);
      break;
  }
}

static double expected(int t, int op, int nranks, size_t i) {
  double acc = 0;
  for (int r = 0; r < nranks; ++r) {
    double v = inputValue(t, op, nranks, r, i);
    if (op == lockstepAvg && isFloating(t)) v /= nranks; /* exact by construction */
    if (r == 0)
      acc = v;
    else if (op == lockstepProd)
      acc *= v;
    else if (op == lockstepMax)
      acc = v > acc ? v : acc;
    else if (op == lockstepMin)
      acc = v < acc ? v : acc;
    else
      acc += v;
  }
  if (op == lockstepAvg && !isFloating(t)) return (double)((int64_t)acc / nranks); /* integers: truncate */
  return acc;
}

int main(void) {
  lockstepComm_t comm;
  int rank, nranks, wrong = 0;
  if (lockstepCommInitFromEnv(&comm) != lockstepSuccess) {
    fprintf(stderr, "init failed: %s\n", lockstepGetLastError(NULL));
    return 2;
  }
  lockstepCommUserRank(comm, &rank);
  lockstepCommCount(comm, &nranks);
  char* in = malloc(COUNT * 8);
  char* out = malloc(COUNT * 8);
  char* want = malloc(COUNT * 8);
  for (int t = 0; t < lockstepNumTypes; ++t) {
    for (int op = 0; op < lockstepNumOps; ++op) {
      size_t sz = typeSizes[t];
      for (size_t i = 0; i < COUNT; ++i) store(t, want + i * sz, expected(t, op, nranks, i));
      for (int inPlace = 0; inPlace < 2; ++inPlace) {
        for (size_t i = 0; i < COUNT; ++i) store(t, in + i * sz, inputValue(t, op, nranks, rank, i));
        void* dst = inPlace ? (void*)in : (void*)out;
        lockstepResult_t r = lockstepAllReduce(in, dst, COUNT, (lockstepDataType_t)t, (lockstepRedOp_t)op, comm, NULL);
        if (r != lockstepSuccess) {
          fprintf(stderr, "allreduce %s %s failed: %s\n", typeNames[t], opNames[op], lockstepGetLastError(comm));
          return 2;
        }
        if (memcmp(dst, want, COUNT * sz) != 0) {
          fprintf(stderr, "rank %d: wrong result for %s %s %s\n", rank, typeNames[t], opNames[op],
                  inPlace ? "in place" : "out of place");
          ++wrong;
        }
      }
    }
  }
  lockstepBarrier(comm, NULL);
  lockstepCommDestroy(comm);
  free(in);
  free(out);
  free(want);
  if (rank == 0)
    printf("allreduce_check: %d ranks, %d types x %d ops, %d wrong\n", nranks, lockstepNumTypes, lockstepNumOps, wrong);
  return wrong ? 1 : 0;
}
