// A rank program for the multi-process tests: runs every requested collective x dtype x op x
// count x root, in place and out of place, and checks every element against the exact result.
// Exits 1 on any wrong value, 2 on an API error. Start it under lockstep-run.
//
//   mp_check [--colls all|allreduce,...] [--types all|float32,...] [--ops all|sum,...]
//            [--counts 0,1,N-1,1000003] [--block-counts 0,1,N-1,10007] [--large COUNT]
//     --counts        counts for all-reduce, broadcast, reduce and send/recv
//     --block-counts  per-rank block counts for reduce-scatter, all-gather and all-to-all
//     --large COUNT   adds float32 sum, bfloat16 sum and int8 max all-reduces of COUNT elements
//   Every root is used for the rooted collectives.
//
//   mp_check --mode late     rank 1 joins the all-reduce 1.5 s late; rank 0 must wait without
//                            burning its core (exit 1 if it used over 25% of a core)
//   mp_check --mode absent   the last rank never calls the all-reduce; every other rank must get
//                            lockstepTimeout (set LOCKSTEP_TIMEOUT), rank 0 naming the absent rank
//   mp_check --mode last-send  the last rank sends 8 MiB to rank 0 and destroys its communicator
//                            at once, as a job's last call does; rank 0 must receive it all,
//                            whatever reaches it first (the data or the goodbye)
//   mp_check --mode exit-after-send  the same with 1 MiB, which the last rank's send finishes
//                            alone (it fits the link's buffers), and it returns from main without
//                            a destroy, as scripts do; rank 0 comes to its receive 0.5 s later
//                            and must receive it all
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "perf/collectives.h"

using namespace lockstep;
using perf::Coll;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

int rank = 0, nranks = 1;

int fail(lockstepResult_t r, const char* what) {
  std::fprintf(stderr, "mp_check rank %d: %s: %s: %s\n", rank, what, lockstepGetErrorString(r),
               lockstepGetLastError(nullptr));
  return 2;
}

double threadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int lateMode(lockstepComm_t comm) {
  float x = 1;
  if (rank == 1) usleep(1500 * 1000);
  double cpu0 = threadCpuSeconds();
  auto t0 = std::chrono::steady_clock::now();
  lockstepResult_t r = lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comm, nullptr);
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double cpu = threadCpuSeconds() - cpu0;
  if (r != lockstepSuccess) return fail(r, "allreduce");
  if (rank == 0) std::printf("mp_check: waited %.3f s using %.3f s of CPU\n", wall, cpu);
  lockstepCommDestroy(comm);
  return (rank == 0 && (wall < 1.0 || cpu > 0.25 * wall)) ? 1 : 0;
}

int lastSendMode(lockstepComm_t comm, bool destroy) {
  const size_t count = destroy ? size_t{2} << 20 : size_t{256} << 10;  // 8 MiB or 1 MiB of int32
  std::vector<int32_t> buf(count);
  lockstepResult_t r = lockstepSuccess;
  if (rank == nranks - 1) {
    for (size_t i = 0; i < count; ++i) buf[i] = static_cast<int32_t>(i * 7 + 3);
    r = lockstepSend(buf.data(), count, lockstepInt32, 0, comm, nullptr);
    if (!destroy) return r == lockstepSuccess ? 0 : fail(r, "last send");  // leaves comm to the exit
  } else if (rank == 0) {
    if (!destroy) usleep(500 * 1000);
    r = lockstepRecv(buf.data(), count, lockstepInt32, nranks - 1, comm, nullptr);
  }
  if (r != lockstepSuccess) return fail(r, "last send/recv");
  lockstepCommDestroy(comm);
  if (rank != 0) return 0;
  for (size_t i = 0; i < count; ++i) {
    if (buf[i] != static_cast<int32_t>(i * 7 + 3)) {
      std::printf("mp_check rank 0: element %zu of the last message is wrong\n", i);
      return 1;
    }
  }
  std::printf("mp_check: the last message arrived whole\n");
  return 0;
}

