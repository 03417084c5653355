#include "mlp.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "dataset.h"

namespace ddp_train {

namespace {

// Eight independent partial sums: the compiler turns them into vector lanes (a single running sum
// would be one long dependency chain it may not reorder).
float dot(const float* a, const float* b, size_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (size_t k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  }
  for (size_t k = 0; i < n; ++i, ++k) acc[k] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

void axpy(float a, const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace

Mlp::Mlp(const std::vector<size_t>& widths, Activation activation) : activation_(activation) {
  if (widths.size() < 2) throw std::invalid_argument("an MLP needs an input width and an output width");
  for (size_t l = 0; l + 1 < widths.size(); ++l) {
    Linear layer;
    layer.in = widths[l];
    layer.out = widths[l + 1];
    layer.w.assign(layer.in * layer.out, 0.0f);
    layer.b.assign(layer.out, 0.0f);
    layer.dw.assign(layer.w.size(), 0.0f);
    layer.db.assign(layer.b.size(), 0.0f);
    layers_.push_back(std::move(layer));
  }
  acts_.resize(layers_.size() + 1);
}

void Mlp::initialize(uint64_t seed) {
  Rng rng(seed);
  for (Linear& l : layers_) {
    const double bound = std::sqrt(6.0 / static_cast<double>(l.in));
    for (float& w : l.w) w = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
    std::fill(l.b.begin(), l.b.end(), 0.0f);
  }
}

size_t Mlp::parameterCount() const {
  size_t n = 0;
  for (const Linear& l : layers_) n += l.w.size() + l.b.size();
  return n;
}

void Mlp::forward(const float* x, size_t n) {
  rows_ = n;
  acts_[0].assign(x, x + n * layers_[0].in);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Linear& layer = layers_[l];
    const std::vector<float>& in = acts_[l];
    std::vector<float>& out = acts_[l + 1];
    out.resize(n * layer.out);
    for (size_t r = 0; r < n; ++r) std::copy(layer.b.begin(), layer.b.end(), out.begin() + r * layer.out);
    // y[r] += x[r][i] * w[i], input by input: one row of w serves every sample while it is in cache.
    for (size_t i = 0; i < layer.in; ++i) {
      const float* wi = layer.w.data() + i * layer.out;
      for (size_t r = 0; r < n; ++r) {
        const float a = in[r * layer.in + i];
        if (a != 0.0f) axpy(a, wi, out.data() + r * layer.out, layer.out);
      }
    }
    if (l + 1 < layers_.size()) {
      if (activation_ == Activation::kRelu) {
        for (float& v : out) v = std::max(v, 0.0f);
      } else {
        for (float& v : out) v = std::tanh(v);
      }
    }
  }
}

BatchStats Mlp::lossAndGradient(const int32_t* labels, float scale) {
  const size_t classes = layers_.back().out;
  const std::vector<float>& logits = acts_.back();
  delta_.resize(rows_ * classes);
  BatchStats s;
  for (size_t r = 0; r < rows_; ++r) {
    const float* z = logits.data() + r * classes;
    const size_t label = static_cast<size_t>(labels[r]);
    const size_t best = static_cast<size_t>(std::max_element(z, z + classes) - z);
    const double top = z[best];
    double sum = 0;
    for (size_t c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(z[c]) - top);
    s.lossSum += std::log(sum) - (static_cast<double>(z[label]) - top);
    s.correct += best == label ? 1 : 0;
    for (size_t c = 0; c < classes; ++c) {
      const double p = std::exp(static_cast<double>(z[c]) - top) / sum;
      delta_[r * classes + c] = static_cast<float>((p - (c == label ? 1.0 : 0.0)) * scale);
    }
  }
  s.count = static_cast<double>(rows_);
  return s;
}

void Mlp::backward(const std::function<void(size_t layer)>& ready) {
  for (size_t l = layers_.size(); l-- > 0;) {
    Linear& layer = layers_[l];
    const std::vector<float>& in = acts_[l];
    // db += sum over samples of delta; dw[i] += in[r][i] * delta[r], samples in order.
    for (size_t r = 0; r < rows_; ++r) axpy(1.0f, delta_.data() + r * layer.out, layer.db.data(), layer.out);
    for (size_t i = 0; i < layer.in; ++i) {
      float* dwi = layer.dw.data() + i * layer.out;
      for (size_t r = 0; r < rows_; ++r) {
        const float a = in[r * layer.in + i];
        if (a != 0.0f) axpy(a, delta_.data() + r * layer.out, dwi, layer.out);
      }
    }
    ready(l);
    if (l == 0) break;
    // Gradient w.r.t. this layer's input, through the activation that produced it: tanh' = 1 - h^2;
    // ReLU' = 1 where the unit was on, 0 (and nothing to compute) where it was off.
    deltaBelow_.assign(rows_ * layer.in, 0.0f);
    for (size_t r = 0; r < rows_; ++r) {
      for (size_t i = 0; i < layer.in; ++i) {
        const float h = in[r * layer.in + i];
        const float slope = activation_ == Activation::kRelu ? (h > 0.0f ? 1.0f : 0.0f) : 1.0f - h * h;
        if (slope != 0.0f) {
          deltaBelow_[r * layer.in + i] =
              slope * dot(delta_.data() + r * layer.out, layer.w.data() + i * layer.out, layer.out);
        }
      }
    }
    delta_.swap(deltaBelow_);
  }
}

void Mlp::zeroGradients() {
  for (Linear& l : layers_) {
    std::fill(l.dw.begin(), l.dw.end(), 0.0f);
    std::fill(l.db.begin(), l.db.end(), 0.0f);
  }
}

}  // namespace ddp_train
