#include "perf/perf_common.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>

#include "kernels/dtype.h"

namespace lockstep::perf {

bool parseSize(const char* s, size_t* out) {
  // Digits first: strtod would take "-8" (which became 2^64 - 8 and overran the buffers sized
  // from it), " 8" and "inf". (It still reads "0x10" and "1e2" as 16 and 100.)
  if (!s || *s < '0' || *s > '9') return false;
  char* end = nullptr;
  double v = std::strtod(s, &end);
  double unit = 1;
  switch (*end) {
    case 'K':
    case 'k':
      unit = 1024.0;
      break;
    case 'M':
    case 'm':
      unit = 1024.0 * 1024.0;
      break;
    case 'G':
    case 'g':
      unit = 1024.0 * 1024.0 * 1024.0;
      break;
    default:
      unit = 0;
      break;
  }
  if (unit != 0) ++end;
  if (*end != '\0') return false;  // "1T", "64KiB", "8 "
  v *= unit != 0 ? unit : 1;
  if (!(v < 0x1p50)) return false;  // a PiB and more, or not a number: no buffer is that large
  *out = static_cast<size_t>(v);
  return true;
}

namespace {

// why == nullptr: asked for (-h), on stdout, exit 0.
[[noreturn]] void usage(const char* program, const char* why) {
  if (why) std::fprintf(stderr, "%s: %s\n", program, why);
  std::fprintf(
      why ? stderr : stdout,
      "usage: %s [-b minBytes] [-e maxBytes] [-f factor] [-n iters] [-w warmup] [-t targetBytes]\n"
      "       [-m minIters|host|device] [-c 0|1] [-d dtype|all] [-o sum|prod|max|min|avg|all] [-r root] [-a algo]\n"
      "       [-T threads]  (ranks as threads of this process instead of processes under a launcher)\n",
      program);
  std::exit(why ? 2 : 0);
}

}  // namespace

Args parseArgs(int argc, char** argv, const char* program) {
  Args a;
  std::string k;  // the option being read, and its value
  const char* v = nullptr;
  auto size = [&](size_t* out) {
    if (!parseSize(v, out)) usage(program, (k + " " + v + ": not a size (e.g. 8, 64K, 256M, 1G)").c_str());
  };
  auto integer = [&](int* out) {
    char* end = nullptr;
    long n = std::strtol(v, &end, 10);
    if (end == v || *end != '\0' || n < -1000000000L || n > 1000000000L) {
      usage(program, (k + " " + v + ": not an integer").c_str());
    }
    *out = static_cast<int>(n);
  };
  // -d and -o: "all" (every value of the enum) or one name.
  auto allOrOne = [&](auto* out, int count, auto parse, const char* what) {
    using T = typename std::remove_pointer_t<decltype(out)>::value_type;
    out->clear();
    if (std::strcmp(v, "all") == 0) {
      for (int i = 0; i < count; ++i) out->push_back(static_cast<T>(i));
      return;
    }
    T one;
    if (!parse(v, &one)) usage(program, ("unknown " + std::string(what) + " " + v).c_str());
    out->push_back(one);
  };
  // One table of the options and what each value sets, so that the unknown-option check (made
  // before the missing-value one: a stray last "-x" is unknown, not missing its value) and the
  // parsing cannot drift apart.
  const std::pair<const char*, std::function<void()>> options[] = {
      {"-b", [&] { size(&a.minBytes); }},
      {"-e", [&] { size(&a.maxBytes); }},
      {"-f", [&] { size(&a.factor); }},
      {"-n", [&] { integer(&a.iters); }},
      {"-w", [&] { integer(&a.warmup); }},
      {"-t", [&] { size(&a.targetBytes); }},
      {"-m",
       [&] {
         if (std::strcmp(v, "device") == 0 || std::strcmp(v, "host") == 0) {
           a.deviceMemory = std::strcmp(v, "device") == 0;
         } else {
           integer(&a.minIters);
         }
       }},
      {"-c",
       [&] {
         int c = 0;
         integer(&c);
         a.check = c != 0;
       }},
      {"-a", [&] { a.algo = v; }},
      {"-T", [&] { integer(&a.threads); }},
      {"-r", [&] { integer(&a.root); }},
      {"-d", [&] { allOrOne(&a.types, lockstepNumTypes, parseDataType, "dtype"); }},
      {"-o", [&] { allOrOne(&a.ops, lockstepNumOps, parseRedOp, "op"); }},
  };
  for (int i = 1; i < argc; i += 2) {
    k = argv[i];
    if (k == "-h" || k == "--help") usage(program, nullptr);
    const auto* opt = std::find_if(std::begin(options), std::end(options), [&](const auto& o) { return k == o.first; });
    if (opt == std::end(options)) usage(program, ("unknown option " + k).c_str());
    if (i + 1 >= argc) usage(program, ("missing value for " + k).c_str());
    v = argv[i + 1];
    opt->second();
  }
  if (a.factor < 2) usage(program, "-f must be 2 or more (each size is the one before times -f)");
  if (a.minBytes == 0 || a.maxBytes == 0) usage(program, "-b and -e must be positive sizes (e.g. 8, 64K, 256M)");
  if (a.maxBytes < a.minBytes) usage(program, "-e is below -b");
  if (a.iters < 0 || a.minIters < 1) usage(program, "-n must be >= 0 and -m >= 1");
  if (a.warmup < -1) usage(program, "-w must be >= 0 (or -1: the default)");
  // nccl-tests' -t is threads per process and -T a timeout: here -t is the bytes each size moves
  // and -T the ranks as threads. A small -t or a -T under a launcher is such a flag misread.
  if (a.targetBytes < 1024) {
    usage(program,
          "-t is the bytes each size moves here (at least 1K; e.g. 1G); nccl-tests' -t, threads per process, is -T");
  }
  if (a.threads < 0 || a.threads > 256) usage(program, "-T must be in [1, 256] (or 0: one rank per process)");
  if (const char* world = std::getenv("LOCKSTEP_WORLD_SIZE"); a.threads > 0 && world && std::atoi(world) > 1) {
    usage(program,
          "-T runs every rank as a thread of this one process, and this process is one rank of a launched job "
          "(LOCKSTEP_WORLD_SIZE is set): each would be a separate job (nccl-tests' -T, a timeout, has no "
          "equivalent here)");
  }
  return a;
}

std::vector<size_t> sweepSizes(const Args& a, size_t elemBytes) {
  std::vector<size_t> v;
  for (size_t s = a.minBytes; s <= a.maxBytes; s *= a.factor) {
    const size_t b = s / elemBytes * elemBytes;  // never above -e: a size under one element is skipped
    if (b > 0 && (v.empty() || v.back() != b)) v.push_back(b);
    if (s > a.maxBytes / a.factor) break;  // the next size would overflow or pass the end
  }
  return v;
}

int itersFor(const Args& a, size_t bytes) {
  if (a.iters > 0) return a.iters;
  size_t it = a.targetBytes / std::max<size_t>(bytes, 1);
  return static_cast<int>(std::min<size_t>(std::max<size_t>(it, a.minIters), a.maxIters));
}

// A tenth of the timed calls, and at least as many as there are, up to 64: a size's first calls
// include the measured tuner's trial of it (src/algo/measured_tuner.h: 50 calls and the agreement
// at the largest sizes it tries, at most 200 at the smallest, where a tenth is 200), a one-off to
// keep out of the timing.
int warmupFor(const Args& a, int iters) {
  return a.warmup >= 0 ? a.warmup : std::max({2, iters / 10, std::min(iters, 64)});
}

void printHeader(const char* title, int nranks, const Args& a) {
  std::printf("# %s, nranks %d, algorithm %s, check %d\n", title, nranks, a.algo.c_str(), a.check ? 1 : 0);
  const std::string iters = a.iters > 0 ? std::to_string(a.iters)
                                        : "adaptive (-t " + std::to_string(a.targetBytes) + " bytes a size, " +
                                              std::to_string(a.minIters) + "-" + std::to_string(a.maxIters) + ")";
  const std::string warmup = a.warmup >= 0 ? std::to_string(a.warmup) : "max(2, iters / 10, min(iters, 64))";
  std::printf("# iterations %s, warm-up %s\n", iters.c_str(), warmup.c_str());
  // The measured tuner's trial of a size (up to 200 calls) belongs in the warm-up, which by
  // default absorbs it: with a short -w its calls, some of slower algorithms, were timed
  // (2x the time at 256 B with nccl-tests' -n 20 -w 5).
  const char* tuner = std::getenv("LOCKSTEP_TUNER");
  if (a.warmup >= 0 && a.warmup < 200 && a.algo == "tuned" && !(tuner && std::strcmp(tuner, "model") == 0)) {
    std::printf(
        "# note: -w %d is shorter than the measured tuner's trial of a size (up to 200 calls at small sizes): "
        "those calls are timed; leave -w out, or set LOCKSTEP_TUNER=model or -a\n",
        a.warmup);
  }
  std::printf("#%57s %31s %31s\n", "", "out-of-place", "in-place");
  std::printf("#%12s %14s %9s %6s %6s %10s %8s %8s %6s %10s %8s %8s %6s\n", "size", "count", "type", "redop", "root",
              "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong");
  std::printf("#%12s %14s %9s %6s %6s %10s %8s %8s %6s %10s %8s %8s %6s\n", "(B)", "(elements)", "", "", "", "(us)",
              "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "");
  std::fflush(stdout);
}

void printRow(size_t bytes, size_t count, const char* type, const char* op, int root, double busFactor, double oopUs,
              size_t oopWrong, double ipUs, size_t ipWrong, bool checked) {
  auto algbw = [&](double us) { return us > 0 ? bytes / (us * 1e-6) / 1e9 : 0.0; };
  // Unchecked (-c 0), as nccl-tests: N/A, not a count of 0 that nobody took.
  auto wrong = [&](size_t n) { return checked ? std::to_string(n) : std::string("N/A"); };
  std::printf(" %12zu %14zu %9s %6s %6d %10.3f %8.3f %8.3f %6s", bytes, count, type, op, root, oopUs, algbw(oopUs),
              algbw(oopUs) * busFactor, wrong(oopWrong).c_str());
  if (ipUs < 0) {
    std::printf(" %10s %8s %8s %6s\n", "n/a", "n/a", "n/a", "n/a");
  } else {
    std::printf(" %10.3f %8.3f %8.3f %6s\n", ipUs, algbw(ipUs), algbw(ipUs) * busFactor, wrong(ipWrong).c_str());
  }
  std::fflush(stdout);
}

}  // namespace lockstep::perf
