// ZeRO-1 shard layout: which gradient elements (and so which optimizer-state elements) a rank
// owns.
//
// Each bucket's padded buffer is split into nranks equal blocks; rank r owns block r of every
// bucket, which is exactly what an in-place reduce-scatter of that bucket leaves on rank r. A
// block can start or end inside a parameter, so ownership is a list of pieces (parameter, element
// range). The rank's optimizer state is those pieces concatenated: piece i's state starts at
// stateOffset. The layout follows the bucket plan, which the DDP layer fixes after the first
// iteration and never changes again, so optimizer state allocated after the first finish() stays
// valid.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "bucket_plan.h"

namespace lockstep::ddp {

struct ShardPiece {
  size_t param = 0;        // parameter index (registration order)
  size_t paramOffset = 0;  // first owned element within the parameter
  size_t count = 0;        // owned elements
  size_t stateOffset = 0;  // where this piece's state begins in the rank's compact shard state
  size_t bucket = 0;       // the bucket that carries it
};

// Rank `rank`'s pieces, bucket by bucket in launch order and by position within each bucket.
// Every bucket's paddedCount must be a multiple of nranks (plan with padMultiple = nranks).
inline std::vector<ShardPiece> shardPieces(const BucketPlan& plan, const std::vector<ParamShape>& params, int rank,
                                           int nranks) {
  if (nranks < 1 || rank < 0 || rank >= nranks) {
    throw Exception(lockstepInvalidArgument, "lockstep ddp: rank " + std::to_string(rank) + " of " +
                                                 std::to_string(nranks) + " for a ZeRO-1 shard");
  }
  std::vector<ShardPiece> pieces;
  size_t state = 0;
  for (size_t b = 0; b < plan.buckets.size(); ++b) {
    const Bucket& bucket = plan.buckets[b];
    if (bucket.paddedCount % static_cast<size_t>(nranks) != 0) {
      throw Exception(lockstepInternalError, "lockstep ddp: bucket " + std::to_string(b) + " of " +
                                                 std::to_string(bucket.paddedCount) + " elements does not split into " +
                                                 std::to_string(nranks) + " blocks");
    }
    const size_t block = bucket.paddedCount / static_cast<size_t>(nranks);
    const size_t lo = block * static_cast<size_t>(rank), hi = lo + block;
    for (size_t k = 0; k < bucket.params.size(); ++k) {
      const size_t p = bucket.params[k];
      const size_t begin = std::max(lo, bucket.offsets[k]);
      const size_t end = std::min(hi, bucket.offsets[k] + params[p].count);
      if (begin >= end) continue;
      pieces.push_back({p, begin - bucket.offsets[k], end - begin, state, b});
      state += end - begin;
    }
  }
  return pieces;
}

// Elements owned in total (the size of the rank's optimizer state per state tensor).
inline size_t shardCount(const std::vector<ShardPiece>& pieces) {
  return pieces.empty() ? 0 : pieces.back().stateOffset + pieces.back().count;
}

}  // namespace lockstep::ddp
