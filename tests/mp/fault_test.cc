// Faults with real processes: a rank killed (SIGKILL) or stopped (SIGSTOP) at a random moment in
// the middle of all-reduces, and ranks that call different collectives. The ranks are started
// directly rather than through lockstep-run, which would stop the survivors at the first death.
#include <gtest/gtest.h>
#include <signal.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>

#include "lockstep/lockstep.h"
#include "tests/common/subprocess.h"

namespace lockstep {
namespace {

using testing::Process;
using testing::ProcResult;

const std::string kFault = FAULT_CHECK_PATH;

std::string freshId() {
  lockstepUniqueId id;
  EXPECT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  char hex[2 * LOCKSTEP_UNIQUE_ID_BYTES + 1];
  lockstepUniqueIdToHex(&id, hex, sizeof(hex));
  return hex;
}

int lockstepSegments() {
  int n = 0;
  if (DIR* d = opendir("/dev/shm")) {
    while (dirent* e = readdir(d)) n += std::strncmp(e->d_name, "lockstep-", 9) == 0;
    closedir(d);
  }
  return n;
}

std::vector<std::unique_ptr<Process>> startRanks(int n, const std::vector<std::string>& args,
                                                 const std::vector<std::string>& env) {
  std::string id = freshId();
  std::vector<std::unique_ptr<Process>> procs;
  for (int r = 0; r < n; ++r) {
    std::vector<std::string> argv{kFault};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<std::string> e{"LOCKSTEP_UNIQUE_ID=" + id, "LOCKSTEP_RANK=" + std::to_string(r),
                               "LOCKSTEP_WORLD_SIZE=" + std::to_string(n)};
    e.insert(e.end(), env.begin(), env.end());
    procs.push_back(std::make_unique<Process>(argv, e));
  }
  return procs;
}

// Every rank's fault_check reported OK (exit 0) within 30 s.
void expectEveryRankOk(std::vector<std::unique_ptr<Process>>& procs) {
  for (int r = 0; r < static_cast<int>(procs.size()); ++r) {
    ProcResult res = procs[r]->wait(30);
    EXPECT_FALSE(res.timedOut) << res.output;
    EXPECT_EQ(res.code, 0) << "rank " << r << ": " << res.output;
  }
}

// The victim died of SIGKILL; every other rank's fault_check reported OK (exit 0); none hung.
void expectTheVictimKilledAndTheOthersOk(std::vector<std::unique_ptr<Process>>& procs, int victim) {
  for (int r = 0; r < static_cast<int>(procs.size()); ++r) {
    ProcResult res = procs[r]->wait(60);
    EXPECT_FALSE(res.timedOut) << res.output;
    if (r == victim) {
      EXPECT_EQ(res.code, 128 + SIGKILL) << res.output;
    } else {
      EXPECT_EQ(res.code, 0) << "rank " << r << ": " << res.output;
    }
  }
}

// SIGKILL one of 4 ranks at a random moment, 20 times, over shm and over sockets. The op timeout
// is 10 minutes: detection must come from the death itself, within 5 s.
TEST(Faults, KilledRankIsNamedBySurvivorsWithinFiveSeconds) {
  const int n = 4, runs = 20;
  std::mt19937 rng(std::random_device{}());
  const int shmBefore = lockstepSegments();
  std::vector<double> latencies;
  for (int run = 0; run < runs; ++run) {
    int victim = static_cast<int>(rng() % n), afterMs = 20 + static_cast<int>(rng() % 400);
    const char* transports = run % 2 ? "socket" : "shm";
    std::string stamp = "/tmp/lockstep-fault-" + std::to_string(getpid()) + "-" + std::to_string(run);
    auto procs = startRanks(
        n,
        {"--mode", "kill", "--victim", std::to_string(victim), "--after-ms", std::to_string(afterMs), "--stamp", stamp},
        {std::string("LOCKSTEP_TRANSPORTS=") + transports, "LOCKSTEP_TIMEOUT=600"});
    for (int r = 0; r < n; ++r) {
      ProcResult res = procs[r]->wait(60);
      if (r == victim) {
        EXPECT_EQ(res.code, 128 + SIGKILL) << res.output;
        continue;
      }
      EXPECT_FALSE(res.timedOut) << "run " << run << " rank " << r << " hung: " << res.output;
      EXPECT_EQ(res.code, 0) << "run " << run << " (" << transports << ", victim " << victim << ") rank " << r << ": "
                             << res.output;
      double ms;
      if (std::sscanf(res.output.c_str() + std::min(res.output.size(), res.output.find("after ") + 6), "%lf", &ms) ==
          1) {
        latencies.push_back(ms);
      }
    }
    std::remove(stamp.c_str());
  }
  std::sort(latencies.begin(), latencies.end());
  if (!latencies.empty()) {
    std::printf("kill detection over %zu survivors: median %.1f ms, max %.1f ms\n", latencies.size(),
                latencies[latencies.size() / 2], latencies.back());
  }
  EXPECT_EQ(lockstepSegments(), shmBefore) << "shared-memory segments were left in /dev/shm";
}

// cuda_ipc kernels (run by host threads through the stand-in driver, tests/fakecuda) waiting for
// a rank that is SIGKILLed: the survivors' kernels stop when the control plane sees the death,
// long before the 10-minute op timeout, and the error names the victim.
TEST(Faults, KilledRankStopsTheSurvivorsCudaIpcKernels) {
  const int n = 3, victim = 2;
  std::string id = freshId();
  std::vector<std::unique_ptr<Process>> procs;
  for (int r = 0; r < n; ++r) {
    procs.push_back(std::make_unique<Process>(
        std::vector<std::string>{IPC_DEVICE_CHECK_PATH, FAKE_CUDA_PATH},
        std::vector<std::string>{"LOCKSTEP_UNIQUE_ID=" + id, "LOCKSTEP_RANK=" + std::to_string(r),
                                 "LOCKSTEP_WORLD_SIZE=" + std::to_string(n), "LOCKSTEP_TIMEOUT=600",
                                 "DEVICE_CHECK_VICTIM=" + std::to_string(victim)}));
  }
  for (int r = 0; r < n; ++r) {
    ProcResult res = procs[r]->wait(60);
    if (r == victim) {
      EXPECT_EQ(res.code, 128 + SIGKILL) << res.output;
      continue;
    }
    ASSERT_FALSE(res.timedOut) << "rank " << r << " hung: " << res.output;
    EXPECT_EQ(res.code, 0) << "rank " << r << ": " << res.output;
    EXPECT_NE(res.output.find("rank 2"), std::string::npos) << "rank " << r << ": " << res.output;
    double ms = 1e9;
    const size_t at = res.output.find(" after ");
    if (at != std::string::npos) std::sscanf(res.output.c_str() + at + 7, "%lf", &ms);
    EXPECT_LT(ms, 10000.0) << res.output;
    std::printf("%s", res.output.c_str());
  }
}

TEST(Faults, ARankInAReceiveWhileItsPeersBroadcastIsNamedSoOnEverySide) {
  const int n = 3, victim = 0;
  auto procs = startRanks(n, {"--mode", "out-of-order", "--victim", std::to_string(victim)}, {"LOCKSTEP_TIMEOUT=3"});
  expectEveryRankOk(procs);
}

// A rank that forks a child (fork without exec) and then dies is noticed as any death: over
// sockets, the child's copies of its connections once kept it looking alive until the child left.
TEST(Faults, ARankWhoseForkedChildOutlivesItIsNamedAtOnce) {
  const int n = 3, victim = 1;
  for (const char* transports : {"socket", "shm"}) {
    SCOPED_TRACE(transports);
    auto procs = startRanks(n, {"--mode", "fork-then-die", "--victim", std::to_string(victim)},
                            {"LOCKSTEP_TIMEOUT=30", std::string("LOCKSTEP_TRANSPORTS=") + transports});
    expectTheVictimKilledAndTheOthersOk(procs, victim);
  }
}

// A rank that dies inside a split, after the exchange and before its new communicator's
// rendezvous: the parent's watchdog knows at once, and the new communicator's setup asks it.
TEST(Faults, ARankThatDiesInsideASplitIsNamedAtOnceByItsNewCommunicator) {
  const int n = 4, victim = 3;
  auto procs = startRanks(n, {"--mode", "split-death", "--victim", std::to_string(victim)},
                          {"LOCKSTEP_TIMEOUT=20", std::string("LD_PRELOAD=") + DIE_AT_CONNECT_PATH,
                           "ASAN_OPTIONS=" + std::string(getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "") +
                               ":verify_asan_link_order=0"});
  expectTheVictimKilledAndTheOthersOk(procs, victim);
}

// The same rank calls exit() there instead: its goodbye, said at exit, says its process is
// ending, and its color's other member fails at once (a goodbye alone looked like a member that
// had finished its split and destroyed the parent, and it waited out its timeout: helper-90).
TEST(Faults, ARankThatExitsInsideASplitIsNamedAtOnceByItsNewCommunicator) {
  const int n = 4, victim = 3;
  auto procs = startRanks(n, {"--mode", "split-death", "--victim", std::to_string(victim), "--op", "exit"},
                          {"LOCKSTEP_TIMEOUT=20", std::string("LD_PRELOAD=") + DIE_AT_CONNECT_PATH,
                           "ASAN_OPTIONS=" + std::string(getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "") +
                               ":verify_asan_link_order=0"});
  for (int r = 0; r < n; ++r) {
    ProcResult res = procs[r]->wait(60);
    EXPECT_FALSE(res.timedOut) << res.output;
    if (r != victim) EXPECT_EQ(res.code, 0) << "rank " << r << ": " << res.output;
  }
}

// Connections that are slow to open (a lost SYN waits a second for its retransmission): the
// socket transport's streams are connected at once, each mesh on its own listener. One mesh after
// another, 16 ranks with 16 streams over a link losing 1 % took 23 s to set up (helper-87).
TEST(Faults, SlowConnectionsOfManyStreamsAreWaitedForTogether) {
  const int n = 2, delayMs = 250;
  auto procs = startRanks(
      n, {"--mode", "slow-connects", "--after-ms", std::to_string(delayMs)},
      {"LOCKSTEP_TRANSPORTS=socket", "LOCKSTEP_SOCKET_NSTREAMS=16",
       "LOCKSTEP_TEST_CONNECT_DELAY_MS=" + std::to_string(delayMs), std::string("LD_PRELOAD=") + DIE_AT_CONNECT_PATH,
       "ASAN_OPTIONS=" + std::string(getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "") +
           ":verify_asan_link_order=0"});
  expectEveryRankOk(procs);
}

// A port of the X display range (6000-6009) taken by a program that never answers, as a stray
// service or a forwarded display can: hwloc's GL component opened displays :0-:9 at every init
// and waited in XOpenDisplay for ever (open-mpi/ompi#10025). Every rank's init hung, beyond
// LOCKSTEP_TIMEOUT.
TEST(Faults, InitDoesNotWaitOnAnXDisplayPortThatNeverAnswers) {
  int fd = -1;
  for (int port = 6000; port < 6010 && fd < 0; ++port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd, 16) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  if (fd < 0) GTEST_SKIP() << "every port of 6000-6009 is taken here";
  // Connections complete in the listener's queue, and nothing is ever said on them.
  auto procs = startRanks(2, {"--mode", "slow-connects", "--after-ms", "1000"}, {"LOCKSTEP_TIMEOUT=5"});
  expectEveryRankOk(procs);
  ::close(fd);
}

// Rank 2 leaves after op 1 without a destroy; rank 1 fails op 2 for it and leaves too; rank 0,
// a second behind, must name rank 2: the failure rank 1 found reaches it with the op it spares,
// where, not passed on, it named rank 1, which only left because of rank 2 (helper-90).
TEST(Faults, ARankThatLeftBecauseAnotherLeftIsNotBlamed) {
  const int n = 3, victim = 2;
  auto procs = startRanks(n, {"--mode", "leave-cascade", "--victim", std::to_string(victim)}, {"LOCKSTEP_TIMEOUT=20"});
  expectEveryRankOk(procs);
}

// A rank stopped between calls for longer than the timeout, then continued: its peers failed the
// next op for want of it, and so must it, whatever the transport (over shared memory it once
// completed the op from the data they had left there and returned success).
TEST(Faults, ARankContinuedAfterItsPeersFailedAnOpForItFailsItToo) {
  for (const char* transport : {"shm", "socket"}) {
    for (int n : {2, 3}) {
      if (transport == std::string("socket") && n == 3) continue;  // time: sockets never showed it
      SCOPED_TRACE(std::string(transport) + ", " + std::to_string(n) + " ranks");
      auto procs = startRanks(n, {"--mode", "stop-between", "--victim", std::to_string(n - 1)},
                              {"LOCKSTEP_TIMEOUT=2", std::string("LOCKSTEP_TRANSPORTS=") + transport});
      for (int r = 0; r < n; ++r) {
        ProcResult res = procs[r]->wait(60);
        EXPECT_EQ(res.code, 0) << "rank " << r << ": " << res.output;
      }
    }
  }
}

// Teardown beside a stopped (or cut-off) rank does not wait for its goodbyes to be read: each
// destroy waited its goodbye deadline for it, seconds per communicator after a partition.
TEST(Faults, DestroyBesideAStoppedRankDoesNotWaitForIt) {
  const int n = 2, victim = 1;
  auto procs =
      startRanks(n, {"--mode", "destroy-beside-stopped", "--victim", std::to_string(victim)}, {"LOCKSTEP_TIMEOUT=2"});
  ProcResult res = procs[0]->wait(60);
  EXPECT_FALSE(res.timedOut) << res.output;
  EXPECT_EQ(res.code, 0) << res.output;
  // procs[victim] is killed (with its process group) when it goes out of scope.
}

TEST(Faults, StoppedRankGivesATimeoutThatNamesIt) {
  const int n = 4, victim = 2;
  auto procs = startRanks(n, {"--mode", "stop", "--victim", std::to_string(victim), "--after-ms", "150"},
                          {"LOCKSTEP_TIMEOUT=4"});
  for (int r = 0; r < n; ++r) {
    if (r == victim) continue;
    ProcResult res = procs[r]->wait(60);
    EXPECT_EQ(res.code, 0) << "rank " << r << ": " << res.output;
    EXPECT_NE(res.output.find("not responding"), std::string::npos) << res.output;
  }
  // procs[victim] is killed (with its process group) when it goes out of scope.
}

// The stopped rank, continued after its peers failed, finds its op's deadline passed: it must
// not blame them. Before its watchdog had read what they sent while it was stopped (heartbeats,
// their failure report), it called each of them "silent" for as long as it had been stopped (8 of
// 77 stop-and-continue runs of a reviewer's harness, 1 of 18 here; none in 24 since). A race
// that these rounds did not lose on the old build here either (its peers' report was read in
// time): they keep the behaviour checked, the harness's figures are the evidence for the fix.
TEST(Faults, AStoppedRankThatIsContinuedDoesNotBlameItsPeers) {
  const int n = 2, victim = 1;
  for (const char* transport : {"shm", "socket"}) {
    for (int round = 0; round < 2; ++round) {
      SCOPED_TRACE(std::string(transport) + " round " + std::to_string(round));
      auto procs = startRanks(n, {"--mode", "stop", "--victim", std::to_string(victim), "--after-ms", "200"},
                              {"LOCKSTEP_TIMEOUT=1", std::string("LOCKSTEP_TRANSPORTS=") + transport});
      ProcResult survivor = procs[0]->wait(30);
      EXPECT_EQ(survivor.code, 0) << survivor.output;
      kill(procs[victim]->pid(), SIGCONT);
      ProcResult continued = procs[victim]->wait(30);
      EXPECT_FALSE(continued.timedOut) << continued.output;
      EXPECT_EQ(continued.code, 0) << continued.output;
    }
  }
}

// Sends and receives take no sequence number, so the watchdog does not follow them: a timeout
// once named only the neighbour a rank waited for, which may be waiting itself, and with a
// timeout under 2 s a stopped rank never counted as not responding, in collectives either. A
// split named the neighbour its bootstrap exchange waited for, and left the communicator looking
// healthy, so the next call waited out another timeout. Here the timeout is 1 s.
TEST(Faults, AStoppedRankIsNamedBySendsAndReceivesAndUnderShortTimeouts) {
  const int n = 3, victim = 1;
  for (const char* op : {"sendrecv", "allreduce", "split"}) {
    SCOPED_TRACE(op);
    auto procs = startRanks(n, {"--mode", "stop", "--victim", std::to_string(victim), "--after-ms", "300", "--op", op},
                            {"LOCKSTEP_TIMEOUT=1", "LOCKSTEP_TRANSPORTS=shm"});
    for (int r = 0; r < n; ++r) {
      if (r == victim) continue;
      ProcResult res = procs[r]->wait(60);
      EXPECT_EQ(res.code, 0) << "rank " << r << ": " << res.output;
      EXPECT_NE(res.output.find("not responding"), std::string::npos) << res.output;
    }
  }
}

// A rank that destroys its communicator and lives on. Over shared memory its links stay up: its
// peers' sends and receives once waited out their whole timeout (here 10 minutes) and then blamed
// grouping. Over sockets its connections close, and the peers said "connection closed (did it
// exit?)" of a process that was alive. Both fail at once saying that it left, for send/recv and
// for collectives.
class Leaves : public ::testing::TestWithParam<std::tuple<const char*, const char*>> {};

TEST_P(Leaves, APeerThatLeftIsNamedAtOnce) {
  const auto [transport, op] = GetParam();
  const int n = 3, victim = 2;
  auto procs = startRanks(n, {"--mode", "leave", "--victim", std::to_string(victim), "--after-ms", "200", "--op", op},
                          {"LOCKSTEP_TIMEOUT=600", std::string("LOCKSTEP_TRANSPORTS=") + transport});
  for (int r = 0; r < n; ++r) {
    if (r == victim) continue;
    ProcResult res = procs[r]->wait(30);
    EXPECT_FALSE(res.timedOut) << "rank " << r << " waited for the rank that left: " << res.output;
    EXPECT_EQ(res.code, 0) << "rank " << r << ": " << res.output;
  }
}

INSTANTIATE_TEST_SUITE_P(TransportsAndOps, Leaves,
                         ::testing::Combine(::testing::Values("shm", "socket"),
                                            ::testing::Values("sendrecv", "allreduce")),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) + "_" + std::get<1>(info.param);
                         });

