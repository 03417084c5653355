// Processes forked from one that had already made a communicator are separate processes: they
// must not take each other for threads of one (the inproc transport), which a process identity
// copied by fork() once made them do ("internal error: map::at" at init). As with Python's
// multiprocessing and its fork start method, after the parent used the library.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

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

// Waits for a forked child: its exit code, or -1 (failure added) when it died or hung.
int reap(pid_t pid, const std::string& who) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int status = 0;
  pid_t got = 0;
  while ((got = waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (got == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    ADD_FAILURE() << who << " hung";
    return -1;
  }
  if (!WIFEXITED(status)) {
    ADD_FAILURE() << who << " died of signal " << WTERMSIG(status);
    return -1;
  }
  return WEXITSTATUS(status);
}

// The NCCL-style flow: this process makes the id (its rendezvous runs here) and forks the ranks,
// which leave through exit(), as a program's children do. They inherited the list of the
// parent's rendezvous services, whose destruction at exit joined the parent's threads: SIGABRT
// ("No such process"), or a hang once a thread of the child's own took the dead thread's place.
TEST(Fork, ChildrenOfTheProcessThatMadeTheIdExitCleanly) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer cannot start threads in a child of a multi-threaded process (the parent's "
                  "rendezvous thread runs during the fork here, as in the flow under test)";
#endif
  lockstepUniqueId id;
  ASSERT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  pid_t pids[3];
  for (int r = 0; r < 3; ++r) {
    pids[r] = fork();
    ASSERT_GE(pids[r], 0);
    if (pids[r] != 0) continue;
    int code = 0;
    if (r < 2) {  // two ranks on the parent's id
      setenv("LOCKSTEP_TIMEOUT", "20", 1);
      lockstepComm_t comm;
      float x = static_cast<float>(r + 1);
      if (lockstepCommInitRank(&comm, 2, id, r) != lockstepSuccess) {
        code = 1;
      } else {
        code = lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comm, nullptr) != lockstepSuccess ? 2
               : x != 3.0f                                                                                  ? 3
               : lockstepCommDestroy(comm) != lockstepSuccess                                               ? 4
                                                                                                            : 0;
      }
    }
    std::thread([] {}).join();  // a thread of the child's own, as the hang needed
    std::exit(code);            // at-exit handlers and static destructors run
  }
  EXPECT_EQ(reap(pids[0], "rank 0"), 0);
  EXPECT_EQ(reap(pids[1], "rank 1"), 0);
  EXPECT_EQ(reap(pids[2], "a child that uses nothing"), 0);
}

// How many of this process's mappings are Lockstep's shared-memory segments.
int shmMappings() {
  FILE* maps = std::fopen("/proc/self/maps", "r");
  if (!maps) return -1;
  char line[512];
  int n = 0;
  while (std::fgets(line, sizeof(line), maps)) n += std::strstr(line, "/dev/shm/lockstep-") != nullptr;
  std::fclose(maps);
  return n;
}

// Forks `n` ranks, each running body(rank, comm) on a communicator of them all (rank 0 serves
// the rendezvous, LOCKSTEP_ROOT: this process starts no thread before the forks, which a child
// of a multi-threaded process can deadlock on) and leaving with its result through _Exit (the
// parent's at-exit handlers are not theirs to run). 1: its init failed. Returns their pids.
std::vector<pid_t> forkRanks(int n, const std::function<void(int)>& before,
                             const std::function<int(int, lockstepComm_t)>& body) {
  const std::string root = "127.0.0.1:" + std::to_string(freePort());
  std::vector<pid_t> pids;
  for (int r = 0; r < n; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      if (before) before(r);
      setenv("LOCKSTEP_RANK", std::to_string(r).c_str(), 1);
      setenv("LOCKSTEP_WORLD_SIZE", std::to_string(n).c_str(), 1);
      setenv("LOCKSTEP_ROOT", root.c_str(), 1);
      setenv("LOCKSTEP_TIMEOUT", "20", 1);
      lockstepComm_t comm;
      if (lockstepCommInitFromEnv(&comm) != lockstepSuccess) {
        std::fprintf(stderr, "rank %d: init: %s\n", r, lockstepGetLastError(nullptr));
        std::_Exit(1);
      }
      std::_Exit(body(r, comm));
    }
    pids.push_back(pid);
  }
  return pids;
}

