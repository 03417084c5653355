// ddp_train: data-parallel training of an MLP classifier on generated data (a Gaussian mixture, or
// spirals), with the gradient synchronisation of lockstep/ddp.hpp. Start it under the launcher:
//
//   lockstep-run -n 4 ./ddp_train [--steps 500] [--global-batch 256] [--optimizer sgd|adam] ...
//
// Every rank trains a replica on its own shard of each batch; markReady is called per layer as the
// hand-written backward pass produces the gradients, so buckets are all-reduced while the lower
// layers still compute. The global batch is the same whatever the rank count, and the average of
// the ranks' gradients is the gradient of the whole batch: N = 1, 2 or 4 ranks train the same
// model, up to float rounding (tests/mp/ddp_test.cc checks this). Rank 0 prints the loss, the
// held-out accuracy and a hash of the final parameters, which every rank checks it shares.
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataset.h"
#include "flags.h"
#include "lockstep/ddp.hpp"
#include "mlp.h"
#include "optimizer.h"

namespace ddp_train {
namespace {

using lockstep::ddp::GradientSync;

struct Replica {
  std::vector<float*> data;  // every parameter, registration order
  std::vector<float*> grad;
  std::vector<size_t> count;
};

// Registers weight then bias of every layer, first layer first, and returns the same list.
Replica registerModel(Mlp& model, GradientSync& sync) {
  Replica r;
  for (size_t l = 0; l < model.layers().size(); ++l) {
    Linear& layer = model.layers()[l];
    for (int which = 0; which < 2; ++which) {
      std::vector<float>& p = which == 0 ? layer.w : layer.b;
      std::vector<float>& g = which == 0 ? layer.dw : layer.db;
      const std::string name = std::string("layer").append(std::to_string(l)).append(which == 0 ? ".weight" : ".bias");
      sync.registerParameter(name, p.data(), g.data(), p.size());
      r.data.push_back(p.data());
      r.grad.push_back(g.data());
      r.count.push_back(p.size());
    }
  }
  return r;
}

std::vector<Span> fullSpans(const Replica& r) {
  std::vector<Span> spans;
  size_t offset = 0;
  for (size_t i = 0; i < r.data.size(); ++i) {
    spans.push_back({r.data[i], r.grad[i], r.count[i], offset});
    offset += r.count[i];
  }
  return spans;
}

std::vector<Span> shardSpans(const Replica& r, const GradientSync& sync) {
  std::vector<Span> spans;
  for (const lockstep::ddp::ShardPiece& s : sync.shard()) {
    spans.push_back({r.data[s.param] + s.paramOffset, r.grad[s.param] + s.paramOffset, s.count, s.stateOffset});
  }
  return spans;
}

uint64_t hashParams(const Replica& r) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < r.data.size(); ++i) {
    const auto* c = reinterpret_cast<const unsigned char*>(r.data[i]);
    for (size_t k = 0; k < r.count[i] * sizeof(float); ++k) h = (h ^ c[k]) * 1099511628211ull;
  }
  return h;
}

void dumpParams(const Replica& r, const std::string& path) {
  static_assert(std::endian::native == std::endian::little, "--dump-params writes the host's floats as they are");
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  for (size_t i = 0; i < r.data.size(); ++i) {
    if (std::fwrite(r.data[i], sizeof(float), r.count[i], f) != r.count[i]) {
      std::fclose(f);
      throw std::runtime_error("short write to " + path);
    }
  }
  if (std::fclose(f) != 0) throw std::runtime_error("cannot close " + path);
}

void printPlan(const char* when, const GradientSync& sync) {
  std::printf("buckets %s: %zu:", when, sync.plan().buckets.size());
  for (const lockstep::ddp::Bucket& b : sync.plan().buckets) {
    std::printf(" [");
    for (size_t k = 0; k < b.params.size(); ++k) std::printf("%s%zu", k ? "," : "", b.params[k]);
    std::printf("]");
  }
  std::printf("\n");
}