// A rank finishes a broadcast it roots, then aborts (a watchdog's pattern): its peers, still
// before or in that op, used to fail it at once on hearing the abort, so the ranks disagreed on
// whether it succeeded (helper-89: 5 of 60 all-reduces on 3 ranks). They finish it now, and fail
// the next call naming the abort. 3 ranks (the last one receives through the middle one), shm and
// sockets, the aborter living on or exiting.
TEST(Faults, PeersFinishTheOpAnAbortingRankCompletedThenNameTheAbort) {
  for (const char* transport : {"shm", "socket"}) {
    for (const char* after : {"stay", "exit"}) {
      const int n = 3;
      auto procs = startRanks(n, {"--mode", "abort-after-its-op", "--victim", "0", "--op", after},
                              {"LOCKSTEP_TIMEOUT=60", std::string("LOCKSTEP_TRANSPORTS=") + transport});
      for (int r = 0; r < n; ++r) {
        ProcResult res = procs[r]->wait(30);
        EXPECT_FALSE(res.timedOut) << res.output;
        EXPECT_EQ(res.code, 0) << transport << ", aborter " << after << "s, rank " << r << ": " << res.output;
      }
    }
  }
}

class Mismatches : public ::testing::TestWithParam<const char*> {};

TEST_P(Mismatches, EveryRankReportsTheFieldInsteadOfHanging) {
  const int n = 4;
  auto procs = startRanks(n, {"--mode", "mismatch", "--victim", "2", "--field", GetParam()}, {"LOCKSTEP_TIMEOUT=60"});
  expectEveryRankOk(procs);
}

