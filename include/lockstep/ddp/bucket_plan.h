// Bucket planning for the DDP layer: which gradients travel together in one all-reduce.
//
// A bucket is a flat buffer of one dtype holding the gradients of several parameters back to back.
// It is launched once all of its parameters are ready, so its composition decides how early
// communication can start during the backward pass. Gradients become ready roughly in reverse
// registration order (the last layer's first), so the first plan fills buckets in that order;
// after the first iteration the layer re-plans with the order actually observed.
//
// Pure functions, no communication: every rank computes the same plan from the same inputs.
// Header-only so that lockstep/ddp.hpp stays usable from an installed tree.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/lockstep.hpp"

namespace lockstep::ddp {

// What planning needs to know about a registered parameter.
struct ParamShape {
  size_t count = 0;
  lockstepDataType_t dtype = lockstepFloat32;
};

struct Bucket {
  lockstepDataType_t dtype = lockstepFloat32;
  std::vector<size_t> params;   // parameter indices, in fill order
  std::vector<size_t> offsets;  // element offset of each parameter's gradient in the bucket
  size_t count = 0;             // elements in use
  size_t paddedCount = 0;       // count rounded up to the plan's pad multiple (zeros after count)
};

// Buckets in launch order. Launch order is what every rank must agree on: buckets are issued
// strictly in this order, so a bucket that fills early waits for the ones before it.
struct BucketPlan {
  std::vector<Bucket> buckets;
  std::vector<size_t> bucketOf;  // per parameter: its bucket
  std::vector<size_t> offsetOf;  // per parameter: its element offset in that bucket
};

inline size_t elementSize(lockstepDataType_t t) {
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
      throw Exception(lockstepInvalidArgument, "lockstep ddp: unknown dtype " + std::to_string(static_cast<int>(t)));
  }
}

// n-1, n-2, ..., 0: the order gradients are expected in before anything has been observed.
inline std::vector<size_t> reverseRegistrationOrder(size_t n) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = n - 1 - i;
  return order;
}

// The observed ready order, completed with the parameters that were never seen (in reverse
// registration order, after the observed ones: they are the least likely to be needed early).
// Throws if observed repeats a parameter or names one that does not exist.
inline std::vector<size_t> completeOrder(const std::vector<size_t>& observed, size_t n) {
  std::vector<char> seen(n, 0);
  std::vector<size_t> order;
  order.reserve(n);
  for (size_t p : observed) {
    if (p >= n) {
      throw Exception(lockstepInvalidArgument,
                      "lockstep ddp: ready order names parameter #" + std::to_string(p) + " of " + std::to_string(n));
    }
    if (seen[p]) {
      throw Exception(lockstepInvalidArgument,
                      "lockstep ddp: ready order lists parameter #" + std::to_string(p) + " twice");
    }
    seen[p] = 1;
    order.push_back(p);
  }
  for (size_t p : reverseRegistrationOrder(n)) {
    if (!seen[p]) order.push_back(p);
  }
  return order;
}

// Fills buckets walking `order` (a permutation of the parameter indices). Each dtype has one open
// bucket; a parameter goes into the open bucket of its dtype unless that would take the bucket past
// bucketBytes, in which case the open bucket is closed first. So a bucket never exceeds
// bucketBytes unless it holds a single parameter larger than that (bucketBytes = 0: one parameter
// per bucket). Buckets are then ordered by the position of their first parameter in `order`,
// which is the order their first gradient is expected. padMultiple (>= 1) rounds each bucket's
// length up so reduce-scatter can split it into equal blocks (ZeRO-1 uses the rank count).
inline BucketPlan planBuckets(const std::vector<ParamShape>& params, const std::vector<size_t>& order,
                              size_t bucketBytes, size_t padMultiple = 1) {
  const size_t n = params.size();
  if (order.size() != n) {
    throw Exception(lockstepInvalidArgument, "lockstep ddp: bucket order has " + std::to_string(order.size()) +
                                                 " entries for " + std::to_string(n) + " parameters");
  }
  if (padMultiple == 0) throw Exception(lockstepInvalidArgument, "lockstep ddp: pad multiple must be at least 1");
  std::vector<size_t> position(n, n);
  for (size_t i = 0; i < n; ++i) {
    if (order[i] >= n || position[order[i]] != n) {
      throw Exception(lockstepInvalidArgument, "lockstep ddp: bucket order is not a permutation of the parameters");
    }
    position[order[i]] = i;
  }

  struct Open {
    Bucket bucket;
    size_t bytes = 0;
    size_t firstPosition = 0;
  };
  std::vector<Open> open;  // at most one per dtype; few dtypes, so a linear search
  std::vector<Open> closed;
  for (size_t i = 0; i < n; ++i) {
    const size_t p = order[i];
    const size_t bytes = params[p].count * elementSize(params[p].dtype);
    auto it = std::find_if(open.begin(), open.end(), [&](const Open& o) { return o.bucket.dtype == params[p].dtype; });
    if (it != open.end() && !it->bucket.params.empty() && it->bytes + bytes > bucketBytes) {
      closed.push_back(std::move(*it));
      open.erase(it);
      it = open.end();
    }
    if (it == open.end()) {
      Open o;
      o.bucket.dtype = params[p].dtype;
      o.firstPosition = i;
      open.push_back(std::move(o));
      it = open.end() - 1;
    }
    it->bucket.params.push_back(p);
    it->bucket.offsets.push_back(it->bucket.count);
    it->bucket.count += params[p].count;
    it->bytes += bytes;
  }
  for (Open& o : open) closed.push_back(std::move(o));
  std::stable_sort(closed.begin(), closed.end(),
                   [](const Open& a, const Open& b) { return a.firstPosition < b.firstPosition; });

  BucketPlan plan;
  plan.bucketOf.assign(n, 0);
  plan.offsetOf.assign(n, 0);
  for (Open& o : closed) {
    Bucket& b = o.bucket;
    b.paddedCount = (b.count + padMultiple - 1) / padMultiple * padMultiple;
    for (size_t k = 0; k < b.params.size(); ++k) {
      plan.bucketOf[b.params[k]] = plan.buckets.size();
      plan.offsetOf[b.params[k]] = b.offsets[k];
    }
    plan.buckets.push_back(std::move(b));
  }
  return plan;
}

// True if the two plans put the same parameters at the same places (re-planning that changes
// nothing keeps the buffers).
inline bool samePlan(const BucketPlan& a, const BucketPlan& b) {
  if (a.buckets.size() != b.buckets.size()) return false;
  for (size_t i = 0; i < a.buckets.size(); ++i) {
    const Bucket &x = a.buckets[i], &y = b.buckets[i];
    if (x.dtype != y.dtype || x.params != y.params || x.paddedCount != y.paddedCount) return false;
  }
  return true;
}

}  // namespace lockstep::ddp