// A worker forked by a rank after init (a data loader) holds none of the rank's shared memory:
// with the segments' names unlinked, its copies of the mappings were all that kept /dev/shm full
// after every rank had destroyed its communicator, until the worker exited (helper-67).
TEST(Fork, AWorkerForkedByARankHoldsNoneOfItsSharedMemory) {
  // 2: no segment seen in the rank; 3: the worker holds segments; 4: the worker died; 5: the
  // rank's call after the fork failed.
  const std::vector<pid_t> pids = forkRanks(
      2, [](int) { setenv("LOCKSTEP_TRANSPORTS", "shm", 1); },
      [](int, lockstepComm_t comm) {
        if (shmMappings() < 1) return 2;  // the check sees the rank's own
        const pid_t worker = fork();
        if (worker == 0) std::_Exit(shmMappings() == 0 ? 0 : 3);
        int status = 0;
        waitpid(worker, &status, 0);
        if (!WIFEXITED(status)) return 4;
        if (WEXITSTATUS(status) != 0) return WEXITSTATUS(status);
        float x = 1;
        const bool ok = lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comm, nullptr) == lockstepSuccess &&
                        x == 2.0f && lockstepCommDestroy(comm) == lockstepSuccess;
        return ok ? 0 : 5;
      });
  EXPECT_EQ(reap(pids[0], "rank 0"), 0);
  EXPECT_EQ(reap(pids[1], "rank 1"), 0);
}

// Two ranks' body: an all-reduce of r + 1 that must give 3, then a clean destroy (exit 0, else 2).
int allReduceThenDestroy(int r, lockstepComm_t comm) {
  float x = static_cast<float>(r + 1);
  const bool ok = lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comm, nullptr) == lockstepSuccess &&
                  x == 3.0f && lockstepCommDestroy(comm) == lockstepSuccess;
  return ok ? 0 : 2;
}

// A rank that runs out of memory for a buffer of the op's own (the copy of an in-place input the
// rank-ordered reduce-scatter works from) fails the op, and its peers fail at once naming it. The
// allocation was made while planning, before the op: the peers waited in the op until the rank
// left, then blamed its departure (helper-81).
TEST(Fork, ARankOutOfMemoryForItsOwnBufferFailsItsPeersNamingIt) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "an address-space limit and a sanitizer's shadow memory do not mix";
#endif
  // Exit codes: 0 as expected; 2 the call succeeded; 3 the message lacks the cause; 4 too slow.
  const std::vector<pid_t> pids = forkRanks(
      2, [](int) { setenv("LOCKSTEP_ALGO", "reducescatter=ordered", 1); },
      [](int r, lockstepComm_t comm) {
        const size_t count = size_t{32} << 20;  // bytes per rank; the copy is twice that
        char* in =
            static_cast<char*>(mmap(nullptr, 2 * count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        if (in == MAP_FAILED) return 5;
        if (r == 0) {
          // Room for 16 MiB more than is mapped now: not for the copy.
          long kb = 0;
          char line[256];
          FILE* status = std::fopen("/proc/self/status", "r");
          while (status && std::fgets(line, sizeof(line), status)) {
            if (std::strncmp(line, "VmSize:", 7) == 0) kb = std::atol(line + 7);
          }
          if (status) std::fclose(status);
          const rlimit limit{static_cast<rlim_t>(kb) * 1024 + (rlim_t{16} << 20), RLIM_INFINITY};
          if (kb == 0 || setrlimit(RLIMIT_AS, &limit) != 0) return 6;
        }
        const auto t0 = std::chrono::steady_clock::now();
        const lockstepResult_t got =
            lockstepReduceScatter(in, in + r * count, count, lockstepUint8, lockstepSum, comm, nullptr);
        const auto took = std::chrono::steady_clock::now() - t0;
        const std::string why = lockstepGetLastError(comm);
        std::fprintf(stderr, "rank %d: %s\n", r, why.c_str());
        if (r == 0) std::this_thread::sleep_for(std::chrono::seconds(2));  // not gone before rank 1 hears
        lockstepCommDestroy(comm);
        if (got == lockstepSuccess) return 2;
        if (why.find("rank 0 is out of memory") == std::string::npos) return 3;
        return took < std::chrono::seconds(10) ? 0 : 4;
      });
  EXPECT_EQ(reap(pids[0], "rank 0 (out of memory)"), 0);
  EXPECT_EQ(reap(pids[1], "rank 1"), 0);
}

// A split called inside a group on one rank (refused) still takes part, as a split refused for a
// bad argument does: the others fail at once naming it, where they waited in the exchange to
// the timeout (helper-84). Ranks in processes of their own: with ranks that are threads of one
// process, the refusal comes at once instead (their splits may come from this very thread).
TEST(Fork, ASplitRefusedInsideAGroupFailsEveryRankAtOnce) {
  // 0 as expected; 2 the split succeeded; 3 the message lacks the cause; 4 too slow; 5 the group
  // succeeded; 7 the parent then failed.
  const std::vector<pid_t> pids = forkRanks(3, nullptr, [](int r, lockstepComm_t comm) {
    const auto t0 = std::chrono::steady_clock::now();
    lockstepComm_t child = nullptr;
    lockstepResult_t got;
    if (r == 2) {
      lockstepGroupStart();
      got = lockstepCommSplit(comm, 0, 0, &child);
      if (lockstepGroupEnd() == lockstepSuccess) return 5;
    } else {
      got = lockstepCommSplit(comm, 0, 0, &child);
    }
    const std::string why = lockstepGetLastError(nullptr);
    std::fprintf(stderr, "rank %d: %s\n", r, why.c_str());
    if (got == lockstepSuccess) return 2;
    if (why.find("inside a group") == std::string::npos || (r != 2 && why.find("rank 2") == std::string::npos))
      return 3;
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(10)) return 4;
    float x = 1;
    if (lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comm, nullptr) != lockstepSuccess || x != 3.0f)
      return 7;
    return lockstepCommDestroy(comm) == lockstepSuccess ? 0 : 8;
  });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(reap(pids[r], "rank " + std::to_string(r)), 0);
}