// The root of a broadcast passes 0 elements where the others pass 1000: it finishes alone, then
// destroys its communicator and lives on (or exits). No message of its call reaches anyone; its
// goodbye now carries the op, and the others name the count instead of its leaving (or, over shm
// with it alive, their timeout). 3 and 4 ranks, shm and sockets.
TEST(Faults, ARankThatFinishesAMismatchedCallAloneAndLeavesIsNamedForTheMismatch) {
  for (const char* transport : {"shm", "socket"}) {
    for (const int n : {3, 4}) {
      const bool exits = n == 4;
      auto procs = startRanks(n, {"--mode", "finish-alone-and-leave", "--victim", "0", "--op", exits ? "exit" : "stay"},
                              {"LOCKSTEP_TIMEOUT=60", std::string("LOCKSTEP_TRANSPORTS=") + transport});
      for (int r = 0; r < n; ++r) {
        ProcResult res = procs[r]->wait(30);
        EXPECT_FALSE(res.timedOut) << res.output;
        EXPECT_EQ(res.code, 0) << transport << ", " << n << " ranks, rank " << r << ": " << res.output;
      }
    }
  }
}

// A rank that exits as soon as its call fails (no destroy: an uncaught exception, exit after
// printing) still tells its peers the cause: they once blamed its exit ("lost ... no goodbye"),
// and a healthy rank that found a mismatch was named its culprit, in 5 runs of 5.
TEST(Faults, ARankThatExitsAsSoonAsItsCallFailsStillTellsThePeersTheCause) {
  const int n = 4, victim = 3;
  for (int run = 0; run < 5; ++run) {
    const bool timeout = run == 4;  // 7 s: once
    const char* transports = run % 2 ? "socket" : "shm";
    auto procs = startRanks(
        n,
        {"--mode", "exit-on-failure", "--victim", std::to_string(victim), "--field",
         timeout ? "timeout" : "reduction op"},
        {"LOCKSTEP_TIMEOUT=" + std::string(timeout ? "2" : "60"), std::string("LOCKSTEP_TRANSPORTS=") + transports});
    for (int r = 0; r < n; ++r) {
      ProcResult res = procs[r]->wait(30);
      EXPECT_FALSE(res.timedOut) << res.output;
      EXPECT_EQ(res.code, 0) << "run " << run << " (" << transports << "), rank " << r << ": " << res.output;
    }
  }
}

