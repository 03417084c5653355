#include "dataset.h"

#include <cmath>
#include <numbers>

namespace ddp_train {

namespace {

uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) s = splitmix(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  const double u = 1.0 - uniform();  // (0, 1]: the log stays finite
  const double v = uniform();
  return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * std::numbers::pi * v);
}

// Lemire's multiply-shift with rejection: unbiased.
uint64_t Rng::below(uint64_t n) {
  for (;;) {
    const unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
    const uint64_t low = static_cast<uint64_t>(m);
    if (low >= (0 - n) % n) return static_cast<uint64_t>(m >> 64);
  }
}

Dataset makeGaussianMixture(size_t samples, size_t classes, size_t dim, double spread, uint64_t centreSeed,
                            uint64_t sampleSeed) {
  Dataset d;
  d.dim = dim;
  d.classes = classes;
  std::vector<double> centres(classes * dim);
  Rng centreRng(centreSeed);
  for (double& c : centres) c = centreRng.normal();
  d.x.resize(samples * dim);
  d.y.resize(samples);
  Rng rng(sampleSeed);
  for (size_t i = 0; i < samples; ++i) {
    const size_t c = i % classes;
    for (size_t k = 0; k < dim; ++k)
      d.x[i * dim + k] = static_cast<float>(centres[c * dim + k] + spread * rng.normal());
    d.y[i] = static_cast<int32_t>(c);
  }
  return d;
}

Dataset makeSpirals(size_t samples, size_t classes, double noise, uint64_t seed) {
  Dataset d;
  d.dim = 2;
  d.classes = classes;
  d.x.resize(samples * 2);
  d.y.resize(samples);
  Rng rng(seed);
  const double turns = 1.75;
  for (size_t i = 0; i < samples; ++i) {
    const size_t c = i % classes;
    const double t = std::sqrt(rng.uniform());  // denser towards the rim, where arms are far apart
    const double angle = 2.0 * std::numbers::pi * (turns * t + static_cast<double>(c) / static_cast<double>(classes));
    d.x[2 * i] = static_cast<float>(t * std::cos(angle) + noise * rng.normal());
    d.x[2 * i + 1] = static_cast<float>(t * std::sin(angle) + noise * rng.normal());
    d.y[i] = static_cast<int32_t>(c);
  }
  return d;
}

ShardedSampler::ShardedSampler(size_t n, int rank, int nranks, uint64_t seed)
    : n_(n), rank_(rank), nranks_(nranks), seed_(seed) {
  setEpoch(0);
}

void ShardedSampler::setEpoch(uint64_t epoch) {
  std::vector<size_t> perm(n_);
  for (size_t i = 0; i < n_; ++i) perm[i] = i;
  Rng rng(seed_ * 0x100000001b3ull + epoch);
  for (size_t i = n_; i > 1; --i) std::swap(perm[i - 1], perm[rng.below(i)]);  // Fisher-Yates
  const size_t ranks = static_cast<size_t>(nranks_);
  const size_t total = (n_ + ranks - 1) / ranks * ranks;
  indices_.clear();
  for (size_t pos = static_cast<size_t>(rank_); pos < total; pos += ranks) indices_.push_back(perm[pos % n_]);
}

}  // namespace ddp_train