// Ranks of two users on one host: shared memory cannot join them (segments are 0600), so they
// use sockets. Every rank's init failed with "Permission denied" (helper-67).
TEST(Fork, RanksOfTwoUsersOnOneHostConnectOverSockets) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root, to run a rank as another user";
  const std::vector<pid_t> pids = forkRanks(
      2,
      [](int r) {
        if (r == 1 && (setgid(65534) != 0 || setuid(65534) != 0)) std::_Exit(6);  // nobody
        unsetenv("TMPDIR");  // the test's own (root's) may not be writable by nobody
      },
      allReduceThenDestroy);
  EXPECT_EQ(reap(pids[0], "rank 0 (root)"), 0);
  EXPECT_EQ(reap(pids[1], "rank 1 (nobody)"), 0);
}

// Root outside and "root" in a user namespace of its own (a rootless container's, mapped to
// nobody on the host): both say euid 0, but the second cannot open the first's 0600 segments.
// Shared memory was chosen all the same and every init failed with "Permission denied"
// (helper-73); such ranks now use sockets.
TEST(Fork, RootInAUserNamespaceOfItsOwnConnectsOverSockets) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root, to run a rank as another user";
  // Exits 6: could not become nobody; 7: no user namespace here; 8: uid_map refused.
  auto becomeRootOfOwnNamespace = [] {
    if (setgid(65534) != 0 || setuid(65534) != 0) std::_Exit(6);
    prctl(PR_SET_DUMPABLE, 1);  // setuid made /proc/self root's, uid_map with it
    if (unshare(CLONE_NEWUSER) != 0) std::_Exit(7);
    const int fd = open("/proc/self/uid_map", O_WRONLY);
    const char map[] = "0 65534 1";
    if (fd < 0 || write(fd, map, sizeof(map) - 1) != ssize_t(sizeof(map) - 1) || geteuid() != 0) std::_Exit(8);
    close(fd);
  };
  const pid_t probe = fork();
  if (probe == 0) {
    becomeRootOfOwnNamespace();
    std::_Exit(0);
  }
  const int probed = reap(probe, "the user-namespace probe");
  if (probed == 7) GTEST_SKIP() << "this kernel makes no user namespaces for nobody";
  ASSERT_EQ(probed, 0);
  const std::vector<pid_t> pids = forkRanks(
      2,
      [&](int r) {
        unsetenv("TMPDIR");  // the test's own (root's) may not be writable by nobody
        if (r == 1) becomeRootOfOwnNamespace();
      },
      allReduceThenDestroy);
  EXPECT_EQ(reap(pids[0], "rank 0 (root)"), 0);
  EXPECT_EQ(reap(pids[1], "rank 1 (root of its own namespace)"), 0);
}

}  // namespace
}  // namespace lockstep
