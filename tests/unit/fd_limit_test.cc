// A rank out of file descriptors says so, and names the limit: it must not report the peer it
// was connecting to (or waiting for) as the one at fault. At scale the socket transport needs
// descriptors per peer, and a low `ulimit -n` is the usual cause, so the error is the user's cue.
//
// Two forked ranks over sockets; one of them runs with only k descriptors to spare, for every k
// from none up to enough, so each descriptor setup takes (interfaces, listeners, the rendezvous,
// the bootstrap ring, the control and data meshes, both their connect and accept sides) is the
// one that runs out in some round.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "lockstep/lockstep.h"

namespace lockstep {
namespace {

// A child's verdict travels through a pipe: its rank, result code and message.
struct Verdict {
  int rank;
  int code;
  char message[512];
};

void runRank(int rank, const lockstepUniqueId& id, int spare, int out) {
  Verdict v{};
  v.rank = rank;
  if (spare >= 0) {
    int lowest = dup(0);  // descriptors are taken lowest first: `spare` more fit under the limit
    close(lowest);
    rlimit rl{static_cast<rlim_t>(lowest + spare), static_cast<rlim_t>(lowest + spare)};
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  lockstepComm_t comm = nullptr;
  v.code = lockstepCommInitRank(&comm, 2, id, rank);
  std::snprintf(v.message, sizeof(v.message), "%s", v.code == lockstepSuccess ? "" : lockstepGetLastError(nullptr));
  if (v.code == lockstepSuccess) {
    float x = 1;
    v.code = lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comm, nullptr);
    if (v.code == lockstepSuccess && x != 2.0f) v.code = -1;
    lockstepCommDestroy(comm);
  }
  (void)!write(out, &v, sizeof(v));
}

// One round of two forked ranks, `limited` with `spare` descriptors (runRank): their verdicts
// arrive on `verdicts`. The rendezvous lives in a process of its own, unlimited. Not in this
// one: the ranks are forked from here, and a fork of a process with threads (the rendezvous's)
// may inherit a lock held mid-call (AddressSanitizer's allocator's, for one) and hang.
struct Round {
  pid_t root = -1, ranks[2] = {-1, -1};
  int verdicts = -1;
  void killAll() {
    for (pid_t p : {ranks[0], ranks[1], root}) {
      if (p > 0) kill(p, SIGKILL);
    }
    for (pid_t p : {ranks[0], ranks[1], root}) {
      if (p > 0) waitpid(p, nullptr, 0);
    }
  }
};

void startRound(int limited, int spare, Round* round) {
  lockstepUniqueId id;
  int idPipe[2];
  ASSERT_EQ(pipe(idPipe), 0);
  round->root = fork();
  ASSERT_GE(round->root, 0);
  if (round->root == 0) {
    close(idPipe[0]);
    if (lockstepGetUniqueId(&id) != lockstepSuccess) _exit(1);
    (void)!write(idPipe[1], &id, sizeof(id));
    pause();  // serves the rendezvous until killed
    _exit(0);
  }
  close(idPipe[1]);
  const bool gotId = read(idPipe[0], &id, sizeof(id)) == static_cast<ssize_t>(sizeof(id));
  close(idPipe[0]);
  if (!gotId) {
    round->killAll();
    FAIL() << "the rendezvous process made no id";
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  for (int r = 0; r < 2; ++r) {
    round->ranks[r] = fork();
    ASSERT_GE(round->ranks[r], 0);
    if (round->ranks[r] == 0) {
      close(fds[0]);
      runRank(r, id, r == limited ? spare : -1, fds[1]);
      _exit(0);
    }
  }
  close(fds[1]);
  round->verdicts = fds[0];
}

TEST(FdLimit, ARankOutOfDescriptorsBlamesItsOwnLimitNotAPeer) {
  setenv("LOCKSTEP_TRANSPORTS", "socket", 1);
  setenv("LOCKSTEP_TIMEOUT", "3", 1);
  int failed = 0, passed = 0;
  for (int limited = 0; limited < 2; ++limited) {
    for (int spare = 0; spare <= 14; ++spare) {
      Round round;
      startRound(limited, spare, &round);
      ASSERT_FALSE(::testing::Test::HasFatalFailure());
      // The limited rank's verdict decides; its peer may be left waiting for it, and is killed.
      const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      int status = 0;
      pid_t reaped = 0;
      while ((reaped = waitpid(round.ranks[limited], &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < end)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (reaped == round.ranks[limited]) round.ranks[limited] = -1;  // not to be killed or waited for again
      bool hung = std::chrono::steady_clock::now() >= end;
      round.killAll();
      Verdict v[2]{};
      int got = 0;
      while (got < 2 && read(round.verdicts, &v[got], sizeof(Verdict)) == static_cast<ssize_t>(sizeof(Verdict))) ++got;
      close(round.verdicts);
      ASSERT_FALSE(hung) << "rank " << limited << " with " << spare << " spare descriptors hung";
      const Verdict* mine = nullptr;
      for (int i = 0; i < got; ++i) {
        if (v[i].rank == limited) mine = &v[i];
      }
      ASSERT_NE(mine, nullptr) << "rank " << limited << " with " << spare << " spare descriptors died";
      if (mine->code == lockstepSuccess) {
        ++passed;
        continue;
      }
      ++failed;
      // Its peer may fail either way (the limited rank left); only the limited rank's own
      // report is about the shortage.
      const std::string msg = mine->message;
      EXPECT_EQ(mine->code, lockstepSystemError)
          << "rank " << limited << ", " << spare
          << " spare descriptors: " << lockstepGetErrorString(static_cast<lockstepResult_t>(mine->code)) << ": " << msg;
      EXPECT_NE(msg.find("Too many open files"), std::string::npos) << msg;
      EXPECT_NE(msg.find("ulimit -n"), std::string::npos) << msg;
    }
  }
  unsetenv("LOCKSTEP_TRANSPORTS");
  unsetenv("LOCKSTEP_TIMEOUT");
  EXPECT_GT(failed, 0) << "no round ran out of descriptors";
  EXPECT_GT(passed, 0) << "no round had enough descriptors: the sweep does not reach every setup step";
}

// Its peer hears of it: a rank that fails its setup after the rendezvous (here, out of
// descriptors at every step in turn) lets go of its bootstrap, and the peer waiting for it there,
// in the socket mesh or for a bootstrap message, fails within a second or so, naming it, instead of
// waiting out the timeout (3 s here). One that fails before it reached the rendezvous is never
// known to the others: they wait for it as for a rank not started yet.
TEST(FdLimit, ThePeerOfARankThatFailsItsSetupHearsOfItAtOnce) {
  setenv("LOCKSTEP_TRANSPORTS", "socket", 1);
  setenv("LOCKSTEP_TIMEOUT", "3", 1);
  int checked = 0;
  for (int i = 0; i < 2 * 15; ++i) {
    const int limited = i / 15, spare = i % 15, peer = 1 - limited;
    Round round;
    startRound(limited, spare, &round);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    // Both verdicts, each with the time it arrived after the limited rank's.
    Verdict v[2]{};
    double at[2] = {-1, -1};
    const auto start = std::chrono::steady_clock::now();
    for (int got = 0; got < 2;) {
      pollfd pf{round.verdicts, POLLIN, 0};
      if (poll(&pf, 1, 30000) != 1) break;
      Verdict one{};
      if (read(round.verdicts, &one, sizeof(one)) != static_cast<ssize_t>(sizeof(one))) break;
      v[one.rank] = one;
      at[one.rank] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      ++got;
    }
    round.killAll();
    close(round.verdicts);
    ASSERT_GE(at[limited], 0) << spare << " spare descriptors: no verdict from the limited rank";
    ASSERT_GE(at[peer], 0) << spare << " spare descriptors: no verdict from its peer within 30 s";
    const std::string mine = v[limited].message, theirs = v[peer].message;
    // Before it reached the rendezvous, no rank knows of it: the rendezvous waits for it as for
    // a rank not started yet ("never connected").
    if (v[limited].code == lockstepSuccess || theirs.find("never connected") != std::string::npos) continue;
    ++checked;
    EXPECT_LT(at[peer] - at[limited], 1.5)
        << "rank " << limited << ", " << spare << " spare descriptors: the limited rank failed with \"" << mine
        << "\"; its peer waited, then: " << theirs;
    EXPECT_NE(v[peer].code, lockstepSuccess);
    EXPECT_NE(theirs.find("rank " + std::to_string(limited)), std::string::npos) << theirs;
  }
  unsetenv("LOCKSTEP_TRANSPORTS");
  unsetenv("LOCKSTEP_TIMEOUT");
  EXPECT_GT(checked, 3) << "too few rounds failed after the rendezvous";
}

}  // namespace
}  // namespace lockstep
