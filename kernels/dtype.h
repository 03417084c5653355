// Facts about lockstepDataType_t and lockstepRedOp_t: sizes and names, in one table.
#pragma once

#include <cstddef>

#include "lockstep/lockstep.h"

namespace lockstep {

inline bool validDataType(int t) { return t >= 0 && t < lockstepNumTypes; }
inline bool validRedOp(int o) { return o >= 0 && o < lockstepNumOps; }

inline size_t dataTypeSize(lockstepDataType_t t) {
  switch (t) {
    case lockstepInt8:
    case lockstepUint8:
    case lockstepFloat8e4m3:
    case lockstepFloat8e5m2:
      return 1;
    case lockstepFloat16:
    case lockstepBfloat16:
      return 2;
    case lockstepInt32:
    case lockstepUint32:
    case lockstepFloat32:
      return 4;
    case lockstepInt64:
    case lockstepUint64:
    case lockstepFloat64:
      return 8;
    default:
      return 0;
  }
}

const char* dataTypeName(lockstepDataType_t t);  // "float32", as allreduce_perf's -d takes it
const char* redOpName(lockstepRedOp_t op);       // "sum"
// Reverse lookups; return false for unknown names.
bool parseDataType(const char* name, lockstepDataType_t* out);
bool parseRedOp(const char* name, lockstepRedOp_t* out);

}  // namespace lockstep
