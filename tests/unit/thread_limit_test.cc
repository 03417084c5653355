// A rank whose process may start no more threads (ulimit -u, a pids cgroup): the calls that need
// the communicator's progress thread fail with lockstepSystemError, saying so, and nothing of
// theirs runs later. Once a non-blocking all-reduce that had failed this way stayed queued: it
// ran at the next call that started the thread, wrote into a buffer its caller had been told was
// not used, and the blocking call queued behind it ran twice (a sum of 12 where 6 was right, with
// success).
//
// This binary stands in for the limit: it defines pthread_create itself (exported, so
// libstdc++'s std::thread calls it), refusing with EAGAIN while a rank's thread asks it to.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "lockstep/lockstep.h"
#include "tests/common/thread_comms.h"

namespace {
thread_local bool tRefuseThreads = false;
std::atomic<int> gThreadsStarted{0};
}  // namespace

extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*), void* arg) {
  using Real = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static Real real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "pthread_create"));
  if (tRefuseThreads) return EAGAIN;
  gThreadsStarted.fetch_add(1);
  return real(thread, attr, start, arg);
}

namespace lockstep {
namespace {

using testing::destroyAll;
using testing::initThreadComms;
using testing::onThreads;

// The socket transport builds its LOCKSTEP_SOCKET_NSTREAMS meshes on a thread each, but only
// where a peer uses sockets: ranks that all share memory (here threads of one process) started
// 16 threads each with 16 streams, and failed their init under a thread limit (helper-96).
TEST(ThreadLimit, StreamsStartNoThreadsWhereNoPeerUsesSockets) {
  auto threadsOfInit = [](const char* streams) {
    setenv("LOCKSTEP_SOCKET_NSTREAMS", streams, 1);
    const int before = gThreadsStarted.load();
    auto comms = initThreadComms(2);
    const int started = gThreadsStarted.load() - before;
    unsetenv("LOCKSTEP_SOCKET_NSTREAMS");
    destroyAll(comms);
    return started;
  };
  const int one = threadsOfInit("1"), sixteen = threadsOfInit("16");
  EXPECT_EQ(sixteen, one) << "threads started by the init of 2 thread-ranks with 16 streams and with 1";
}

TEST(ThreadLimit, ACallThatCannotStartTheProgressThreadFailsAndNothingOfItRunsLater) {
  const int n = 2;
  auto comms = initThreadComms(n);
  // Rank 0 cannot start threads for its first non-blocking call; rank 1 can, and its all-reduce
  // waits for rank 0's next one, which must be the blocking call below: the failed call took no
  // sequence number.
  std::vector<std::string> errors(n);
  std::vector<float> poisoned(n), sums(n), later(n);
  onThreads(n, [&](int r) {
    std::vector<float> a(1024, 1.f), b(1024, 3.f);
    lockstepRequest_t req = nullptr;
    if (r == 0) {
      tRefuseThreads = true;
      lockstepResult_t res =
          lockstepIallReduce(a.data(), a.data(), a.size(), lockstepFloat32, lockstepSum, comms[r], &req);
      tRefuseThreads = false;
      EXPECT_EQ(res, lockstepSystemError);
      EXPECT_EQ(req, nullptr);
      errors[r] = lockstepGetLastError(comms[r]);
      std::fill(a.begin(), a.end(), -1000.f);  // the caller was told the call did nothing
    } else {
      ASSERT_EQ(lockstepIallReduce(a.data(), a.data(), a.size(), lockstepFloat32, lockstepSum, comms[r], &req),
                lockstepSuccess);
    }
    // Rank 0's blocking all-reduce pairs with rank 1's non-blocking one.
    if (r == 0) {
      EXPECT_EQ(lockstepAllReduce(b.data(), b.data(), b.size(), lockstepFloat32, lockstepSum, comms[r], nullptr),
                lockstepSuccess)
          << lockstepGetLastError(comms[r]);
      sums[r] = b[0];
    } else {
      EXPECT_EQ(lockstepWait(&req, -1), lockstepSuccess) << lockstepGetLastError(comms[r]);
      sums[r] = a[0];
    }
    // Then a non-blocking one on both, with threads allowed: it starts the thread that was
    // refused, and must find nothing left behind by the failed call.
    std::vector<float> c(1024, 5.f);
    ASSERT_EQ(lockstepIallReduce(c.data(), c.data(), c.size(), lockstepFloat32, lockstepSum, comms[r], &req),
              lockstepSuccess);
    EXPECT_EQ(lockstepWait(&req, -1), lockstepSuccess) << lockstepGetLastError(comms[r]);
    later[r] = c[0];
    poisoned[r] = a[0];
  });
  EXPECT_NE(errors[0].find("progress thread"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("Resource temporarily unavailable"), std::string::npos) << errors[0];
  EXPECT_EQ(sums[0], 3.f + 1.f);  // rank 0's blocking call met rank 1's non-blocking one
  EXPECT_EQ(sums[1], 3.f + 1.f);
  EXPECT_EQ(later[0], 10.f);
  EXPECT_EQ(later[1], 10.f);
  EXPECT_EQ(poisoned[0], -1000.f) << "the failed call wrote into its buffer later";
  destroyAll(comms);
}

// The same through a group: GroupEnd fails, the group's request ends with the error instead of
// waiting for ever, and the next call pairs with the peers' next one.
TEST(ThreadLimit, AGroupThatCannotStartTheProgressThreadFailsItsRequests) {
  const int n = 2;
  auto comms = initThreadComms(n);
  std::vector<float> sums(n);
  std::string waitError;
  onThreads(n, [&](int r) {
    std::vector<float> a(64, 1.f), b(64, 3.f);
    lockstepRequest_t req = nullptr;
    if (r == 0) {
      ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
      ASSERT_EQ(lockstepIallReduce(a.data(), a.data(), a.size(), lockstepFloat32, lockstepSum, comms[r], &req),
                lockstepSuccess);
      tRefuseThreads = true;
      const lockstepResult_t res = lockstepGroupEnd();
      tRefuseThreads = false;
      EXPECT_EQ(res, lockstepSystemError) << lockstepGetLastError(comms[r]);
      ASSERT_NE(req, nullptr);
      EXPECT_EQ(lockstepWait(&req, 10000), lockstepSystemError);
      waitError = lockstepGetLastError(comms[r]);
      if (req) lockstepRequestFree(&req);
      EXPECT_EQ(lockstepAllReduce(b.data(), b.data(), b.size(), lockstepFloat32, lockstepSum, comms[r], nullptr),
                lockstepSuccess)
          << lockstepGetLastError(comms[r]);
      sums[r] = b[0];
    } else {
      EXPECT_EQ(lockstepAllReduce(a.data(), a.data(), a.size(), lockstepFloat32, lockstepSum, comms[r], nullptr),
                lockstepSuccess)
          << lockstepGetLastError(comms[r]);
      sums[r] = a[0];
    }
  });
  EXPECT_NE(waitError.find("progress thread"), std::string::npos) << waitError;
  EXPECT_EQ(sums[0], 4.f);
  EXPECT_EQ(sums[1], 4.f);
  destroyAll(comms);
}

// A split whose new first rank cannot start the new communicator's rendezvous (its thread, here)
// tells the other members, which failed only at the timeout (30 s here) before.
TEST(ThreadLimit, ASplitWhoseFirstRankCannotServeTheRendezvousFailsEveryMemberAtOnce) {
  setenv("LOCKSTEP_TIMEOUT", "30", 1);
  const int n = 3;
  auto comms = initThreadComms(n);
  unsetenv("LOCKSTEP_TIMEOUT");
  std::vector<lockstepResult_t> results(n);
  std::vector<std::string> errors(n);
  std::vector<double> seconds(n);
  onThreads(n, [&](int r) {
    lockstepComm_t child = nullptr;
    const auto start = std::chrono::steady_clock::now();
    tRefuseThreads = r == 0;
    results[r] = lockstepCommSplit(comms[r], 0, r, &child);
    tRefuseThreads = false;
    seconds[r] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    errors[r] = lockstepGetLastError(comms[r]);
    if (child) lockstepCommDestroy(child);
  });
  EXPECT_EQ(results[0], lockstepSystemError) << errors[0];
  EXPECT_NE(errors[0].find("rendezvous thread (a thread limit"), std::string::npos) << errors[0];
  for (int r = 1; r < n; ++r) {
    EXPECT_EQ(results[r], lockstepRemoteError) << errors[r];
    EXPECT_NE(errors[r].find("could not start its rendezvous"), std::string::npos) << errors[r];
    EXPECT_LT(seconds[r], 5) << errors[r];
  }
  destroyAll(comms);
}

// A rank that cannot start its communicator's watchdog thread says that a thread limit stopped
// it (it said only "Resource temporarily unavailable"), and tells its peer, whose init fails at
// once saying so. The thread was started after the control connections, when the peer's setup
// could be over: its init succeeded and its first call failed (before that, it reported the live
// rank as exited).
TEST(ThreadLimit, AnInitThatCannotStartTheWatchdogSaysSo) {
  lockstepUniqueId id;
  ASSERT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  setenv("LOCKSTEP_TIMEOUT", "30", 1);
  std::vector<lockstepComm_t> comms(2, nullptr);
  std::vector<lockstepResult_t> results(2);
  std::vector<std::string> errors(2);
  std::vector<double> seconds(2);
  onThreads(2, [&](int r) {
    const auto start = std::chrono::steady_clock::now();
    tRefuseThreads = r == 1;
    results[r] = lockstepCommInitRank(&comms[r], 2, id, r);
    tRefuseThreads = false;
    seconds[r] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    errors[r] = lockstepGetLastError(nullptr);
  });
  unsetenv("LOCKSTEP_TIMEOUT");
  EXPECT_EQ(results[1], lockstepSystemError) << errors[1];
  EXPECT_NE(errors[1].find("watchdog thread (a thread limit"), std::string::npos) << errors[1];
  EXPECT_LT(seconds[0], 5) << errors[0];
  EXPECT_EQ(results[0], lockstepRemoteError) << errors[0];  // the peer's failure, not its own
  EXPECT_NE(errors[0].find("rank 1 was starting its communicator's watchdog thread"), std::string::npos) << errors[0];
  for (auto c : comms) {
    if (c) lockstepCommDestroy(c);
  }
}

// A group over two communicators, one whose thread runs and one whose thread the system refuses:
// nothing of it runs. Once the first communicator's op was queued and ran before the second's
// thread was refused: GroupEnd failed after writing the first op's buffer, and the caller's retry
// paired with the peers' next calls (success, with another iteration's data).
TEST(ThreadLimit, AGroupOverTwoCommunicatorsRunsNothingWhenOneCannotStartItsThread) {
  const int n = 2;
  auto a = initThreadComms(n), b = initThreadComms(n);
  std::vector<float> sumA(n), sumB(n), untouched(n);
  std::vector<lockstepResult_t> first(n);
  onThreads(n, [&](int r) {
    // Starts a's progress thread on both ranks.
    float warm = 1;
    lockstepRequest_t req = nullptr;
    ASSERT_EQ(lockstepIallReduce(&warm, &warm, 1, lockstepFloat32, lockstepSum, a[r], &req), lockstepSuccess);
    ASSERT_EQ(lockstepWait(&req, -1), lockstepSuccess);
    auto group = [&](float* x, float* y) {
      EXPECT_EQ(lockstepGroupStart(), lockstepSuccess);
      EXPECT_EQ(lockstepAllReduce(x, x, 1, lockstepFloat32, lockstepSum, a[r], nullptr), lockstepSuccess);
      EXPECT_EQ(lockstepAllReduce(y, y, 1, lockstepFloat32, lockstepSum, b[r], nullptr), lockstepSuccess);
      return lockstepGroupEnd();
    };
    float x = 10.f + r, y = 100.f + r;
    if (r == 0) {
      tRefuseThreads = true;
      first[r] = group(&x, &y);
      tRefuseThreads = false;
      untouched[r] = x;
      x = 20.f, y = 200.f;  // the retry's data
    }
    EXPECT_EQ(group(&x, &y), lockstepSuccess) << lockstepGetLastError(nullptr);
    sumA[r] = x;
    sumB[r] = y;
  });
  EXPECT_EQ(first[0], lockstepSystemError);
  EXPECT_EQ(untouched[0], 10.f) << "the failed group ran its op on the communicator whose thread started";
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(sumA[r], 20.f + 11.f) << "rank " << r;
    EXPECT_EQ(sumB[r], 200.f + 101.f) << "rank " << r;
  }
  destroyAll(a);
  destroyAll(b);
}

}  // namespace
}  // namespace lockstep
