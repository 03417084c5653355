// The instantiation table is written once here: 12 dtypes x 4 element ops, plus avg's divide.
// The loops are plain so the compiler vectorises them (-O3; checked with -fopt-info-vec in
// docs/kernels.md).
#include "kernels/cpu_reduce.h"

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/dispatch.h"
#include "kernels/dtype.h"
#include "kernels/functors.h"

namespace lockstep {
namespace {

template <typename T, typename F>
void reduceLoop(void* dst, const void* a, const void* b, size_t n) {
  using Tr = ElemTraits<T>;
  T* d = static_cast<T*>(dst);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  F f;
  for (size_t i = 0; i < n; ++i) d[i] = Tr::store(f(Tr::load(x[i]), Tr::load(y[i])));
}

template <typename T>
void divideLoop(void* data, size_t n, int divisor) {
  using Tr = ElemTraits<T>;
  T* d = static_cast<T*>(data);
  for (size_t i = 0; i < n; ++i) d[i] = Tr::store(divideBy(Tr::load(d[i]), divisor));
}

template <typename T>
constexpr bool kFloating = !std::is_integral_v<typename ElemTraits<T>::Compute>;

template <typename T>
void premulSumLoop(void* dst, const void* a, const void* b, size_t n, int nranks) {
  using Tr = ElemTraits<T>;
  using C = typename Tr::Compute;
  const C factor = C(1) / static_cast<C>(nranks);
  T* d = static_cast<T*>(dst);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  for (size_t i = 0; i < n; ++i) d[i] = Tr::store(Tr::load(x[i]) + Tr::load(y[i]) * factor);
}

template <typename T>
void scaleLoop(void* dst, const void* src, size_t n, int nranks) {
  using Tr = ElemTraits<T>;
  using C = typename Tr::Compute;
  const C factor = C(1) / static_cast<C>(nranks);
  T* d = static_cast<T*>(dst);
  const T* s = static_cast<const T*>(src);
  for (size_t i = 0; i < n; ++i) d[i] = Tr::store(Tr::load(s[i]) * factor);
}

template <typename T>
ReduceFn pickOp(lockstepRedOp_t op) {
  switch (op) {
    case lockstepSum:
    case lockstepAvg:
      return &reduceLoop<T, FuncSum>;
    case lockstepProd:
      return &reduceLoop<T, FuncProd>;
    case lockstepMax:
      return &reduceLoop<T, FuncMax>;
    case lockstepMin:
      return &reduceLoop<T, FuncMin>;
    default:
      return nullptr;
  }
}

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

}  // namespace

ReduceFn reduceFn(lockstepDataType_t type, lockstepRedOp_t op) {
  return dispatchType(type, [op](auto t) { return pickOp<decltype(t)>(op); });
}

DivideFn divideFn(lockstepDataType_t type) {
  return dispatchType(type, [](auto t) -> DivideFn {
    if constexpr (kFloating<decltype(t)>)
      return nullptr;
    else
      return &divideLoop<decltype(t)>;
  });
}

PremulSumFn premulSumFn(lockstepDataType_t type) {
  return dispatchType(type, [](auto t) -> PremulSumFn {
    if constexpr (kFloating<decltype(t)>)
      return &premulSumLoop<decltype(t)>;
    else
      return nullptr;
  });
}

ScaleFn scaleFn(lockstepDataType_t type) {
  return dispatchType(type, [](auto t) -> ScaleFn {
    if constexpr (kFloating<decltype(t)>)
      return &scaleLoop<decltype(t)>;
    else
      return nullptr;
  });
}

ReduceKernels reduceKernels(lockstepDataType_t type, lockstepRedOp_t op) {
  ReduceKernels k{reduceFn(type, op), nullptr, nullptr, nullptr};
  if (op == lockstepAvg) {
    k.premulSum = premulSumFn(type);
    k.scale = scaleFn(type);
    k.divide = divideFn(type);
  }
  return k;
}

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
