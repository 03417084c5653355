// Multi-process tests: real processes started by lockstep-run, over real shared memory and real
// TCP sockets. Every run has a time bound; a hang fails the test.
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "tests/common/subprocess.h"

namespace lockstep {
namespace {

using testing::Process;
using testing::ProcResult;
using testing::run;

const std::string kRun = LOCKSTEP_RUN_PATH;
const std::string kCheck = MP_CHECK_PATH;

struct Params {
  int n;
  const char* transport;
};

class Collectives : public ::testing::TestWithParam<Params> {};

TEST_P(Collectives, EveryTypeOpCountInPlaceAndOut) {
  auto [n, transport] = GetParam();
  // Under ThreadSanitizer (10x slower) the same checks run on smaller buffers.
  std::vector<std::string> args = {kRun, "-n", std::to_string(n), kCheck, "--large", "16777216"};
  if (getenv("LOCKSTEP_TEST_QUICK")) {
    args = {kRun,
            "-n",
            std::to_string(n),
            kCheck,
            "--types",
            "float32,int8,bfloat16",
            "--counts",
            "0,1,N-1,10007",
            "--block-counts",
            "0,1,N-1,1001"};
  }
  ProcResult r =
      run(args, {std::string("LOCKSTEP_TRANSPORTS=") + transport, "LOCKSTEP_DEBUG=INFO", "LOCKSTEP_TIMEOUT=60"}, 240);
  ASSERT_FALSE(r.timedOut) << r.output;
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("0 wrong"), std::string::npos) << r.output;
  if (n > 1) {
    EXPECT_NE(r.output.find(std::string("via ") + transport), std::string::npos) << "transport not used: " << r.output;
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, Collectives,
                         ::testing::Values(Params{1, "shm"}, Params{2, "shm"}, Params{3, "shm"}, Params{4, "shm"},
                                           Params{5, "shm"}, Params{8, "shm"}, Params{2, "socket"}, Params{3, "socket"},
                                           Params{4, "socket"}, Params{5, "socket"}, Params{8, "socket"}),
                         [](const auto& info) {
                           return std::string(info.param.transport) + "_" + std::to_string(info.param.n);
                         });

// 8 ranks share 2 cores here: a rank waiting for a late peer must get off the CPU.
TEST(Waiting, ALateRankDoesNotMakeOthersBurnACore) {
  ProcResult r = run({kRun, "-n", "2", kCheck, "--mode", "late"}, {}, 60);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("using"), std::string::npos) << r.output;
}

TEST(Waiting, AnAbsentRankGivesATimeoutThatNamesIt) {
  ProcResult r = run({kRun, "-n", "3", kCheck, "--mode", "absent"}, {"LOCKSTEP_TIMEOUT=2"}, 60);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("timed out"), std::string::npos) << r.output;
}

// A rank that sends its last message and returns from main without destroying its communicator
// (as scripts do) leaves with a goodbye, said at exit: its peer, coming to the receive later,
// gets the message whole. It used to hear only the control connection close ("lost rank 1 ...
// (no goodbye)") and fail a receive whose data sat in its buffers.
TEST(Leaving, ARankThatExitsWithoutDestroyAfterItsLastSendLosesItsPeerNothing) {
  for (const char* transport : {"shm", "socket"}) {
    ProcResult r = run({kRun, "-n", "2", kCheck, "--mode", "exit-after-send"},
                       {std::string("LOCKSTEP_TRANSPORTS=") + transport, "LOCKSTEP_TIMEOUT=30"}, 60);
    EXPECT_EQ(r.code, 0) << transport << ": " << r.output;
    EXPECT_NE(r.output.find("the last message arrived whole"), std::string::npos) << transport << ": " << r.output;
  }
}

// Every *_perf driver: 2- and 4-rank sweeps, checked (#wrong must be 0), over shm and socket.
struct PerfParams {
  const char* driver;
  int n;
  const char* transport;
};
class PerfDrivers : public ::testing::TestWithParam<PerfParams> {};

TEST_P(PerfDrivers, SweepIsCorrect) {
  auto [driver, n, transport] = GetParam();
  std::string exe = std::string(PERF_DIR) + "/" + driver + "_perf";
  ProcResult r = run({kRun, "-n", std::to_string(n), exe, "-b", "8", "-e", "4M", "-f", "16", "-n", "3", "-w", "1", "-r",
                      std::to_string(n - 1), "-d", "all"},
                     {std::string("LOCKSTEP_TRANSPORTS=") + transport, "LOCKSTEP_TIMEOUT=60"}, 240);
  ASSERT_FALSE(r.timedOut) << r.output;
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("Out of bounds values : 0 OK"), std::string::npos) << r.output;
}

