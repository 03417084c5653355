#include "optimizer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace ddp_train {

namespace {

size_t stateSize(const std::vector<Span>& spans) {
  size_t n = 0;
  for (const Span& s : spans) n = std::max(n, s.stateOffset + s.count);
  return n;
}

// Allocates the state on the first step; afterwards the spans must describe the same layout.
void ensureState(std::vector<float>& state, const std::vector<Span>& spans, bool first) {
  const size_t n = stateSize(spans);
  if (first) {
    state.assign(n, 0.0f);
  } else if (n != state.size()) {
    throw std::logic_error("optimizer spans changed size: " + std::to_string(state.size()) + " state elements, now " +
                           std::to_string(n));
  }
}

}  // namespace

void SgdMomentum::step(const std::vector<Span>& spans, float lr) {
  ensureState(velocity_, spans, velocity_.empty());
  for (const Span& s : spans) {
    float* v = velocity_.data() + s.stateOffset;
    for (size_t i = 0; i < s.count; ++i) {
      v[i] = momentum_ * v[i] + s.grad[i];
      s.param[i] -= lr * v[i];
    }
  }
}

void Adam::step(const std::vector<Span>& spans, float lr) {
  const bool first = steps_ == 0;
  ensureState(m_, spans, first);
  ensureState(v_, spans, first);
  ++steps_;
  // Bias corrections folded into the step size and epsilon, as PyTorch does.
  const double c1 = 1.0 - std::pow(static_cast<double>(beta1_), static_cast<double>(steps_));
  const double c2 = 1.0 - std::pow(static_cast<double>(beta2_), static_cast<double>(steps_));
  const float stepSize = static_cast<float>(lr / c1);
  const float rootC2 = static_cast<float>(std::sqrt(c2));
  for (const Span& s : spans) {
    float* m = m_.data() + s.stateOffset;
    float* v = v_.data() + s.stateOffset;
    for (size_t i = 0; i < s.count; ++i) {
      const float g = s.grad[i];
      m[i] = beta1_ * m[i] + (1.0f - beta1_) * g;
      v[i] = beta2_ * v[i] + (1.0f - beta2_) * g * g;
      s.param[i] -= stepSize * m[i] / (std::sqrt(v[i]) / rootC2 + eps_);
    }
  }
}

std::unique_ptr<Optimizer> makeOptimizer(const std::string& name, float momentum) {
  if (name == "sgd") return std::make_unique<SgdMomentum>(momentum);
  if (name == "adam") return std::make_unique<Adam>();
  throw std::invalid_argument("unknown optimizer '" + name + "' (sgd, adam)");
}

}  // namespace ddp_train
