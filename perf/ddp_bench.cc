// ddp_bench: how much of the gradient all-reduce the DDP layer hides behind the backward pass.
//
//   LOCKSTEP_TRACE=/tmp/ddp.%r.json lockstep-run -n 2 build/perf/ddp_bench [--layers 8 --width 1792]
//
// The model is ddp_train's MLP, by default 8 layers of 1792 x 1792 (25.7 M parameters, 103 MB of
// fp32 gradients). Three step times, each the median over --steps steps (the modes take turns) of
// the slowest rank:
//   compute  forward + backward, no communication;
//   serial   forward + backward, then every gradient marked ready and finish(): the all-reduce
//            runs after the backward pass, as without bucketing;
//   overlap  markReady per layer as backward produces it: full buckets start while earlier
//            layers are still computing.
// communication = serial - compute; hidden = (serial - overlap) / (serial - compute).
// With LOCKSTEP_TRACE set, rank 0 reads back the flight recorder of the buckets' communicator
// (GradientSync's split) after the run and lists, for the last overlapped step, when each
// bucket's all-reduce started relative to the end of backward.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "dataset.h"
#include "lockstep/ddp.hpp"
#include "mlp.h"
#include "src/core/config.h"
#include "src/core/flight_recorder.h"

namespace {

using lockstep::ddp::GradientSync;
using Clock = std::chrono::steady_clock;

struct Args {
  size_t layers = 8, width = 1792, batch = 8, steps = 10, warmup = 1;
  double bucketMb = 25;
  std::string compress = "none";
};

constexpr const char* kFlags =
    "--layers N (8) --width N (1792) --batch N (8) --steps N (10) --warmup N (1) --bucket-mb MB (25) "
    "--compress none|bf16|fp16 (none)";

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "-h" || std::string(argv[i]) == "--help") {
      std::printf("usage: %s %s\n", argv[0], kFlags);
      std::exit(0);
    }
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i], v = argv[i + 1];
    if (f == "--layers") {
      a.layers = std::stoul(v);
    } else if (f == "--width") {
      a.width = std::stoul(v);
    } else if (f == "--batch") {
      a.batch = std::stoul(v);
    } else if (f == "--steps") {
      a.steps = std::stoul(v);
    } else if (f == "--warmup") {
      a.warmup = std::stoul(v);
    } else if (f == "--bucket-mb") {
      a.bucketMb = std::stod(v);
    } else if (f == "--compress") {
      a.compress = v;
    } else {
      throw std::invalid_argument("unknown flag " + f + " (" + kFlags + ")");
    }
  }
  if (argc % 2 == 0)
    throw std::invalid_argument(std::string("flag without a value: ") + argv[argc - 1] + " (" + kFlags + ")");
  if (a.layers == 0 || a.width == 0 || a.batch == 0 || a.steps == 0) throw std::invalid_argument("sizes must be > 0");
  return a;
}

// Wall-clock microseconds: the flight recorder's "ts" clock.
int64_t wallUs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

enum class Mode { kCompute, kSerial, kOverlap };
const char* modeName(Mode m) { return m == Mode::kCompute ? "compute" : m == Mode::kSerial ? "serial" : "overlap"; }

struct Window {
  int64_t backwardStartUs = 0, backwardEndUs = 0;
};

int64_t field(const std::string& line, const std::string& key) {
  const size_t at = line.find("\"" + key + "\":");
  return at == std::string::npos ? -1 : std::atoll(line.c_str() + at + key.size() + 3);
}

std::string textField(const std::string& line, const std::string& key) {
  const std::string open = "\"" + key + "\":\"";
  const size_t at = line.find(open);
  if (at == std::string::npos) return "?";
  const size_t from = at + open.size();
  return line.substr(from, line.find('"', from) - from);
}

// Bucket all-reduces of the traced step, from the flight recorder (one event per line).
void explainTrace(const std::string& path, const Window& w, size_t buckets) {
  std::ifstream in(path);
  if (!in) {
    std::printf("trace: cannot read %s\n", path.c_str());
    return;
  }
  std::printf("trace %s: last overlapped step, backward %.1f ms long; bucket all-reduces (%zu per step):\n",
              path.c_str(), (w.backwardEndUs - w.backwardStartUs) / 1000.0, buckets);
  size_t before = 0, seen = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"kind\":\"allreduce\"") == std::string::npos) continue;
    // GradientSync's own checks (the accumulation window's, the used-parameter map) take the
    // max; buckets sum or average. Counted as a bucket, the window check pushed the last one out.
    if (textField(line, "op") == "max") continue;
    const int64_t ts = field(line, "ts"), dur = field(line, "dur"), queued = field(line, "queued_us");
    if (ts < w.backwardStartUs) continue;
    if (seen == buckets) break;
    ++seen;
    before += ts < w.backwardEndUs;
    std::printf("  %s: queued %+.1f ms, started %+.1f ms, ran %.1f ms (relative to the end of backward)\n",
                textField(line, "name").c_str(), (queued - w.backwardEndUs) / 1000.0, (ts - w.backwardEndUs) / 1000.0,
                dur / 1000.0);
  }
  std::printf("trace: %zu of %zu bucket all-reduces started before backward ended\n", before, seen);
}

struct Result {
  int rank = 0;
  Window lastOverlap;  // backward of the last overlapped step
  size_t buckets = 0;
};

