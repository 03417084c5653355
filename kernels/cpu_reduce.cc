// Kernel lookup: the instantiation table is written once (kernels/cpu_loops.h), built per ISA, and
// the best table this CPU runs is picked on first use.
#include "kernels/cpu_reduce.h"

#include <cpuid.h>

#include <cstring>
#include <initializer_list>

#include "kernels/dtype.h"
#include "kernels/kernel_table.h"

namespace lockstep {
namespace {

struct TypeInfo {
  lockstepDataType_t type;
  const char* name;
};
constexpr TypeInfo kTypes[] = {
    {lockstepInt8, "int8"},       {lockstepUint8, "uint8"},        {lockstepInt32, "int32"},
    {lockstepUint32, "uint32"},   {lockstepInt64, "int64"},        {lockstepUint64, "uint64"},
    {lockstepFloat16, "float16"}, {lockstepBfloat16, "bfloat16"},  {lockstepFloat32, "float32"},
    {lockstepFloat64, "float64"}, {lockstepFloat8e4m3, "fp8e4m3"}, {lockstepFloat8e5m2, "fp8e5m2"},
};
constexpr const char* kOps[] = {"sum", "prod", "max", "min", "avg"};

// F16C by CPUID (leaf 1, ECX bit 29): clang's __builtin_cpu_supports does not know "f16c".
bool cpuHasF16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}

bool cpuHas(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kBaseline:
      return true;
    case CpuIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpuHasF16c();
    case CpuIsa::kAvx512:
      // Every extension its loops are compiled with (CMakeLists.txt): DQ gives vpmullq and the
      // mask moves of the int64 product and the float max/min loops.
      return cpuHas(CpuIsa::kAvx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    default:
      return false;
  }
}

int opIndex(lockstepRedOp_t op) { return op == lockstepAvg ? 0 : static_cast<int>(op); }

}  // namespace

const char* cpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kBaseline:
      return "baseline";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
    default:
      return "invalid";
  }
}

const KernelTable* kernelTable(CpuIsa isa) {
  if (!cpuHas(isa)) return nullptr;
  switch (isa) {
    case CpuIsa::kBaseline:
      return &kernelTableBaseline();
    case CpuIsa::kAvx2:
      return &kernelTableAvx2();
    case CpuIsa::kAvx512:
      return &kernelTableAvx512();
    default:
      return nullptr;
  }
}

CpuIsa activeIsa() {
  static const CpuIsa isa = [] {
    for (CpuIsa i : {CpuIsa::kAvx512, CpuIsa::kAvx2}) {
      if (cpuHas(i)) return i;
    }
    return CpuIsa::kBaseline;
  }();
  return isa;
}

const KernelTable& activeKernels() {
  static const KernelTable& table = *kernelTable(activeIsa());
  return table;
}

ReduceFn reduceFn(lockstepDataType_t type, lockstepRedOp_t op) {
  if (!validDataType(type) || !validRedOp(op)) return nullptr;
  return activeKernels().reduce[type][opIndex(op)];
}

DivideFn divideFn(lockstepDataType_t type) { return validDataType(type) ? activeKernels().divide[type] : nullptr; }

PremulSumFn premulSumFn(lockstepDataType_t type) {
  return validDataType(type) ? activeKernels().premulSum[type] : nullptr;
}

ScaleFn scaleFn(lockstepDataType_t type) { return validDataType(type) ? activeKernels().scale[type] : nullptr; }

ReduceKernels reduceKernels(lockstepDataType_t type, lockstepRedOp_t op) {
  ReduceKernels k{reduceFn(type, op), nullptr, nullptr, nullptr};
  if (op == lockstepAvg) {
    k.premulSum = premulSumFn(type);
    k.scale = scaleFn(type);
    k.divide = divideFn(type);
  }
  return k;
}

void streamCopy(void* dst, const void* src, size_t bytes) { activeKernels().streamCopy(dst, src, bytes); }

const char* dataTypeName(lockstepDataType_t t) {
  for (const auto& i : kTypes) {
    if (i.type == t) return i.name;
  }
  return "invalid";
}

const char* redOpName(lockstepRedOp_t op) { return validRedOp(op) ? kOps[op] : "invalid"; }

bool parseDataType(const char* name, lockstepDataType_t* out) {
  // Also accept nccl-tests' short names.
  static const struct {
    const char* alias;
    lockstepDataType_t type;
  } kAliases[] = {{"float", lockstepFloat32},  {"half", lockstepFloat16}, {"double", lockstepFloat64},
                  {"bf16", lockstepBfloat16},  {"fp16", lockstepFloat16}, {"fp32", lockstepFloat32},
                  {"fp64", lockstepFloat64},   {"int", lockstepInt32},    {"e4m3", lockstepFloat8e4m3},
                  {"e5m2", lockstepFloat8e5m2}};
  for (const auto& i : kTypes) {
    if (std::strcmp(i.name, name) == 0) return *out = i.type, true;
  }
  for (const auto& a : kAliases) {
    if (std::strcmp(a.alias, name) == 0) return *out = a.type, true;
  }
  return false;
}

bool parseRedOp(const char* name, lockstepRedOp_t* out) {
  for (int i = 0; i < lockstepNumOps; ++i) {
    if (std::strcmp(kOps[i], name) == 0) return *out = static_cast<lockstepRedOp_t>(i), true;
  }
  return false;
}

}  // namespace lockstep
