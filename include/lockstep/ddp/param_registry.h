// The DDP layer's parameter list: what was registered, checked as it is registered, and a
// signature of it that ranks compare before the first iteration.
//
// Ranks must register the same parameters (count and dtype, in the same order) and use the same
// options, or their bucket plans differ and the all-reduces combine unrelated gradients. The
// signature lets the layer detect that with two small all-reduces and name the first differing
// parameter, instead of failing later with a bare size mismatch (or, for equal sizes, silently).
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "bucket_plan.h"

namespace lockstep::ddp {

// Where a parameter's memory lives. Only host memory works today (gradients are packed by the
// CPU); kDevice is accepted by the API so device registration needs no interface change once
// packing runs on the device.
enum class Memory { kHost, kDevice };

struct Param {
  std::string name;
  void* data = nullptr;  // the parameter (broadcast, ZeRO-1 all-gather)
  void* grad = nullptr;  // its gradient (all-reduced)
  size_t count = 0;
  lockstepDataType_t dtype = lockstepFloat32;
};

inline bool isFloatingType(lockstepDataType_t t) {
  return t == lockstepFloat16 || t == lockstepBfloat16 || t == lockstepFloat32 || t == lockstepFloat64;
}

inline const char* typeName(lockstepDataType_t t) {
  switch (t) {
    case lockstepFloat16:
      return "float16";
    case lockstepBfloat16:
      return "bfloat16";
    case lockstepFloat32:
      return "float32";
    case lockstepFloat64:
      return "float64";
    default:
      return "non-floating";
  }
}

class ParamRegistry {
 public:
  // Checks and appends; returns the new parameter's index.
  size_t add(Param p, Memory memory) {
    const std::string who = "parameter '" + p.name + "'";
    if (memory == Memory::kDevice) {
      throw Exception(lockstepInvalidUsage, "lockstep ddp: " + who +
                                                ": device memory is not supported by GradientSync yet (it packs "
                                                "gradients with the CPU); register host memory");
    }
    if (!isFloatingType(p.dtype)) {
      throw Exception(lockstepInvalidArgument, "lockstep ddp: " + who +
                                                   ": gradients must be float16, bfloat16, float32 or float64 (dtype " +
                                                   std::to_string(static_cast<int>(p.dtype)) + ")");
    }
    if (p.count > 0 && (p.data == nullptr || p.grad == nullptr)) {
      throw Exception(lockstepInvalidArgument, "lockstep ddp: " + who + ": null parameter or gradient pointer");
    }
    if (p.count > SIZE_MAX / elementSize(p.dtype)) {
      throw Exception(lockstepInvalidArgument, "lockstep ddp: " + who + ": count overflows");
    }
    const size_t bytes = p.count * elementSize(p.dtype);
    if (bytes > 0 && overlaps(p.data, bytes, p.grad, bytes)) {
      throw Exception(lockstepInvalidArgument, "lockstep ddp: " + who + ": parameter and gradient memory overlap");
    }
    if (bytes > 0) {
      checkFree(p.data, bytes, who);
      checkFree(p.grad, bytes, who);
      ranges_[reinterpret_cast<uintptr_t>(p.data)] = {bytes, params_.size()};
      ranges_[reinterpret_cast<uintptr_t>(p.grad)] = {bytes, params_.size()};
    }
    if (p.count > 0) byData_[p.data] = params_.size();
    params_.push_back(std::move(p));
    return params_.size() - 1;
  }

  size_t size() const { return params_.size(); }
  const Param& operator[](size_t i) const { return params_[i]; }

  // The index of the parameter whose data pointer is `data`; throws if none.
  size_t find(const void* data) const {
    auto it = byData_.find(data);
    if (it == byData_.end()) {
      // The gradient's pointer instead of the parameter's is the likely slip: say so.
      for (const Param& p : params_) {
        if (p.grad == data && p.count > 0) {
          throw Exception(lockstepInvalidArgument, "lockstep ddp: markReady of the gradient of '" + p.name +
                                                       "': pass the parameter's data pointer (or its index)");
        }
      }
      throw Exception(lockstepInvalidArgument,
                      "lockstep ddp: markReady of a pointer that is not a registered parameter");
    }
    return it->second;
  }

  std::vector<ParamShape> shapes() const {
    std::vector<ParamShape> s;
    s.reserve(params_.size());
    for (const Param& p : params_) s.push_back({p.count, p.dtype});
    return s;
  }

  // One hash per parameter of what the plan depends on (count, dtype); names are hashed apart
  // (nameSignature), since ranks may name things differently on purpose (Options::checkNames).
  std::vector<uint64_t> signature() const {
    std::vector<uint64_t> h;
    h.reserve(params_.size());
    for (const Param& p : params_) h.push_back(mix(mix(kFnvBasis, p.count), static_cast<uint64_t>(p.dtype)));
    return h;
  }

  // One hash per parameter of its name.
  std::vector<uint64_t> nameSignature() const {
    std::vector<uint64_t> h;
    h.reserve(params_.size());
    for (const Param& p : params_) {
      uint64_t x = kFnvBasis;
      for (unsigned char c : p.name) x = (x ^ c) * 1099511628211ull;
      h.push_back(x);
    }
    return h;
  }

  static uint64_t mix(uint64_t h, uint64_t v) {
    for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xffu)) * 1099511628211ull;
    return h;
  }
  static constexpr uint64_t kFnvBasis = 1469598103934665603ull;

 private:
  static bool overlaps(const void* a, size_t an, const void* b, size_t bn) {
    auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
    return x < y + bn && y < x + an;
  }

  // Registered ranges do not overlap one another, so only the neighbours of a new range in address
  // order can overlap it.
  void checkFree(const void* ptr, size_t bytes, const std::string& who) const {
    const auto at = reinterpret_cast<uintptr_t>(ptr);
    auto next = ranges_.lower_bound(at);
    auto clash = ranges_.end();
    if (next != ranges_.end() && next->first < at + bytes) clash = next;
    if (clash == ranges_.end() && next != ranges_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second.bytes > at) clash = prev;
    }
    if (clash != ranges_.end()) {
      throw Exception(lockstepInvalidArgument, "lockstep ddp: " + who + " overlaps the memory of parameter '" +
                                                   params_[clash->second.param].name + "'");
    }
  }

  struct Range {
    size_t bytes;
    size_t param;
  };
  std::map<uintptr_t, Range> ranges_;  // every registered parameter and gradient, by address
  std::vector<Param> params_;
  std::unordered_map<const void*, size_t> byData_;
};

}  // namespace lockstep::ddp
