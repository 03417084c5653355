// The training data: interleaved spirals generated from a seed, and a DistributedSampler-style
// sharding of it across ranks.
//
// Everything is computed with our own generator and shuffle (not std::shuffle or the standard
// distributions, whose algorithms differ between standard libraries), so a seed gives the same
// data set and the same batches on every machine and every rank.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ddp_train {

// xoshiro256** seeded through splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1)
  double normal();   // standard normal (Box-Muller)
  uint64_t below(uint64_t n);

 private:
  uint64_t s_[4];
};

struct Dataset {
  size_t dim = 0;
  size_t classes = 0;
  std::vector<float> x;  // size() x dim, row-major
  std::vector<int32_t> y;
  size_t size() const { return y.size(); }
};

// `classes` Gaussian blobs in `dim` dimensions: class c's centre is a standard normal vector drawn
// from centreSeed (so a training and a held-out set with the same centreSeed share their classes);
// a sample is its centre plus Gaussian noise of standard deviation `spread` per coordinate.
// Sample i belongs to class i % classes.
Dataset makeGaussianMixture(size_t samples, size_t classes, size_t dim, double spread, uint64_t centreSeed,
                            uint64_t sampleSeed);

// `classes` spiral arms of 1.75 turns each in the plane, Gaussian noise of standard deviation
// `noise` on each coordinate; sample i belongs to class i % classes.
Dataset makeSpirals(size_t samples, size_t classes, double noise, uint64_t seed);

// Like torch.utils.data.DistributedSampler: every epoch, a permutation of [0, n) from (seed, epoch)
// that every rank computes identically, padded by wrapping around to a multiple of nranks; rank r
// takes positions r, r + nranks, r + 2 nranks, ... So the shards of one epoch are disjoint, and the
// first B samples of rank r's shard over all ranks are exactly positions [0, B x nranks) of the
// permutation, whatever nranks is.
class ShardedSampler {
 public:
  ShardedSampler(size_t n, int rank, int nranks, uint64_t seed);
  void setEpoch(uint64_t epoch);
  const std::vector<size_t>& indices() const { return indices_; }  // this rank's shard, in order

 private:
  size_t n_;
  int rank_, nranks_;
  uint64_t seed_;
  std::vector<size_t> indices_;
};

}  // namespace ddp_train
