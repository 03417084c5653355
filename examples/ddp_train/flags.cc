#include "flags.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

namespace ddp_train {

const char* usage() {
  return "usage: lockstep-run -n N ddp_train [flags]\n"
         "  --steps S            optimizer steps (500)\n"
         "  --global-batch B     samples per step over all ranks (256); a multiple of N x K\n"
         "  --accumulate K       micro-batches per step; the first K-1 run under noSync (1)\n"
         "  --optimizer sgd|adam SGD with momentum, or Adam (sgd)\n"
         "  --lr LR              learning rate (sgd 0.1, adam 0.005)\n"
         "  --momentum M         SGD momentum (0.9)\n"
         "  --scale-lr           linear scaling: lr x B / 256\n"
         "  --warmup W           linear learning-rate warm-up over W steps (0)\n"
         "  --zero1              ZeRO-1: reduce-scatter, update a shard, all-gather\n"
         "  --compress none|bf16|fp16  gradient wire format (none)\n"
         "  --bucket-mb MB       bucket size in MiB, fractions allowed (25)\n"
         "  --no-rebucket        keep the first bucket plan\n"
         "  --seed S             data, shuffling and initialisation seed (1)\n"
         "  --dump-params FILE   rank 0 writes every parameter, registration order, raw float32 LE\n"
         "  --data mixture|spirals  Gaussian mixture (--dim D, --spread S) or 2-D spirals (mixture)\n"
         "  --dim D --spread S   mixture dimension and noise around each class centre (16, 1.0)\n"
         "  --hidden H --layers L --classes C   model: L hidden layers of width H (64, 3); classes (8)\n"
         "  --activation tanh|relu  between the layers (tanh)\n"
         "  --samples N --eval-samples M        data set sizes (100000, 10000)\n"
         "  --log-every S        print the training loss every S steps (50)\n"
         "  --verbose            print the bucket plans\n";
}

namespace {

size_t toSize(const std::string& flag, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || v[0] == '-') {
    throw std::invalid_argument(flag + " wants a non-negative integer, got '" + v + "'");
  }
  return static_cast<size_t>(x);
}

double toDouble(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !std::isfinite(x) || x < 0) {
    throw std::invalid_argument(flag + " wants a non-negative number, got '" + v + "'");
  }
  return x;
}

}  // namespace

Flags parseFlags(int argc, char** argv, bool* help) {
  Flags f;
  *help = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i], value;
    bool inlineValue = false;
    if (const size_t eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      inlineValue = true;
    }
    auto next = [&]() -> std::string {
      if (inlineValue) return value;
      if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--help" || flag == "-h") {
      *help = true;
    } else if (flag == "--steps") {
      f.steps = toSize(flag, next());
    } else if (flag == "--global-batch") {
      f.globalBatch = toSize(flag, next());
    } else if (flag == "--accumulate") {
      f.accumulate = toSize(flag, next());
    } else if (flag == "--seed") {
      f.seed = toSize(flag, next());
    } else if (flag == "--optimizer") {
      f.optimizer = next();
    } else if (flag == "--lr") {
      f.lr = static_cast<float>(toDouble(flag, next()));
    } else if (flag == "--momentum") {
      f.momentum = static_cast<float>(toDouble(flag, next()));
    } else if (flag == "--scale-lr") {
      f.scaleLr = true;
    } else if (flag == "--warmup") {
      f.warmup = toSize(flag, next());
    } else if (flag == "--zero1") {
      f.zero1 = true;
    } else if (flag == "--compress") {
      f.compress = next();
    } else if (flag == "--bucket-mb") {
      f.bucketMb = toDouble(flag, next());
    } else if (flag == "--no-rebucket") {
      f.rebucket = false;
    } else if (flag == "--dump-params") {
      f.dumpParams = next();
    } else if (flag == "--hidden") {
      f.hidden = toSize(flag, next());
    } else if (flag == "--layers") {
      f.layers = toSize(flag, next());
    } else if (flag == "--activation") {
      f.activation = next();
    } else if (flag == "--data") {
      f.data = next();
    } else if (flag == "--dim") {
      f.dim = toSize(flag, next());
    } else if (flag == "--spread") {
      f.spread = toDouble(flag, next());
    } else if (flag == "--classes") {
      f.classes = toSize(flag, next());
    } else if (flag == "--samples") {
      f.samples = toSize(flag, next());
    } else if (flag == "--eval-samples") {
      f.evalSamples = toSize(flag, next());
    } else if (flag == "--log-every") {
      f.logEvery = toSize(flag, next());
    } else if (flag == "--verbose") {
      f.verbose = true;
    } else {
      throw std::invalid_argument("unknown flag '" + flag + "' (--help lists them)");
    }
  }
  if (f.accumulate == 0) throw std::invalid_argument("--accumulate must be at least 1");
  if (f.globalBatch == 0) throw std::invalid_argument("--global-batch must be at least 1");
  if (f.hidden == 0 || f.classes < 2) throw std::invalid_argument("--hidden must be >= 1 and --classes >= 2");
  if (f.data != "mixture" && f.data != "spirals") {
    throw std::invalid_argument("--data must be mixture or spirals, got '" + f.data + "'");
  }
  if (f.activation != "tanh" && f.activation != "relu") {
    throw std::invalid_argument("--activation must be tanh or relu, got '" + f.activation + "'");
  }
  if (f.dim == 0) throw std::invalid_argument("--dim must be at least 1");
  if (f.optimizer != "sgd" && f.optimizer != "adam") {
    throw std::invalid_argument("--optimizer must be sgd or adam, got '" + f.optimizer + "'");
  }
  if (f.lr == 0) f.lr = f.optimizer == "adam" ? 0.005f : 0.1f;
  return f;
}

}  // namespace ddp_train
