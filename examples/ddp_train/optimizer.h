// SGD with momentum and Adam, applied to spans of parameters.
//
// A span is a run of elements of one parameter with its gradient and the place of its state in
// the optimizer's compact state arrays. Plain data parallelism passes every parameter whole;
// ZeRO-1 passes only the pieces this rank owns (GradientSync::shard()), so each rank keeps state
// for 1/N of the model. The arithmetic per element is the same either way, which is why ZeRO-1
// gives the same parameters as plain DDP.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace ddp_train {

struct Span {
  float* param;
  const float* grad;
  size_t count;
  size_t stateOffset;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of every span with learning rate lr. The state is sized by the first call; the
  // spans must cover the same state elements on every later call.
  virtual void step(const std::vector<Span>& spans, float lr) = 0;
  virtual size_t stateElements() const = 0;  // floats of state kept
};

// PyTorch's SGD: v = momentum v + g; p -= lr v.
class SgdMomentum : public Optimizer {
 public:
  explicit SgdMomentum(float momentum) : momentum_(momentum) {}
  void step(const std::vector<Span>& spans, float lr) override;
  size_t stateElements() const override { return velocity_.size(); }

 private:
  float momentum_;
  std::vector<float> velocity_;
};

// Adam (Kingma and Ba) with bias correction, PyTorch's defaults.
class Adam : public Optimizer {
 public:
  Adam(float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f) : beta1_(beta1), beta2_(beta2), eps_(eps) {}
  void step(const std::vector<Span>& spans, float lr) override;
  size_t stateElements() const override { return m_.size() + v_.size(); }

 private:
  float beta1_, beta2_, eps_;
  long steps_ = 0;
  std::vector<float> m_, v_;
};

// "sgd" or "adam"; throws std::invalid_argument otherwise.
std::unique_ptr<Optimizer> makeOptimizer(const std::string& name, float momentum);

}  // namespace ddp_train
