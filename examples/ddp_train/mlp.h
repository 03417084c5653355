// A multi-layer perceptron classifier with its backward pass written out: linear layers with tanh
// or ReLU between them, softmax cross-entropy on the last.
//
// backward() produces the gradients layer by layer from the last and reports each layer as soon as
// its gradients are final, which is where a data-parallel trainer calls markReady: the DDP layer
// can then all-reduce the last layers' gradients while the earlier layers are still computing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace ddp_train {

struct Linear {
  size_t in = 0, out = 0;
  std::vector<float> w;  // in x out, row-major: row i holds the weights leaving input i
  std::vector<float> b;  // out
  std::vector<float> dw, db;
};

// tanh is smooth, so a rounding-sized change of the parameters changes the gradient by a
// rounding-sized amount and runs on different rank counts stay together for hundreds of steps.
// ReLU's kink flips units whose input is within rounding of zero, a gradient jump that training
// can amplify: over long runs of wider models the same runs drift apart (docs/design-notes.md).
enum class Activation { kTanh, kRelu };

struct BatchStats {
  double lossSum = 0;
  double correct = 0;
  double count = 0;
};

class Mlp {
 public:
  // widths: input dimension, hidden widths..., number of classes.
  explicit Mlp(const std::vector<size_t>& widths, Activation activation = Activation::kTanh);

  // He-uniform weights from `seed`, zero biases.
  void initialize(uint64_t seed);

  std::vector<Linear>& layers() { return layers_; }
  const std::vector<Linear>& layers() const { return layers_; }
  size_t parameterCount() const;

  // Forward pass over n rows of x (n x input dimension); keeps what backward() needs.
  void forward(const float* x, size_t n);

  // Softmax cross-entropy of the last forward pass against `labels`. Also stores the gradient of
  // scale x (sum of the losses) with respect to the logits: scale = 1 / batch gives the batch mean.
  BatchStats lossAndGradient(const int32_t* labels, float scale);

  // Backward pass of the last forward(): adds the batch's gradients to dw and db (so consecutive
  // micro-batches accumulate), last layer first, and calls ready(layer) as soon as that layer's
  // gradients are complete, before the next layer down is computed.
  void backward(const std::function<void(size_t layer)>& ready);

  void zeroGradients();

 private:
  std::vector<Linear> layers_;
  Activation activation_;
  size_t rows_ = 0;
  std::vector<std::vector<float>>
      acts_;  // acts_[l]: input of layer l (n x in), after the activation; acts_.back(): logits
  std::vector<float> delta_, deltaBelow_;  // gradient w.r.t. the current layer's output, and below it
};

}  // namespace ddp_train
