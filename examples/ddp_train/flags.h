// Command-line flags of ddp_train.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ddp_train {

struct Flags {
  size_t steps = 500;
  size_t globalBatch = 256;  // samples per optimizer step, over all ranks and micro-batches
  uint64_t seed = 1;
  std::string optimizer = "sgd";
  float lr = 0;  // 0: the optimizer's default (sgd 0.1, adam 0.005)
  float momentum = 0.9f;
  bool scaleLr = false;  // linear scaling rule: lr x globalBatch / 256
  size_t warmup = 0;     // steps of linear warm-up
  bool zero1 = false;
  std::string compress = "none";
  size_t accumulate = 1;  // micro-batches per step
  double bucketMb = 25;
  bool rebucket = true;
  std::string dumpParams;
  size_t hidden = 64;
  size_t layers = 3;  // hidden layers
  std::string activation = "tanh";
  std::string data = "mixture";  // mixture | spirals
  size_t dim = 16;               // input dimension of the mixture (spirals are 2-D)
  double spread = 1.0;           // the mixture's noise around each centre
  size_t classes = 8;
  size_t samples = 100000;
  size_t evalSamples = 10000;
  size_t logEvery = 50;
  bool verbose = false;
};

// Parses argv; throws std::invalid_argument naming the bad flag. Sets help if --help was given.
Flags parseFlags(int argc, char** argv, bool* help);
const char* usage();

}  // namespace ddp_train