// Sums the stats over ranks.
BatchStats reduceStats(lockstep::Comm& comm, const BatchStats& s) {
  double v[3] = {s.lossSum, s.correct, s.count};
  comm.allReduce(v, v, 3, lockstep::Op::kSum);
  return {v[0], v[1], v[2]};
}

BatchStats evaluate(Mlp& model, const Dataset& data, int rank, int nranks) {
  BatchStats total;
  std::vector<float> x;
  std::vector<int32_t> y;
  for (size_t i = static_cast<size_t>(rank); i < data.size();) {
    x.clear();
    y.clear();
    for (; i < data.size() && y.size() < 2048; i += static_cast<size_t>(nranks)) {
      x.insert(x.end(), data.x.begin() + i * data.dim, data.x.begin() + (i + 1) * data.dim);
      y.push_back(data.y[i]);
    }
    model.forward(x.data(), y.size());
    BatchStats s = model.lossAndGradient(y.data(), 0.0f);
    total.lossSum += s.lossSum;
    total.correct += s.correct;
    total.count += s.count;
  }
  return total;
}

int train(const Flags& f) {
  lockstep::Comm comm = lockstep::Comm::fromEnv();
  const int rank = comm.rank(), nranks = comm.size();
  const size_t ranks = static_cast<size_t>(nranks);
  if (f.globalBatch % (ranks * f.accumulate) != 0) {
    throw std::invalid_argument("--global-batch " + std::to_string(f.globalBatch) + " is not a multiple of " +
                                std::to_string(nranks) + " ranks x --accumulate " + std::to_string(f.accumulate));
  }
  const size_t localBatch = f.globalBatch / ranks, micro = localBatch / f.accumulate;

  const uint64_t heldSeed = f.seed ^ 0x5eedf00dull;
  const bool spirals = f.data == "spirals";
  const Dataset train = spirals ? makeSpirals(f.samples, f.classes, 0.04, f.seed)
                                : makeGaussianMixture(f.samples, f.classes, f.dim, f.spread, f.seed, f.seed + 1);
  const Dataset held = spirals ? makeSpirals(f.evalSamples, f.classes, 0.04, heldSeed)
                               : makeGaussianMixture(f.evalSamples, f.classes, f.dim, f.spread, f.seed, heldSeed);
  std::vector<size_t> widths{train.dim};
  for (size_t l = 0; l < f.layers; ++l) widths.push_back(f.hidden);
  widths.push_back(f.classes);
  Mlp model(widths, f.activation == "relu" ? Activation::kRelu : Activation::kTanh);
  // Each rank starts from its own random weights: broadcastParameters() has to make them equal.
  model.initialize(f.seed * 1000003 + static_cast<uint64_t>(rank));

  lockstep::ddp::Options options;
  options.bucketBytes = static_cast<size_t>(f.bucketMb * 1024 * 1024);
  options.compression = lockstep::ddp::parseCompression(f.compress);
  options.zero1 = f.zero1;
  options.rebucket = f.rebucket;
  GradientSync sync(comm, options);
  const Replica replica = registerModel(model, sync);
  sync.broadcastParameters();
  if (f.verbose && rank == 0) printPlan("initially", sync);

  std::unique_ptr<Optimizer> optimizer = makeOptimizer(f.optimizer, f.momentum);
  const float baseLr = f.scaleLr ? f.lr * static_cast<float>(f.globalBatch) / 256.0f : f.lr;
  ShardedSampler sampler(train.size(), rank, nranks, f.seed);
  const size_t stepsPerEpoch = sampler.indices().size() / localBatch;
  if (stepsPerEpoch == 0) throw std::invalid_argument("--global-batch is larger than the data set");
  if (rank == 0) {
    std::printf(
        "ddp_train: %d ranks, %zu parameters, global batch %zu (%zu per rank, %zu micro-batches), %s%s, "
        "%s gradients, %zu steps per epoch\n",
        nranks, model.parameterCount(), f.globalBatch, localBatch, f.accumulate, f.optimizer.c_str(),
        f.zero1 ? " + ZeRO-1" : "", f.compress.c_str(), stepsPerEpoch);
  }

  std::vector<float> x(micro * train.dim);
  std::vector<int32_t> y(micro);
  BatchStats window;
  uint64_t epoch = 0;
  const auto start = std::chrono::steady_clock::now();
  for (size_t step = 0; step < f.steps; ++step) {
    if (step / stepsPerEpoch != epoch) sampler.setEpoch(epoch = step / stepsPerEpoch);
    const size_t first = (step % stepsPerEpoch) * localBatch;
    for (size_t u = 0; u < f.accumulate; ++u) {
      std::optional<GradientSync::NoSync> accumulateOnly;
      if (u + 1 < f.accumulate) accumulateOnly.emplace(sync.noSync());
      for (size_t k = 0; k < micro; ++k) {
        const size_t s = sampler.indices()[first + u * micro + k];
        std::memcpy(&x[k * train.dim], &train.x[s * train.dim], train.dim * sizeof(float));
        y[k] = train.y[s];
      }
      model.forward(x.data(), micro);
      BatchStats s = model.lossAndGradient(y.data(), 1.0f / static_cast<float>(localBatch));
      window.lossSum += s.lossSum;
      window.correct += s.correct;
      window.count += s.count;
      model.backward([&](size_t layer) {
        sync.markReady(replica.data[2 * layer]);
        sync.markReady(replica.data[2 * layer + 1]);
      });
    }
    sync.finish();
    if (f.verbose && rank == 0 && step == 0) printPlan("after the first iteration", sync);

    const float lr =
        f.warmup > 0 && step < f.warmup ? baseLr * static_cast<float>(step + 1) / static_cast<float>(f.warmup) : baseLr;
    optimizer->step(f.zero1 ? shardSpans(replica, sync) : fullSpans(replica), lr);
    if (f.zero1) sync.allGatherParameters();
    model.zeroGradients();

    if (f.logEvery > 0 && ((step + 1) % f.logEvery == 0 || step + 1 == f.steps)) {
      BatchStats all = reduceStats(comm, window);
      if (rank == 0) {
        std::printf("step %zu/%zu: train loss %.6f accuracy %.4f lr %.5f\n", step + 1, f.steps, all.lossSum / all.count,
                    all.correct / all.count, lr);
      }
      window = {};
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  BatchStats eval = reduceStats(comm, evaluate(model, held, rank, nranks));
  // Replicas must hold the same bits: max(h) == ~max(~h) exactly when every rank has h.
  const uint64_t h = hashParams(replica);
  uint64_t both[2] = {h, ~h};
  comm.allReduce(both, both, 2, lockstep::Op::kMax);
  const bool same = both[0] == ~both[1];
  if (rank == 0) {
    std::printf("eval: loss %.9g accuracy %.4f on %.0f held-out samples\n", eval.lossSum / eval.count,
                eval.correct / eval.count, eval.count);
    std::printf("time: %.3f s for %zu steps (%.2f ms per step)\n", seconds, f.steps,
                f.steps ? 1000 * seconds / static_cast<double>(f.steps) : 0.0);
    std::printf("params: %zu floats, hash %016llx%s\n", model.parameterCount(), static_cast<unsigned long long>(h),
                same ? ", identical on every rank" : "");
    if (!f.dumpParams.empty()) dumpParams(replica, f.dumpParams);
  }
  if (!same) {
    std::fprintf(stderr, "ddp_train: rank %d: the replicas' parameters differ (hash %016llx)\n", rank,
                 static_cast<unsigned long long>(h));
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace ddp_train

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines reach lockstep-run as they are printed
  try {
    bool help = false;
    ddp_train::Flags flags = ddp_train::parseFlags(argc, argv, &help);
    if (help) {
      std::fputs(ddp_train::usage(), stdout);
      return 0;
    }
    return ddp_train::train(flags);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddp_train: %s\n", e.what());
    return 2;
  }
}