// Runs the three modes. Returns once the communicator is destroyed, which writes the trace.
Result bench(const Args& a) {
  Result result;
  lockstep::Comm comm = lockstep::Comm::fromEnv();
  const int rank = comm.rank(), nranks = comm.size();
  result.rank = rank;
  std::vector<size_t> widths(a.layers + 1, a.width);
  ddp_train::Mlp model(widths);
  model.initialize(42);
  lockstep::ddp::Options options;
  options.bucketBytes = static_cast<size_t>(a.bucketMb * 1024 * 1024);
  options.compression = lockstep::ddp::parseCompression(a.compress);
  GradientSync sync(comm, options);
  for (size_t l = 0; l < model.layers().size(); ++l) {
    ddp_train::Linear& layer = model.layers()[l];
    sync.registerParameter(std::string("w").append(std::to_string(l)), layer.w.data(), layer.dw.data(), layer.w.size());
    sync.registerParameter(std::string("b").append(std::to_string(l)), layer.b.data(), layer.db.data(), layer.b.size());
  }
  sync.broadcastParameters();

  ddp_train::Rng rng(7 + static_cast<uint64_t>(rank));
  std::vector<float> x(a.batch * a.width);
  std::vector<int32_t> y(a.batch);
  for (float& v : x) v = static_cast<float>(rng.normal());
  for (int32_t& v : y) v = static_cast<int32_t>(rng.below(a.width));
  const double gradMb = static_cast<double>(model.parameterCount()) * 4 / 1e6;
  if (rank == 0) {
    std::printf(
        "ddp_bench: %d ranks, %zu layers of %zu x %zu, %zu parameters (%.1f MB of gradients), batch %zu per "
        "rank, buckets: %s of at most %.1f MiB, %s on the wire\n",
        nranks, a.layers, a.width, a.width, model.parameterCount(), gradMb, a.batch,
        std::to_string(sync.plan().buckets.size()).c_str(), a.bucketMb, a.compress.c_str());
  }

  Window last;
  size_t earlyBuckets = 0, buckets = 0;
  auto step = [&](Mode mode) {
    comm.barrier();  // ranks start together, so a step's time is not a peer's lateness
    const auto t0 = Clock::now();
    model.forward(x.data(), a.batch);
    model.lossAndGradient(y.data(), 1.0f / static_cast<float>(a.batch));
    last.backwardStartUs = wallUs();
    model.backward([&](size_t l) {
      if (mode != Mode::kOverlap) return;
      sync.markReady(model.layers()[l].w.data());
      sync.markReady(model.layers()[l].b.data());
    });
    last.backwardEndUs = wallUs();
    if (mode == Mode::kSerial) {
      for (size_t p = sync.parameterCount(); p-- > 0;) sync.markReady(p);
    }
    if (mode != Mode::kCompute) {
      sync.finish();
      earlyBuckets = sync.lastStats().launchedEarly;
      buckets = sync.lastStats().buckets;
    }
    model.zeroGradients();
    double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    comm.allReduce(&seconds, &seconds, 1, lockstep::Op::kMax);
    return seconds;
  };

  // The modes take turns step by step, so a change in the machine's load (it is shared) moves all
  // three alike instead of skewing whichever mode ran during it.
  std::vector<double> times[3];
  size_t early = 0;
  for (size_t s = 0; s < a.warmup + a.steps; ++s) {
    for (Mode mode : {Mode::kCompute, Mode::kSerial, Mode::kOverlap}) {
      const double seconds = step(mode);
      if (mode == Mode::kOverlap) early = earlyBuckets;
      if (s >= a.warmup) times[static_cast<int>(mode)].push_back(seconds);
    }
  }
  double median[3];
  for (Mode mode : {Mode::kCompute, Mode::kSerial, Mode::kOverlap}) {
    std::vector<double>& t = times[static_cast<int>(mode)];
    std::sort(t.begin(), t.end());
    median[static_cast<int>(mode)] = t[t.size() / 2];
    if (rank == 0) {
      std::printf("%-8s step %8.1f ms  (min %.1f, max %.1f over %zu steps)", modeName(mode), 1000 * t[t.size() / 2],
                  1000 * t.front(), 1000 * t.back(), t.size());
      if (mode == Mode::kOverlap) std::printf("  %zu of %zu buckets launched during backward", early, buckets);
      std::printf("\n");
    }
  }
  const double comm1 = median[1] - median[0], hidden = comm1 > 0 ? (median[1] - median[2]) / comm1 : 0;
  if (rank == 0) {
    std::printf("communication after backward: %.1f ms; overlapped step saves %.1f ms: %.0f%% of it hidden\n",
                1000 * comm1, 1000 * (median[1] - median[2]), 100 * hidden);
  }
  result.lastOverlap = last;
  result.buckets = buckets;
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    const Result r = bench(parse(argc, argv));
    const char* trace = std::getenv("LOCKSTEP_TRACE");
    // The buckets run on the communicator GradientSync splits off the program's (its first split,
    // color 0: "split1c0"); the program's own holds only the bench's timing all-reduces.
    if (trace && *trace && r.rank == 0) {
      explainTrace(lockstep::tracePath(lockstep::Config::fromEnvironment(), 0, "split1c0"), r.lastOverlap, r.buckets);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddp_bench: %s\n", e.what());
    return 2;
  }
}