// A split whose new first rank cannot start the new rendezvous, nor even send the others word of
// it (each bootstrap send opens a connection, and it is out of descriptors), tells them through
// the watchdog's connections: they waited out their whole timeout before.
TEST(Faults, ASplitWhoseFirstRankIsOutOfDescriptorsFailsEveryMemberAtOnce) {
  const int n = 3;
  auto procs = startRanks(n, {"--mode", "split-root-out-of-fds"}, {"LOCKSTEP_TIMEOUT=30"});
  for (int r = 0; r < n; ++r) {
    ProcResult res = procs[r]->wait(60);
    EXPECT_FALSE(res.timedOut) << res.output;
    EXPECT_EQ(res.code, 0) << "rank " << r << ": " << res.output;
  }
}

// A rank out of descriptors in its init tells the others why, as their culprit: they found its
// connections refused and blamed it as a rank that had gone (at 64 ranks under a limit of 100,
// 37 of 64 did not name the limit: helper-99). Its shortage met in the bootstrap's ring (4 more
// descriptors than it held), in its connection meshes' listeners (8 more; of 16 ranks, some
// named a healthy relay in 2 of 5 runs, helper-102) and in the socket transport's connections
// (12 more).
TEST(Faults, ARankOutOfDescriptorsInItsInitTellsTheOthersWhy) {
  struct Case {
    int n;
    const char* spare;
  };
  for (const Case c : {Case{4, "4"}, Case{16, "8"}, Case{4, "12"}}) {
    auto procs = startRanks(c.n, {"--mode", "init-out-of-fds", "--victim", "2", "--after-ms", c.spare},
                            {"LOCKSTEP_TIMEOUT=30", "LOCKSTEP_TRANSPORTS=socket", "LOCKSTEP_SOCKET_NSTREAMS=4"});
    for (int r = 0; r < c.n; ++r) {
      ProcResult res = procs[r]->wait(60);
      EXPECT_FALSE(res.timedOut) << res.output;
      EXPECT_EQ(res.code, 0) << c.n << " ranks, " << c.spare << " spare descriptors, rank " << r << ": " << res.output;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fields, Mismatches,
                         ::testing::Values("kind", "count", "datatype", "reduction op", "root", "kind, no data",
                                           "count 0, three times", "count 0, in steady steps", "split"),
                         [](const auto& info) {
                           std::string s = info.param;
                           s.erase(std::remove(s.begin(), s.end(), ','), s.end());
                           for (char& c : s) c = c == ' ' ? '_' : c;
                           return s;
                         });

}  // namespace
}  // namespace lockstep
