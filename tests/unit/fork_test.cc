// Processes forked from one that had already made a communicator are separate processes: they
// must not take each other for threads of one (the inproc transport), which a process identity
// copied by fork() once made them do ("internal error: map::at" at init). As with Python's
// multiprocessing and its fork start method, after the parent used the library.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "lockstep/lockstep.h"
#include "src/net/socket.h"

namespace lockstep {
namespace {

// In a child: 0 = joined, reduced and got the right sum; otherwise what went wrong.
int child(int rank, const std::string& root) {
  setenv("LOCKSTEP_RANK", std::to_string(rank).c_str(), 1);
  setenv("LOCKSTEP_WORLD_SIZE", "2", 1);
  setenv("LOCKSTEP_ROOT", root.c_str(), 1);
  setenv("LOCKSTEP_TIMEOUT", "20", 1);
  lockstepComm_t comm;
  if (lockstepCommInitFromEnv(&comm) != lockstepSuccess) {
    std::fprintf(stderr, "rank %d: init failed: %s\n", rank, lockstepGetLastError(nullptr));
    return 1;
  }
  float x = static_cast<float>(rank + 1);
  if (lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comm, nullptr) != lockstepSuccess) return 2;
  if (x != 3.0f) return 3;
  return lockstepCommDestroy(comm) == lockstepSuccess ? 0 : 4;
}

uint16_t freePort() {
  Fd probe = listenOn(NetAddr::loopback());
  return localAddress(probe.get()).port;
}

TEST(Fork, ChildrenOfAProcessThatMadeACommunicatorAreSeparateProcesses) {
  // The parent's own communicator of one, through the environment: its rendezvous thread is
  // joined by the time init returns, so the children inherit no thread of the library's.
  setenv("LOCKSTEP_RANK", "0", 1);
  setenv("LOCKSTEP_WORLD_SIZE", "1", 1);
  setenv("LOCKSTEP_ROOT", ("127.0.0.1:" + std::to_string(freePort())).c_str(), 1);
  lockstepComm_t mine;
  ASSERT_EQ(lockstepCommInitFromEnv(&mine), lockstepSuccess) << lockstepGetLastError(nullptr);
  ASSERT_EQ(lockstepCommDestroy(mine), lockstepSuccess);
  for (const char* v : {"LOCKSTEP_RANK", "LOCKSTEP_WORLD_SIZE", "LOCKSTEP_ROOT"}) unsetenv(v);

  const std::string root = "127.0.0.1:" + std::to_string(freePort());
  pid_t pids[2];
  for (int r = 0; r < 2; ++r) {
    pids[r] = fork();
    ASSERT_GE(pids[r], 0);
    if (pids[r] == 0) _exit(child(r, root));
  }
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int r = 0; r < 2; ++r) {
    int status = 0;
    pid_t got = 0;
    while ((got = waitpid(pids[r], &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (got == 0) {
      kill(pids[r], SIGKILL);
      waitpid(pids[r], &status, 0);
      ADD_FAILURE() << "child rank " << r << " hung";
      continue;
    }
    ASSERT_TRUE(WIFEXITED(status)) << "child rank " << r << " died";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "child rank " << r << " (1: init failed, see its stderr)";
  }
}

}  // namespace
}  // namespace lockstep