std::vector<PerfParams> perfParams() {
  std::vector<PerfParams> v;
  for (const char* d : {"allreduce", "reduce_scatter", "all_gather", "broadcast", "reduce", "sendrecv", "alltoall"}) {
    for (int n : {2, 4}) v.push_back({d, n, "shm"});
    v.push_back({d, 3, "socket"});
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Drivers, PerfDrivers, ::testing::ValuesIn(perfParams()), [](const auto& info) {
  return std::string(info.param.driver) + "_" + std::to_string(info.param.n) + "_" + info.param.transport;
});

// Every algorithm, forced with -a, through the drivers of the collectives it implements: real
// processes over shared memory (5 ranks: not a power of two) and sockets (4 ranks).
struct AlgoParams {
  const char* algorithm;
  const char* driver;
  int n;
  const char* transport;
};
class ForcedAlgorithms : public ::testing::TestWithParam<AlgoParams> {};

TEST_P(ForcedAlgorithms, SweepIsCorrect) {
  auto [algorithm, driver, n, transport] = GetParam();
  std::string exe = std::string(PERF_DIR) + "/" + driver + "_perf";
  ProcResult r = run({kRun, "-n", std::to_string(n), exe, "-b", "8", "-e", "2M", "-f", "32", "-n", "2", "-w", "1", "-a",
                      algorithm, "-d", "all"},
                     {std::string("LOCKSTEP_TRANSPORTS=") + transport, "LOCKSTEP_TIMEOUT=60"}, 240);
  ASSERT_FALSE(r.timedOut) << r.output;
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(std::string("algorithm ") + algorithm), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Out of bounds values : 0 OK"), std::string::npos) << r.output;
}

std::vector<AlgoParams> algoParams() {
  const std::pair<const char*, std::vector<const char*>> table[] = {
      {"ring", {"allreduce", "reduce_scatter", "all_gather"}},
      {"tree", {"allreduce", "broadcast", "reduce"}},
      {"recursive_doubling", {"allreduce"}},
      {"rabenseifner", {"allreduce"}},
      {"direct", {"allreduce", "alltoall"}},
      {"chain", {"broadcast", "reduce"}},
      {"ordered", {"allreduce", "reduce_scatter", "reduce"}}};
  std::vector<AlgoParams> v;
  for (const auto& [algorithm, drivers] : table) {
    for (const char* d : drivers) {
      v.push_back({algorithm, d, 5, "shm"});
      v.push_back({algorithm, d, 4, "socket"});
    }
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Algorithms, ForcedAlgorithms, ::testing::ValuesIn(algoParams()), [](const auto& info) {
  return std::string(info.param.algorithm) + "_" + info.param.driver + "_" + std::to_string(info.param.n) + "_" +
         info.param.transport;
});

// LOCKSTEP_DETERMINISTIC=1: one result hash whatever the forced algorithm and slot (slice) size.
std::string hashOf(int n, const std::vector<std::string>& env) {
  ProcResult r = run({kRun, "-n", std::to_string(n), HASH_CHECK_PATH}, env, 120);
  EXPECT_FALSE(r.timedOut) << r.output;
  EXPECT_EQ(r.code, 0) << r.output;
  auto at = r.output.find("hash_check: hash ");
  return at == std::string::npos ? "(none: " + r.output + ")" : r.output.substr(at + 17, 16);
}

TEST(Deterministic, EveryAlgorithmAndSlotSizeGivesTheSameHash) {
  for (int n : {4, 5}) {
    const std::string reference = hashOf(n, {"LOCKSTEP_DETERMINISTIC=1"});  // the tuner's picks
    for (const char* algorithm : {"ring", "tree", "recursive_doubling", "rabenseifner", "direct", "ordered"}) {
      for (const char* slot : {"4096", "1048576"}) {
        EXPECT_EQ(hashOf(n, {"LOCKSTEP_DETERMINISTIC=1", std::string("LOCKSTEP_ALGO=") + algorithm,
                             std::string("LOCKSTEP_SLOT_BYTES=") + slot}),
                  reference)
            << n << " ranks, " << algorithm << ", " << slot << "-byte slots";
      }
    }
    EXPECT_EQ(hashOf(n, {"LOCKSTEP_DETERMINISTIC=1", "LOCKSTEP_TRANSPORTS=socket"}), reference) << "sockets";
  }
}

// The check has teeth: without deterministic mode the ring and the tree sum in different orders,
// and the random data shows it.
TEST(Deterministic, TheDataSeesTheSummationOrder) {
  EXPECT_NE(hashOf(4, {"LOCKSTEP_ALGO=ring"}), hashOf(4, {"LOCKSTEP_ALGO=tree"}));
}

// A repeated all-reduce, once warm, neither allocates nor page-faults on the calling thread
// (issue 5: the steady state costs no allocation, fault or system call; strace counts the calls
// in perf/steady.sh).
TEST(SteadyState, RepeatedAllReduceNeitherAllocatesNorFaults) {
  if (std::string(STEADY_CHECK_PATH).empty()) GTEST_SKIP() << "malloc interposition is off under this sanitizer";
  for (const char* transport : {"shm", "socket"}) {
    ProcResult r = run({kRun, "-n", "2", STEADY_CHECK_PATH}, {std::string("LOCKSTEP_TRANSPORTS=") + transport}, 120);
    ASSERT_FALSE(r.timedOut) << r.output;
    EXPECT_EQ(r.code, 0) << transport << ":\n" << r.output;
    // The exit code holds the page faults too (except under UBSan: steady_check.cc says why).
    EXPECT_NE(r.output.find("1048576 B x 1000: 0 allocations"), std::string::npos) << r.output;
  }
}

// Several TCP streams per peer pair (LOCKSTEP_SOCKET_NSTREAMS): every collective stays exact,
// with slices small enough that each op spreads over every stream.
TEST(SocketStreams, EveryCollectiveIsExactOverFourStreams) {
  ProcResult r = run(
      {kRun, "-n", "3", kCheck, "--types", "float32,int8,float16", "--counts", "0,1,N-1,100003", "--block-counts",
       "0,1,N-1,30011"},
      {"LOCKSTEP_TRANSPORTS=socket", "LOCKSTEP_SOCKET_NSTREAMS=4", "LOCKSTEP_SLOT_BYTES=16K", "LOCKSTEP_TIMEOUT=60"},
      240);
  ASSERT_FALSE(r.timedOut) << r.output;
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("0 wrong"), std::string::npos) << r.output;
}

// Loopback data connections get reno (no pacing: src/net/socket.cc), every rank towards every
// peer, and LOCKSTEP_SOCKET_CC=system leaves the system's choice (nothing set, nothing logged).
TEST(SocketTransport, ConnectionsInsideTheHostUseRenoUnlessTheSystemsIsAskedFor) {
  for (const char* cc : {"", "system"}) {
    std::vector<std::string> env = {"LOCKSTEP_TRANSPORTS=socket", "LOCKSTEP_DEBUG=INFO", "LOCKSTEP_TIMEOUT=30"};
    if (*cc) env.push_back(std::string("LOCKSTEP_SOCKET_CC=") + cc);
    ProcResult r =
        run({kRun, "-n", "3", std::string(PERF_DIR) + "/allreduce_perf", "-b", "1M", "-e", "1M", "-c", "1"}, env, 60);
    ASSERT_FALSE(r.timedOut) << r.output;
    ASSERT_EQ(r.code, 0) << r.output;
    for (int rank = 0; rank < 3; ++rank) {
      for (int peer = 0; peer < 3; ++peer) {
        if (peer == rank) continue;
        const std::string line = "[" + std::to_string(rank) + "] ";
        const std::string says = "socket transport: reno congestion control to rank " + std::to_string(peer) + " (";
        bool found = false;
        std::istringstream lines(r.output);
        for (std::string l; std::getline(lines, l);)
          found |= l.rfind(line, 0) == 0 && l.find(says) != std::string::npos;
        EXPECT_EQ(found, *cc == 0) << "rank " << rank << " -> " << peer << ", LOCKSTEP_SOCKET_CC=" << cc << "\n"
                                   << r.output;
      }
    }
    EXPECT_EQ(r.output.find("WRONG"), std::string::npos) << r.output;
  }
}

// Device buffers across processes: the stream-ordered path over shm and over sockets, with the
// stand-in CUDA driver (tests/fakecuda/fake_cuda_driver.c).
TEST(DeviceStreams, ThreeProcessesGetTheRightResultOverShmAndSockets) {
  for (const char* transports : {"shm", "socket"}) {
    ProcResult r = run({kRun, "-n", "3", DEVICE_CHECK_PATH, FAKE_CUDA_PATH},
                       {"LOCKSTEP_TIMEOUT=30", std::string("LOCKSTEP_TRANSPORTS=") + transports}, 60);
    ASSERT_FALSE(r.timedOut) << r.output;
    EXPECT_EQ(r.code, 0) << transports << ": " << r.output;
    EXPECT_NE(r.output.find("device_check: ok (3 ranks)"), std::string::npos) << r.output;
  }
}

// cuda_ipc across processes: segments exported by IPC handle, opened by the other processes (the
// stand-in maps the owner's memfd through /proc), every call run as a "kernel" over them.
TEST(DeviceStreams, ThreeProcessesRunEveryCallOverCudaIpcHandles) {
  ProcResult r = run({kRun, "-n", "3", IPC_DEVICE_CHECK_PATH, FAKE_CUDA_PATH},
                     {"LOCKSTEP_TIMEOUT=30", "LOCKSTEP_CUDA_IPC_SLOT_BYTES=64K", "LOCKSTEP_DEBUG=INFO"}, 60);
  ASSERT_FALSE(r.timedOut) << r.output;
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("cuda_ipc on: 3 ranks"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("device_check: ok (3 ranks, every call a cuda_ipc kernel)"), std::string::npos) << r.output;
}

// The perf drivers' -m device, with the stand-in driver found as libcuda.so.1 on the library
// path: every collective's results checked through the device buffers' host shadows. On the
// staged path: the drivers would find the real kernel library (liblockstep_cuda) here, which the
// stand-in driver cannot run.
TEST(DeviceStreams, PerfDriversRunAndCheckOnDeviceMemory) {
  const std::string fake = FAKE_CUDA_PATH;
  const std::string dir = fake.substr(0, fake.rfind('/'));
  for (const char* coll :
       {"allreduce", "reduce_scatter", "all_gather", "broadcast", "reduce", "sendrecv", "alltoall"}) {
    ProcResult r = run({kRun, "-n", "2", std::string(PERF_DIR) + "/" + coll + "_perf", "-m", "device", "-b", "8", "-e",
                        "256K", "-f", "64", "-n", "3", "-w", "1"},
                       {"LD_LIBRARY_PATH=" + dir, "LOCKSTEP_TIMEOUT=30", "LOCKSTEP_CUDA_IPC=0"}, 60);
    ASSERT_FALSE(r.timedOut) << r.output;
    EXPECT_EQ(r.code, 0) << coll << ": " << r.output;
    EXPECT_NE(r.output.find("# memory: device 0 of 1"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("Out of bounds values : 0 OK"), std::string::npos) << coll << ": " << r.output;
  }
}

// -T: ranks as threads of one process (inproc links), no launcher.
TEST(PerfDrivers, RanksAsThreadsOfOneProcessWithT) {
  for (const char* coll : {"allreduce", "alltoall"}) {
    ProcResult r = run({std::string(PERF_DIR) + "/" + coll + "_perf", "-T", "3", "-b", "8", "-e", "1M", "-f", "32"},
                       {"LOCKSTEP_TIMEOUT=30"}, 60);
    ASSERT_FALSE(r.timedOut) << r.output;
    EXPECT_EQ(r.code, 0) << coll << ": " << r.output;
    EXPECT_NE(r.output.find("nranks 3"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("Out of bounds values : 0 OK"), std::string::npos) << coll << ": " << r.output;
  }
}

// perf/algo_sweep: a communicator per algorithm beside the tuned one (and a second ring, the
// noise control), timed in interleaved rounds; every communicator's result is checked in the
// first round (exit 1 on a wrong value).
TEST(PerfDrivers, AlgoSweepRunsEveryAlgorithmBesideTheTunedOne) {
  ProcResult r = run({kRun, "-n", "3", std::string(PERF_DIR) + "/algo_sweep", "-b", "16", "-e", "64K", "-f", "64", "-r",
                      "2", "-t", "0.2"},
                     {"LOCKSTEP_TIMEOUT=30"}, 60);
  ASSERT_FALSE(r.timedOut) << r.output;
  EXPECT_EQ(r.code, 0) << r.output;
  for (const char* column :
       {"tuned", "ring", "tree", "recursive_do", "rabenseifner", "direct", "ring-twin", "pick", "noise"})
    EXPECT_NE(r.output.find(column), std::string::npos) << column << "\n" << r.output;
  EXPECT_NE(r.output.find("     65536 "), std::string::npos) << "the last size's row\n" << r.output;
  EXPECT_EQ(r.output.find("WRONG"), std::string::npos) << r.output;
}

// Measured tuning between processes: 4 ranks make enough blocking calls of one size for a trial
// (200 at most) and its agreement, each call's result checked by the driver; every rank logs the
// same agreed figures and the same choice (LOCKSTEP_DEBUG=INFO), over shared memory and sockets.
TEST(MeasuredTuning, RanksInProcessesMakeTheSameDecisions) {
  for (const char* transport : {"shm", "socket"}) {
    ProcResult r =
        run({kRun, "-n", "4", std::string(PERF_DIR) + "/allreduce_perf", "-b", "64K", "-e", "64K", "-n", "300", "-w",
             "0", "-c", "1"},
            {"LOCKSTEP_DEBUG=INFO", std::string("LOCKSTEP_TRANSPORTS=") + transport, "LOCKSTEP_TIMEOUT=30"}, 120);
    ASSERT_FALSE(r.timedOut) << r.output;
    EXPECT_EQ(r.code, 0) << transport << ":\n" << r.output;
    // Lines look like "[2] host:pid:2 lockstep INFO tuner: allreduce of 65536 bytes on 4 ranks,
    // measured: ring 30.1 us, ... -> tree for 2052 calls (model: tree)".
    std::vector<std::vector<std::string>> decisions(4);
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) {
      const size_t at = line.find("tuner: ");
      if (line.size() < 3 || line[0] != '[' || at == std::string::npos || line.find("measured:") == std::string::npos)
        continue;
      const int rank = line[1] - '0';
      if (rank >= 0 && rank < 4) decisions[rank].push_back(line.substr(at));
    }
    ASSERT_FALSE(decisions[0].empty()) << transport << ": no measured decision logged\n" << r.output;
    for (int rank = 1; rank < 4; ++rank) EXPECT_EQ(decisions[rank], decisions[0]) << transport << ", rank " << rank;
    EXPECT_EQ(r.output.find("WRONG"), std::string::npos) << r.output;
  }
}

// 10,000 random collectives on 4 ranks, over shared memory and over sockets, each checked.
TEST(Soak, TenThousandRandomCollectives) {
  ProcResult r = run({kRun, "-n", "4", SOAK_CHECK_PATH, "--ops", getenv("LOCKSTEP_TEST_QUICK") ? "2000" : "10000",
                      "--seed", std::to_string(time(nullptr))},
                     {"LOCKSTEP_TIMEOUT=60"}, 280);
  ASSERT_FALSE(r.timedOut) << r.output;
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(", 0 wrong"), std::string::npos) << r.output;
  std::printf("%s", r.output.c_str());
}

TEST(Soak, TenThousandRandomCollectivesOverSockets) {
  ProcResult r = run({kRun, "-n", "4", SOAK_CHECK_PATH, "--ops", getenv("LOCKSTEP_TEST_QUICK") ? "2000" : "10000",
                      "--seed", std::to_string(time(nullptr) + 1)},
                     {"LOCKSTEP_TIMEOUT=60", "LOCKSTEP_TRANSPORTS=socket"}, 280);
  ASSERT_FALSE(r.timedOut) << r.output;
  EXPECT_EQ(r.code, 0) << r.output;
  std::printf("%s", r.output.c_str());
}

TEST(Launcher, SetsTheEnvironmentAndPrefixesOutput) {
  ProcResult r = run({kRun, "-n", "3", "sh", "-c", "echo rank=$LOCKSTEP_RANK size=$LOCKSTEP_WORLD_SIZE"}, {}, 30);
  ASSERT_EQ(r.code, 0) << r.output;
  for (int i = 0; i < 3; ++i) {
    std::string line = "[" + std::to_string(i) + "] rank=" + std::to_string(i) + " size=3";
    EXPECT_NE(r.output.find(line), std::string::npos) << r.output;
  }
}

TEST(Launcher, FirstFailureStopsTheOthersAndSetsTheExitCode) {
  ProcResult r = run({kRun, "-n", "3", "sh", "-c", "if [ $LOCKSTEP_RANK = 1 ]; then exit 3; fi; sleep 60"}, {}, 30);
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_LT(r.seconds, 15) << "the sleeping ranks were not stopped";
  EXPECT_NE(r.output.find("rank 1 exited with code 3"), std::string::npos) << r.output;
}

// The launcher raises its own soft descriptor limit to the hard one (the rendezvous holds one per
// rank until all have come, beside the ranks' pipes: 16 ranks needed more than 40), and gives the
// ranks the limit it was started with. Ranks were turned away with a misleading reason (helper-82).
TEST(Launcher, RaisesItsOwnDescriptorLimitAndGivesTheRanksTheOriginal) {
  ProcResult r = run({"sh", "-c",
                      "ulimit -Sn 40 && exec " + std::string(kRun) + " -n 16 " + kCheck +
                          " --colls allreduce --types float32 --ops sum --counts 1"},
                     {}, 120);
  EXPECT_EQ(r.code, 0) << r.output;
  r = run({"sh", "-c", "ulimit -Sn 40 && exec " + std::string(kRun) + " -n 2 sh -c 'ulimit -Sn'"}, {}, 30);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("[0] 40"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[1] 40"), std::string::npos) << r.output;
}

// Dead, or a zombie no one has reaped yet (the container's init may never reap it).
bool processGone(pid_t pid) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return true;
  char state = '?';
  int got = std::fscanf(f, "%*d (%*[^)]) %c", &state);
  std::fclose(f);
  return got == 1 && (state == 'Z' || state == 'X');
}

// Rank 1 starts `sleep 60 &` and then runs `rank1Then`; the others run `othersRun`. The job must
// end with `code`, and the background process with it.
void expectRankOnesBackgroundProcessEndsWithTheJob(const std::string& rank1Then, const std::string& othersRun,
                                                   int code) {
  char dir[] = "/tmp/lockstep-run-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string pidFile = std::string(dir) + "/background";
  ProcResult r =
      run({kRun, "-n", "2", "sh", "-c",
           "if [ $LOCKSTEP_RANK = 1 ]; then sleep 60 & echo $! > " + pidFile + "; " + rank1Then + "; fi; " + othersRun},
          {}, 30);
  EXPECT_EQ(r.code, code) << r.output;
  FILE* f = std::fopen(pidFile.c_str(), "r");
  ASSERT_NE(f, nullptr) << r.output;
  int pid = 0;
  ASSERT_EQ(std::fscanf(f, "%d", &pid), 1);
  std::fclose(f);
  std::remove(pidFile.c_str());
  rmdir(dir);
  for (int i = 0; i < 500 && !processGone(pid); ++i) usleep(10000);
  EXPECT_TRUE(processGone(pid)) << "rank 1's background process " << pid << " outlived the job";
  if (!processGone(pid)) kill(pid, SIGKILL);
}

TEST(Launcher, WhatAFailedRankStartedIsStoppedWithTheJob) {
  expectRankOnesBackgroundProcessEndsWithTheJob("exit 3", "sleep 60", 3);
}

// The README's promise holds for a job that succeeds too: a rank's background process goes.
TEST(Launcher, WhatARankStartedIsStoppedWhenTheJobSucceeds) {
  expectRankOnesBackgroundProcessEndsWithTheJob("true", "exit 0", 0);
}

// A rank killed mid-run: the others notice within milliseconds, and the launcher gives them a
// moment before SIGTERM, so each prints its error naming the culprit and, with LOCKSTEP_TRACE,
// writes its dump at the failure (the program exits on the error, never reaching destroy). Both
// were cut off by a SIGTERM sent at once, and lockstep-trace then suspected the healthy ranks.
TEST(Launcher, TheOtherRanksReportAKilledRankAndWriteTheirDumps) {
  char dir[] = "/tmp/lockstep-run-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string d = dir;
  ProcResult r = run({kRun, "-n", "3", "sh", "-c",
                      "if [ $LOCKSTEP_RANK = 1 ]; then (sleep 1; kill -9 $$) & fi; exec " + std::string(PERF_DIR) +
                          "/allreduce_perf -b 64K -e 64K -n 100000000 -w 0"},
                     {"LOCKSTEP_TRACE=" + d + "/t.%r.json", "LOCKSTEP_TIMEOUT=30"}, 60);
  EXPECT_EQ(r.code, 128 + SIGKILL) << r.output;
  for (const char* survivor : {"[0] allreduce_perf:", "[2] allreduce_perf:"}) {
    const size_t at = r.output.find(survivor);
    ASSERT_NE(at, std::string::npos) << survivor << " printed no error\n" << r.output;
    const std::string line = r.output.substr(at, r.output.find('\n', at) - at);
    EXPECT_NE(line.find("lost rank 1 "), std::string::npos) << line;
  }
  ProcResult trace = run({LOCKSTEP_TRACE_PATH, d + "/t.0.json", d + "/t.2.json"}, {}, 30);
  EXPECT_NE(trace.output.find("rank 1: no dump"), std::string::npos) << trace.output;
  EXPECT_EQ(trace.output.find("rank 0: no dump"), std::string::npos) << trace.output;
  EXPECT_EQ(trace.output.find("rank 2: no dump"), std::string::npos) << trace.output;
  for (const char* f : {"/t.0.json", "/t.1.json", "/t.2.json"}) std::remove((d + f).c_str());
  rmdir(dir);
}

// Started with SIGHUP ignored (nohup), the launcher and its ranks keep ignoring it.
TEST(Launcher, KeepsAStopSignalItWasStartedWithIgnored) {
  ProcResult r = run({"sh", "-c",
                      "trap '' HUP; " + kRun +
                          " -n 2 sh -c 'sleep 1; echo alive' & L=$!; sleep 0.3; kill -HUP $L; wait $L; "
                          "echo launcher=$?"},
                     {}, 30);
  EXPECT_NE(r.output.find("launcher=0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[0] alive"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[1] alive"), std::string::npos) << r.output;
}

// Ctrl-Z stops the whole job and fg continues it: the ranks run in process groups of their own,
// out of the terminal's reach, and once kept running (their output backing up) while the
// launcher alone stopped.
TEST(Launcher, AStopSignalStopsTheRanksAndTheyContinueWithIt) {
  char dir[] = "/tmp/lockstep-run-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string d = dir;
  auto state = [&](const std::string& pid) { return "$(cut -d' ' -f3 /proc/" + pid + "/stat)"; };
  ProcResult r =
      run({"sh", "-c",
           kRun + " -n 2 sh -c 'echo $$ > " + d + "/$LOCKSTEP_RANK; sleep 2; echo done' & L=$!; " + "while [ ! -s " +
               d + "/0 ] || [ ! -s " + d + "/1 ]; do sleep 0.05; done; " + "R0=$(cat " + d + "/0); R1=$(cat " + d +
               "/1); kill -TSTP $L; sleep 0.5; " + "echo stopped: " + state("$L") + state("$R0") + state("$R1") +
               "; kill -CONT $L; sleep 0.3; " + "echo continued: " + state("$L") + state("$R0") + state("$R1") +
               "; wait $L; echo launcher=$?"},
          {}, 30);
  std::remove((d + "/0").c_str());
  std::remove((d + "/1").c_str());
  rmdir(dir);
  EXPECT_NE(r.output.find("stopped: TTT"), std::string::npos) << r.output;
  const size_t at = r.output.find("continued: ");
  ASSERT_NE(at, std::string::npos) << r.output;
  EXPECT_EQ(r.output.substr(at + 11, 3).find('T'), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[0] done"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[1] done"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("launcher=0"), std::string::npos) << r.output;
}

// `lockstep-run ... | head -2` ends when head does, as the program alone would (SIGPIPE: 141).
TEST(Launcher, EndsWhenTheReaderOfItsOutputLeaves) {
  ProcResult r = run({"bash", "-c", kRun + " -n 2 yes | head -2 >/dev/null; echo launcher=${PIPESTATUS[0]}"}, {}, 30);
  EXPECT_NE(r.output.find("launcher=141"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("stopping the other ranks"), std::string::npos) << r.output;
  EXPECT_LT(r.seconds, 10) << r.output;
}

// Started with SIGCHLD ignored (a parent that set it so), the ranks would be reaped unseen and
// the launcher would wait for ever.
TEST(Launcher, EndsWhenStartedWithSigchldIgnored) {
  // A shell's trap cannot leave SIGCHLD ignored across exec; python can.
  if (system("command -v python3 >/dev/null 2>&1") != 0) GTEST_SKIP() << "no python3 to start it so";
  ProcResult r = run({"python3", "-c",
                      "import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); "
                      "os.execv(sys.argv[1], sys.argv[1:])",
                      kRun, "-n", "2", "sh", "-c", "echo done"},
                     {}, 20);
  EXPECT_FALSE(r.timedOut) << r.output;
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("[1] done"), std::string::npos) << r.output;
}

TEST(Launcher, PassesLinesWithNulBytesWhole) {
  ProcResult r = run({kRun, "-n", "1", "printf", "abc\\0def\\n"}, {}, 30);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(std::string("[0] abc\0def\n", 12)), std::string::npos) << r.output;
}

// An exited rank stays a zombie until the job ends: its pid, which is its process group's id,
// cannot be reused meanwhile, so stopping the groups of exited ranks reaches nothing else.
TEST(Launcher, ARankThatExitedKeepsItsPidUntilTheJobEnds) {
  char dir[] = "/tmp/lockstep-run-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string pidFile = std::string(dir) + "/rank0";
  ProcResult r = run({kRun, "-n", "2", "sh", "-c",
                      "if [ $LOCKSTEP_RANK = 0 ]; then echo $$ > " + pidFile +
                          "; exit 0; fi; sleep 1; echo state=$(cut -d' ' -f3 /proc/$(cat " + pidFile + ")/stat)"},
                     {}, 30);
  std::remove(pidFile.c_str());
  rmdir(dir);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("[1] state=Z"), std::string::npos) << r.output;
}

// A closed terminal or ssh session (SIGHUP) stops the ranks as SIGTERM does: forwarded, and the
// launcher exits with 128 + 1, well within the grace period.
TEST(Launcher, ForwardsSighupToTheRanks) {
  ProcResult r = run({"sh", "-c",
                      kRun + " -n 2 --grace 20 sh -c 'trap \"echo got HUP; exit 0\" HUP; sleep 60 & wait' & L=$!; "
                             "sleep 1; kill -HUP $L; wait $L; echo launcher=$?"},
                     {}, 30);
  EXPECT_NE(r.output.find("launcher=129"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[0] got HUP"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[1] got HUP"), std::string::npos) << r.output;
  EXPECT_LT(r.seconds, 15) << r.output;
}

TEST(Launcher, RejectsMalformedNumbers) {
  for (std::vector<std::string> args : {std::vector<std::string>{"-n", "2x"},
                                        {"-n", "0"},
                                        {"-n", "99999999999"},
                                        {"-n", "2", "--grace", "abc"},
                                        {"-n", "2", "--grace", "1e10"}}) {
    args.insert(args.begin(), kRun);
    args.push_back("true");
    ProcResult r = run(args, {}, 30);
    EXPECT_EQ(r.code, 2) << args[1] << " " << args[2] << ": " << r.output;
  }
}

TEST(Launcher, ReportsARankKilledBySignal) {
  ProcResult r = run({kRun, "-n", "2", "sh", "-c", "if [ $LOCKSTEP_RANK = 0 ]; then kill -9 $$; fi; sleep 60"}, {}, 30);
  EXPECT_EQ(r.code, 128 + 9) << r.output;
}

// A rank that reads the terminal (a password prompt) fails at once: the ranks run in sessions
// of their own, with no controlling terminal. In a background process group of the launcher's
// terminal it was stopped by SIGTTIN for ever, and the launcher said nothing (helper-60).
TEST(Launcher, ARankThatReadsTheTerminalFailsInsteadOfStoppingForEver) {
  if (system("command -v script >/dev/null 2>&1") != 0) GTEST_SKIP() << "no script(1) to give it a terminal";
  ProcResult r = run({"script", "-qfec", kRun + " -n 2 sh -c 'read x < /dev/tty; echo read=$?'", "/dev/null"}, {}, 30);
  EXPECT_FALSE(r.timedOut) << r.output;
  EXPECT_NE(r.output.find("[0] read="), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[1] read="), std::string::npos) << r.output;
}

// A rank that exits, even with 0, before the rendezvous completed ends it: the others' init fails
// at once naming it, instead of after LOCKSTEP_TIMEOUT as "rank(s) 1 never connected".
TEST(Launcher, ARankThatExitsBeforeTheRendezvousEndsItAtOnce) {
  ProcResult r = run({kRun, "-n", "3", "sh", "-c",
                      "if [ $LOCKSTEP_RANK = 1 ]; then exit 0; fi; sleep 0.2; exec " + std::string(PERF_DIR) +
                          "/allreduce_perf -b 8 -e 8 -n 10 -w 0"},
                     {"LOCKSTEP_TIMEOUT=60"}, 50);
  EXPECT_FALSE(r.timedOut) << r.output;
  EXPECT_LT(r.seconds, 20) << r.output;
  EXPECT_NE(r.code, 0) << r.output;
  for (const char* survivor : {"[0] ", "[2] "}) {
    EXPECT_NE(r.output.find(std::string(survivor) + "allreduce_perf: lockstepCommInitFromEnv(&b.comm) failed: remote "
                                                    "error"),
              std::string::npos)
        << r.output;
  }
  EXPECT_NE(r.output.find("rank 1 exited with code 0 before the rendezvous completed"), std::string::npos) << r.output;
}

// Ended by a SIGINT it forwarded, the launcher dies by SIGINT, so a shell script running it stops
// on Ctrl-C as it would for the program alone (an exit(130) let the script go on).
TEST(Launcher, DiesByTheSignalItForwarded) {
  if (system("command -v python3 >/dev/null 2>&1") != 0) GTEST_SKIP() << "no python3 to look at how it ended";
  ProcResult r = run({"python3", "-c",
                      "import signal, subprocess, sys, time\n"
                      "p = subprocess.Popen(sys.argv[1:])\n"
                      "time.sleep(0.5)\n"
                      "p.send_signal(signal.SIGINT)\n"
                      "print('returncode', p.wait())",
                      kRun, "-n", "2", "sleep", "20"},
                     {}, 30);
  EXPECT_NE(r.output.find("returncode -2"), std::string::npos) << r.output;
  EXPECT_LT(r.seconds, 10) << r.output;
}

// SIGUSR1 and SIGUSR2 (Slurm's --signal before a time limit) reach the ranks and the job goes on.
// Left at their default they killed the launcher alone, and what the ranks started outlived it.
TEST(Launcher, ForwardsSigusr1AndTheJobGoesOn) {
  ProcResult r = run({"sh", "-c",
                      kRun + " -n 2 sh -c 'trap \"echo got USR1\" USR1; sleep 2 & wait; echo still here' & L=$!; "
                             "sleep 0.7; kill -USR1 $L; wait $L; echo launcher=$?"},
                     {}, 30);
  EXPECT_NE(r.output.find("launcher=0"), std::string::npos) << r.output;
  for (const char* line : {"[0] got USR1", "[1] got USR1", "[0] still here", "[1] still here"}) {
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
  }
}

// Two launchers appending to one log keep every line whole: each batch of lines goes out in one
// write, to stdout as to stderr (stdio's buffer cut redirected stdout every 4 KiB).
TEST(Launcher, TwoLaunchersAppendingToOneFileKeepEveryLineWhole) {
  char dir[] = "/tmp/lockstep-run-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string log = std::string(dir) + "/shared.log";
  auto writer = [&](char c) { return kRun + " -n 1 sh -c 'yes " + std::string(99, c) + " | head -n 30000' >> " + log; };
  ProcResult r = run({"sh", "-c", "(" + writer('a') + " & " + writer('b') + " & wait)"}, {}, 120);
  ASSERT_FALSE(r.timedOut) << r.output;
  std::ifstream in(log);
  size_t whole = 0, broken = 0;
  for (std::string line; std::getline(in, line);) {
    (line == "[0] " + std::string(99, 'a') || line == "[0] " + std::string(99, 'b') ? whole : broken)++;
  }
  std::remove(log.c_str());
  rmdir(dir);
  EXPECT_EQ(whole, 60000u);
  EXPECT_EQ(broken, 0u);
}

// A progress bar that redraws itself with '\r' shows each state as it comes, prefixed, and a line
// that never ends is written in pieces of at most 64 KiB instead of held whole.
TEST(Launcher, ShowsEachStateOfAProgressBarAndBoundsAnUnendedLine) {
  ProcResult r = run({kRun, "-n", "1", "sh", "-c",
                      "printf '\\r1/3'; sleep 0.3; printf '\\r2/3'; sleep 0.3; printf '\\r3/3 done\\r\\n'; "
                      "head -c 200000 /dev/zero | tr '\\0' x"},
                     {}, 30);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("[0] 1/3\n[0] 2/3\n[0] 3/3 done\r\n"), std::string::npos) << r.output;
  size_t pieces = 0, xs = 0;
  for (size_t at = r.output.find("[0] x"); at != std::string::npos; at = r.output.find("[0] x", at + 1)) {
    const size_t end = r.output.find('\n', at);
    ASSERT_NE(end, std::string::npos);
    EXPECT_LE(end - at - 4, size_t{64} << 10);
    xs += end - at - 4;
    ++pieces;
  }
  EXPECT_EQ(xs, 200000u);
  EXPECT_EQ(pieces, 4u);
}

// A line of exactly 64 KiB, or one whose "\r\n" straddles the cut, is one line: the cut once
// left an empty "[0] " line after it, and dropped the '\r' (helper-62).
TEST(Launcher, ALineOfExactlyTheCutLengthStaysOneLine) {
  ProcResult r = run({kRun, "-n", "1", "sh", "-c",
                      "head -c 65536 /dev/zero | tr '\\0' a; printf '\\nb\\n'; head -c 65535 /dev/zero | tr "
                      "'\\0' c; printf '\\r\\nd\\n'"},
                     {}, 30);
  EXPECT_EQ(r.code, 0) << r.output;
  const std::string want = "[0] " + std::string(65536, 'a') + "\n[0] b\n[0] " + std::string(65535, 'c') + "\r\n[0] d\n";
  EXPECT_NE(r.output.find(want), std::string::npos) << r.output.size();
  EXPECT_EQ(r.output.find("[0] \n"), std::string::npos);
}

// A program that cannot be executed is reported with the reason, and the job ends as a shell's
// would: 127 when it is not found, 126 when it is found but cannot run (it read "errno 13", 127).
TEST(Launcher, SaysWhyAProgramCannotBeExecuted) {
  ProcResult missing = run({kRun, "-n", "1", "./no-such-program-here"}, {}, 30);
  EXPECT_EQ(missing.code, 127) << missing.output;
  EXPECT_NE(missing.output.find("cannot execute ./no-such-program-here: No such file or directory"), std::string::npos)
      << missing.output;
  char dir[] = "/tmp/lockstep-run-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string file = std::string(dir) + "/not-executable";
  std::ofstream(file) << "#!/bin/sh\necho no\n";  // mode 0644: not executable
  ProcResult denied = run({kRun, "-n", "1", file}, {}, 30);
  std::remove(file.c_str());
  rmdir(dir);
  if (geteuid() == 0 && denied.code == 0) GTEST_SKIP() << "root may execute it here";
  EXPECT_EQ(denied.code, 126) << denied.output;
  EXPECT_NE(denied.output.find("Permission denied"), std::string::npos) << denied.output;
}

// After the job, the launcher removes what its ranks left in /dev/shm, and only that: a segment
// named with a rank's pid but another pid namespace belongs to another container's process of
// that pid (containers sharing /dev/shm but not pids), and it once went too (helper-67).
TEST(Launcher, RemovesItsRanksLeftoverSegmentsAndNoOtherNamespaces) {
  const std::string script =
      "ns=$(printf %x \"$(stat -L -c %i /proc/self/ns/pid)\"); "
      "touch /dev/shm/lockstep-$$-$ns-00000000000000aa /dev/shm/lockstep-$$-abcdef0123-00000000000000bb; "
      "echo \"leftovers of pid $$\"";
  ProcResult r = run({kRun, "-n", "1", "sh", "-c", script}, {}, 30);
  ASSERT_EQ(r.code, 0) << r.output;
  const size_t at = r.output.find("leftovers of pid ");
  ASSERT_NE(at, std::string::npos) << r.output;
  const std::string pid = std::to_string(std::stol(r.output.substr(at + 17)));
  const std::string foreign = "/dev/shm/lockstep-" + pid + "-abcdef0123-00000000000000bb";
  EXPECT_EQ(access(foreign.c_str(), F_OK), 0) << "another namespace's segment was removed";
  std::remove(foreign.c_str());
  bool ownLeft = false;
  if (DIR* d = opendir("/dev/shm")) {
    while (dirent* e = readdir(d)) {
      ownLeft |= std::string(e->d_name).rfind("lockstep-" + pid + "-", 0) == 0 &&
                 std::string(e->d_name).find("-00000000000000aa") != std::string::npos;
    }
    closedir(d);
  }
  EXPECT_FALSE(ownLeft) << "the rank's own leftover segment is still there";
}

uint16_t freePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// Ranks started by hand, as with torchrun: rank, size and LOCKSTEP_ROOT only.
TEST(RootMode, RanksMeetAtLockstepRoot) {
  const int n = 3;
  std::string root = "127.0.0.1:" + std::to_string(freePort());
  std::vector<std::unique_ptr<Process>> procs;
  for (int r = 0; r < n; ++r) {
    procs.push_back(std::make_unique<Process>(
        std::vector<std::string>{kCheck, "--types", "float32,int32", "--counts", "0,1,1000003"},
        std::vector<std::string>{"LOCKSTEP_RANK=" + std::to_string(r), "LOCKSTEP_WORLD_SIZE=" + std::to_string(n),
                                 "LOCKSTEP_ROOT=" + root, "LOCKSTEP_TIMEOUT=60"}));
  }
  for (int r = 0; r < n; ++r) {
    ProcResult res = procs[r]->wait(120);
    EXPECT_EQ(res.code, 0) << "rank " << r << ": " << res.output;
  }
}

// An impostor with the wrong secret tries to join as rank 1; the real ranks finish regardless.
TEST(RootMode, WrongSecretIsRejectedAndTheJobCompletes) {
  const int n = 2;
  std::string root = "127.0.0.1:" + std::to_string(freePort());
  std::string secret = "LOCKSTEP_SECRET=00112233445566778899aabbccddeeff";
  auto rank = [&](int r, const std::string& s) {
    return std::make_unique<Process>(
        std::vector<std::string>{kCheck, "--types", "float32", "--ops", "sum", "--counts", "1000"},
        std::vector<std::string>{"LOCKSTEP_RANK=" + std::to_string(r), "LOCKSTEP_WORLD_SIZE=2", "LOCKSTEP_ROOT=" + root,
                                 "LOCKSTEP_TIMEOUT=30", s});
  };
  auto r0 = rank(0, secret);
  usleep(200000);  // let rank 0 start the rendezvous, so the impostor reaches it first
  auto impostor = rank(1, "LOCKSTEP_SECRET=ffeeddccbbaa99887766554433221100");
  ProcResult bad = impostor->wait(60);
  auto r1 = rank(1, secret);
  ProcResult good0 = r0->wait(60), good1 = r1->wait(60);
  EXPECT_EQ(good0.code, 0) << good0.output;
  EXPECT_EQ(good1.code, 0) << good1.output;
  EXPECT_EQ(bad.code, 2) << "the impostor must fail to join: " << bad.output;
  EXPECT_NE(good0.output.find("wrong secret"), std::string::npos) << "rank 0 (serving the rendezvous) logs it";
}

// Ranks dealt round-robin over two "hosts" (LOCKSTEP_HOST_ID by rank parity), on this machine:
// shm within a host, TCP across, and a ring reordered so each host boundary is crossed once.
// (tests/netns does the same with real network namespaces when the machine allows them.)
TEST(Hosts, InterleavedHostIdsGetAHostContiguousRing) {
  ProcResult r = run(
      {kRun, "-n", "4", "sh", "-c", "LOCKSTEP_HOST_ID=host$((LOCKSTEP_RANK % 2)) exec \"$0\" \"$@\"", kCheck, "--types",
       "float32,int32,bfloat16", "--counts", "0,1,N-1,100003", "--block-counts", "0,1,N-1,10007", "--large", "1048576"},
      {"LOCKSTEP_DEBUG=INFO", "LOCKSTEP_TIMEOUT=60"}, 180);
  ASSERT_FALSE(r.timedOut) << r.output;
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("on 4 ranks, 0 wrong"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ring: 0 2 | 1 3 (2 host(s), 2 host crossing(s); reordered"), std::string::npos) << r.output;
  using Pair = std::tuple<int, int, std::string>;
  for (auto [a, b, how] : std::vector<Pair>{{0, 2, "shm"}, {1, 3, "shm"}, {0, 1, "socket"}, {2, 3, "socket"}}) {
    std::string line = "rank " + std::to_string(a) + " -> rank " + std::to_string(b) + " (";
    size_t at = r.output.find(line);
    ASSERT_NE(at, std::string::npos) << line << r.output;
    std::string rest = r.output.substr(at, r.output.find('\n', at) - at);
    EXPECT_NE(rest.find("via " + how), std::string::npos) << rest;
  }
}

// lockstep-topo alone prints this process's topology; under the launcher, rank 0 prints the
// transport matrix (here: one host id per rank parity, so SHM and NET both appear).
TEST(Topo, PrintsTheTopologyAndTheTransportMatrix) {
  ProcResult alone = run({LOCKSTEP_TOPO_PATH}, {}, 30);
  ASSERT_EQ(alone.code, 0) << alone.output;
  EXPECT_NE(alone.output.find("NUMA node(s)"), std::string::npos) << alone.output;
  EXPECT_NE(alone.output.find("listens on:"), std::string::npos) << alone.output;
  ProcResult r =
      run({kRun, "-n", "4", "sh", "-c", "LOCKSTEP_HOST_ID=host$((LOCKSTEP_RANK % 2)) exec \"$0\"", LOCKSTEP_TOPO_PATH},
          {"LOCKSTEP_TIMEOUT=30"}, 60);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("[0] rank0   X "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("NET("), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("SHM"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[0] ring: 0 2 | 1 3 (2 host crossing(s))"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lockstep