int absentMode(lockstepComm_t comm) {
  float x = 1;
  if (rank == nranks - 1) {
    usleep(4 * 1000 * 1000);  // outlive the others' timeout, then leave
    lockstepCommDestroy(comm);
    return 0;
  }
  auto t0 = std::chrono::steady_clock::now();
  lockstepResult_t r = lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comm, nullptr);
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string msg = lockstepGetLastError(comm);
  std::printf("mp_check rank %d: result %d after %.2f s: %s\n", rank, static_cast<int>(r), wall, msg.c_str());
  lockstepCommDestroy(comm);
  bool named = msg.find("rank " + std::to_string(nranks - 1)) != std::string::npos;
  return r == lockstepTimeout && (rank != 0 || named) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<Coll> colls(std::begin(perf::kAllColls), std::end(perf::kAllColls));
  std::vector<lockstepDataType_t> types;
  std::vector<lockstepRedOp_t> ops;
  std::string countSpec = "0,1,N-1,1000003", blockSpec = "0,1,N-1,10007", mode = "check";
  size_t large = 0;
  for (int t = 0; t < lockstepNumTypes; ++t) types.push_back(static_cast<lockstepDataType_t>(t));
  for (int o = 0; o < lockstepNumOps; ++o) ops.push_back(static_cast<lockstepRedOp_t>(o));
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--colls" && v != "all") {
      colls.clear();
      for (auto& s : split(v)) {
        for (Coll c : perf::kAllColls) {
          if (s == perf::collName(c)) colls.push_back(c);
        }
      }
    } else if (k == "--types" && v != "all") {
      types.clear();
      for (auto& s : split(v)) {
        lockstepDataType_t t;
        if (!parseDataType(s.c_str(), &t)) return std::fprintf(stderr, "bad type %s\n", s.c_str()), 2;
        types.push_back(t);
      }
    } else if (k == "--ops" && v != "all") {
      ops.clear();
      for (auto& s : split(v)) {
        lockstepRedOp_t o;
        if (!parseRedOp(s.c_str(), &o)) return std::fprintf(stderr, "bad op %s\n", s.c_str()), 2;
        ops.push_back(o);
      }
    } else if (k == "--counts") {
      countSpec = v;
    } else if (k == "--block-counts") {
      blockSpec = v;
    } else if (k == "--mode") {
      mode = v;
    } else if (k == "--large") {
      large = std::strtoull(v.c_str(), nullptr, 10);
    }
  }

  lockstepComm_t comm;
  // A failed init is reported under the rank this process was given, not as rank 0.
  if (const char* given = std::getenv("LOCKSTEP_RANK")) rank = std::atoi(given);
  lockstepResult_t r = lockstepCommInitFromEnv(&comm);
  if (r != lockstepSuccess) return fail(r, "init");
  lockstepCommUserRank(comm, &rank);
  lockstepCommCount(comm, &nranks);
  if (mode == "late") return lateMode(comm);
  if (mode == "absent") return absentMode(comm);
  if (mode == "last-send") return lastSendMode(comm, true);
  if (mode == "exit-after-send") return lastSendMode(comm, false);

  auto parseCounts = [&](const std::string& spec) {
    std::vector<size_t> v;
    for (auto& s : split(spec)) v.push_back(s == "N-1" ? size_t(nranks - 1) : std::strtoull(s.c_str(), nullptr, 10));
    return v;
  };
  struct Case {
    Coll coll;
    lockstepDataType_t type;
    lockstepRedOp_t op;
    size_t count;
    int root;
  };
  std::vector<Case> cases;
  for (Coll c : colls) {
    bool blocks = c == Coll::kReduceScatter || c == Coll::kAllGather || c == Coll::kAllToAll;
    for (auto t : types) {
      for (auto o : perf::collReduces(c) ? ops : std::vector<lockstepRedOp_t>{lockstepSum}) {
        for (size_t count : parseCounts(blocks ? blockSpec : countSpec)) {
          for (int root = perf::collRooted(c) ? 0 : -1; root < (perf::collRooted(c) ? nranks : 0); ++root) {
            cases.push_back({c, t, o, count, root});
          }
        }
      }
    }
  }
  if (large) {
    cases.push_back({Coll::kAllReduce, lockstepFloat32, lockstepSum, large, -1});
    cases.push_back({Coll::kAllReduce, lockstepBfloat16, lockstepSum, large, -1});
    cases.push_back({Coll::kAllReduce, lockstepInt8, lockstepMax, large, -1});
  }

  size_t wrong = 0, runs = 0;
  std::vector<char> a, b;
  for (const Case& c : cases) {
    Pattern pat(c.type, c.op, nranks);
    size_t elem = dataTypeSize(c.type);
    size_t bytes = std::max(perf::sendElems(c.coll, c.count, nranks), perf::recvElems(c.coll, c.count, nranks)) * elem;
    a.resize(bytes + 8);
    b.resize(bytes + 8);
    for (int inPlace = 0; inPlace < 2; ++inPlace) {
      if (inPlace && !perf::collHasInPlace(c.coll)) continue;
      auto bufs = perf::collBuffers(c.coll, a.data(), b.data(), c.count, rank, nranks, elem, inPlace);
      if (!inPlace) std::memset(b.data(), 0xee, bytes);
      perf::fillInput(c.coll, pat, bufs.send, c.count, rank, nranks, c.root);
      r = perf::runColl(c.coll, bufs.send, bufs.recv, c.count, c.type, c.op, c.root, comm, nullptr);
      if (r != lockstepSuccess) return fail(r, perf::collName(c.coll));
      size_t w = perf::countWrong(c.coll, pat, bufs.recv, c.count, rank, nranks, c.root);
      if (w) {
        std::fprintf(stderr, "mp_check rank %d: %zu wrong: %s %s %s count %zu root %d %s\n", rank, w,
                     perf::collName(c.coll), dataTypeName(c.type), redOpName(c.op), c.count, c.root,
                     inPlace ? "in-place" : "out-of-place");
      }
      wrong += w;
      ++runs;
    }
  }
  r = lockstepBarrier(comm, nullptr);
  if (r != lockstepSuccess) return fail(r, "barrier");
  r = lockstepCommDestroy(comm);
  if (r != lockstepSuccess) return fail(r, "destroy");
  if (rank == 0) std::printf("mp_check: %zu collectives on %d ranks, %zu wrong\n", runs, nranks, wrong);
  return wrong ? 1 : 0;
}
