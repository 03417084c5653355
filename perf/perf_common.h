// What every *_perf driver shares: nccl-tests' flags, the size sweep, the iteration policy and the
// table. Flags: -b min bytes, -e max bytes, -f factor, -n iterations (0 = adaptive: about -t
// bytes per size, between -m and 2000 iterations), -w warmup iterations, -c check (0/1),
// -d dtype (or "all"), -o op (or "all"), -r root, -a algorithm, -m host|device (where the
// buffers live; -m with a number is the minimum iterations of the adaptive policy: not nccl-tests'
// -m, which aggregates operations), -T threads (ranks as threads of one process; nccl-tests' -t).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "lockstep/lockstep.h"

namespace lockstep::perf {

struct Args {
  size_t minBytes = 8;
  size_t maxBytes = 256u << 20;
  size_t factor = 2;
  int iters = 0;    // 0: adaptive
  int warmup = -1;  // -1: max(2, iters / 10, min(iters, 64))
  size_t targetBytes = 1u << 30;
  int minIters = 5;
  int maxIters = 2000;
  bool check = true;
  std::vector<lockstepDataType_t> types{lockstepFloat32};
  std::vector<lockstepRedOp_t> ops{lockstepSum};
  std::string algo = "default";
  int root = 0;
  bool deviceMemory = false;  // -m device
  int threads = 0;            // -T N: N ranks as threads of this process (no launcher); 0: one rank
};

// Exits with a usage message on bad flags.
Args parseArgs(int argc, char** argv, const char* program);
// "64K", "1M", "2G", "1.5M" or plain bytes (powers of 1024) into *out; false for anything else
// (a sign, another suffix, trailing characters, a PiB or more).
bool parseSize(const char* s, size_t* out);
std::vector<size_t> sweepSizes(const Args& a, size_t elemBytes);
int itersFor(const Args& a, size_t bytes);
int warmupFor(const Args& a, int iters);

void printHeader(const char* title, int nranks, const Args& a);
// One row: out-of-place and in-place time (us, averaged over iterations and ranks) and #wrong
// (N/A where -c 0 left the results unchecked).
void printRow(size_t bytes, size_t count, const char* type, const char* op, int root, double busFactor, double oopUs,
              size_t oopWrong, double ipUs, size_t ipWrong, bool checked);

}  // namespace lockstep::perf
