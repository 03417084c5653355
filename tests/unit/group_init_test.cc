// Communicators initialised inside a group: one thread creates every rank's communicator, as
// NCCL's single-process multi-device programs do (ncclGroupStart, ncclCommInitRank per device,
// ncclGroupEnd). Before, the first init blocked in the rendezvous, waiting for ranks the same
// thread would create only after it returned, until the timeout.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "lockstep/lockstep.h"
#include "src/net/socket.h"
#include "tests/common/thread_comms.h"

namespace lockstep {
namespace {

using testing::destroyAll;

class GroupedInit : public ::testing::Test {
 protected:
  void SetUp() override { setenv("LOCKSTEP_TIMEOUT", "3", 1); }
  void TearDown() override { unsetenv("LOCKSTEP_TIMEOUT"); }
};

std::string lastError() { return lockstepGetLastError(nullptr); }

uint16_t freePort() {
  Fd probe = listenOn(NetAddr::loopback());
  return localAddress(probe.get()).port;
}

TEST_F(GroupedInit, OneThreadCreatesEveryRankThenDrivesThemInAGroup) {
  for (int n : {1, 2, 4}) {
    lockstepUniqueId id;
    ASSERT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
    std::vector<lockstepComm_t> comms(n, nullptr);
    const auto start = std::chrono::steady_clock::now();
    ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
    ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);  // nested: the outermost end builds them
    for (int r = 0; r < n; ++r) ASSERT_EQ(lockstepCommInitRank(&comms[r], n, id, r), lockstepSuccess) << lastError();
    ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess);
    for (int r = 0; r < n; ++r) ASSERT_NE(comms[r], nullptr);
    ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << "n=" << n << ": " << lastError();
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 2.0)
        << "n=" << n << ": the inits waited for one another";
    for (int r = 0; r < n; ++r) {
      int rank = -1, count = -1;
      EXPECT_EQ(lockstepCommUserRank(comms[r], &rank), lockstepSuccess);
      EXPECT_EQ(lockstepCommCount(comms[r], &count), lockstepSuccess);
      EXPECT_EQ(rank, r);
      EXPECT_EQ(count, n);
    }
    const size_t count = 1001;
    std::vector<std::vector<float>> bufs(n, std::vector<float>(count));
    for (int r = 0; r < n; ++r) std::fill(bufs[r].begin(), bufs[r].end(), float(r + 1));
    ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
    for (int r = 0; r < n; ++r) {
      ASSERT_EQ(
          lockstepAllReduce(bufs[r].data(), bufs[r].data(), count, lockstepFloat32, lockstepSum, comms[r], nullptr),
          lockstepSuccess);
    }
    ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << lastError();
    for (int r = 0; r < n; ++r) EXPECT_EQ(bufs[r][count - 1], float(n * (n + 1) / 2)) << "n=" << n << " rank " << r;
    destroyAll(comms);
  }
}

TEST_F(GroupedInit, AHandleIsRefusedUntilItsGroupEndsAndTheRefusalDiscardsTheGroup) {
  lockstepUniqueId id;
  ASSERT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  lockstepComm_t comm[2] = {nullptr, nullptr};
  int count = -1;
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepCommInitRank(&comm[0], 2, id, 0), lockstepSuccess);
  ASSERT_EQ(lockstepCommInitRank(&comm[1], 2, id, 1), lockstepSuccess);
  lockstepResult_t async = lockstepSuccess;
  EXPECT_EQ(lockstepCommGetAsyncError(comm[0], &async), lockstepSuccess) << "not refused: " << lastError();
  EXPECT_EQ(async, lockstepInProgress);
  EXPECT_EQ(lockstepCommCount(comm[0], &count), lockstepInvalidUsage);
  EXPECT_NE(lastError().find("inside a group that has not ended"), std::string::npos) << lastError();
  // That refusal was a failed call in the group: it is discarded, inits included.
  EXPECT_EQ(lockstepGroupEnd(), lockstepInvalidUsage);
  for (lockstepComm_t c : comm) {
    EXPECT_EQ(lockstepCommCount(c, &count), lockstepInvalidUsage);
    EXPECT_NE(lastError().find("initialisation at the end of its group failed (group discarded"), std::string::npos)
        << lastError();
    // A watchdog polling the handle is given the init's failure as its code (it was refused).
    async = lockstepSuccess;
    EXPECT_EQ(lockstepCommGetAsyncError(c, &async), lockstepSuccess) << lastError();
    EXPECT_EQ(async, lockstepInvalidUsage);
    EXPECT_NE(lastError().find("group discarded"), std::string::npos) << lastError();
  }
  EXPECT_EQ(lockstepCommDestroy(comm[0]), lockstepSuccess) << lastError();
  EXPECT_EQ(lockstepCommAbort(comm[1]), lockstepSuccess) << lastError();
  EXPECT_EQ(lockstepCommDestroy(comm[0]), lockstepInvalidUsage) << "destroyed twice";

  // Abandoned: the same.
  lockstepComm_t other = nullptr;
  ASSERT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepCommInitRank(&other, 1, id, 0), lockstepSuccess);
  ASSERT_EQ(lockstepGroupAbandon(), lockstepSuccess);
  EXPECT_EQ(lockstepCommCount(other, &count), lockstepInvalidUsage);
  EXPECT_NE(lastError().find("abandoned"), std::string::npos) << lastError();
  EXPECT_EQ(lockstepCommDestroy(other), lockstepSuccess) << lastError();
}

// A handle destroyed before its group ends is left out of it (an object that owned it went out
// of scope: the C++ Comm's destructor in an exception's path), and the rest of the group is built.
// Both destroy and abort of it were refused, and the handle was lost.
TEST_F(GroupedInit, AHandleDestroyedBeforeItsGroupEndsIsLeftOut) {
  lockstepUniqueId kept, dropped;
  ASSERT_EQ(lockstepGetUniqueId(&kept), lockstepSuccess);
  ASSERT_EQ(lockstepGetUniqueId(&dropped), lockstepSuccess);
  lockstepComm_t a = nullptr, b = nullptr;
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepCommInitRank(&a, 1, kept, 0), lockstepSuccess);
  ASSERT_EQ(lockstepCommInitRank(&b, 1, dropped, 0), lockstepSuccess);
  EXPECT_EQ(lockstepCommAbort(b), lockstepSuccess) << lastError();
  ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << lastError();
  int count = -1;
  EXPECT_EQ(lockstepCommCount(a, &count), lockstepSuccess) << lastError();
  EXPECT_EQ(count, 1);
  EXPECT_EQ(lockstepCommCount(b, &count), lockstepInvalidUsage);
  EXPECT_EQ(lockstepCommDestroy(a), lockstepSuccess) << lastError();
}

// A watchdog aborts a grouped init that waits for a rank that never comes: GroupEnd returns
// lockstepAborted within a second, not at the timeout, and the handle is freed (helper-68). The
// group's other rank of that communicator stops too, failed and saying why: it went on waiting
// in the rendezvous to the timeout (helper-70).
TEST_F(GroupedInit, AnAbortFromAnotherThreadEndsAGroupsInitAtOnce) {
  setenv("LOCKSTEP_TIMEOUT", "20", 1);
  lockstepUniqueId id;
  ASSERT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  std::atomic<lockstepComm_t> handle{nullptr};
  std::atomic<lockstepResult_t> aborted{lockstepInternalError};
  std::thread watchdog([&] {
    while (!handle.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // inside GroupEnd by now
    // What the watchdog sees of a build still waiting: in progress, as NCCL says of a
    // non-blocking init.
    lockstepResult_t async = lockstepSuccess;
    EXPECT_EQ(lockstepCommGetAsyncError(handle.load(), &async), lockstepSuccess) << lastError();
    EXPECT_EQ(async, lockstepInProgress);
    aborted = lockstepCommAbort(handle.load());
  });
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  lockstepComm_t comm[2] = {nullptr, nullptr};
  for (int r = 0; r < 2; ++r) ASSERT_EQ(lockstepCommInitRank(&comm[r], 3, id, r), lockstepSuccess);  // no rank 2
  handle = comm[0];
  const lockstepResult_t result = lockstepGroupEnd();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  watchdog.join();
  EXPECT_EQ(aborted.load(), lockstepSuccess);
  EXPECT_EQ(result, lockstepAborted) << lastError();
  EXPECT_NE(lastError().find("aborted (lockstepCommAbort) while"), std::string::npos) << lastError();
  EXPECT_LT(took, 3.0);
  int count = -1;
  EXPECT_EQ(lockstepCommCount(comm[0], &count), lockstepAborted) << "the abort freed it";
  EXPECT_EQ(lockstepCommCount(comm[1], &count), lockstepInvalidUsage);
  EXPECT_NE(lastError().find("another rank of this communicator, created in the same group, was aborted"),
            std::string::npos)
      << lastError();
  EXPECT_EQ(lockstepCommDestroy(comm[1]), lockstepSuccess) << lastError();
}

// Rank 0 of a communicator whose rank 1 the same group also creates, destroyed before the end:
// rank 1 has nothing to wait for and fails at once, saying so (it waited to the timeout, and
// blamed rank 0 for never connecting; helper-68).
TEST_F(GroupedInit, ARankOfACommunicatorWhosePartnerWasDestroyedFailsAtOnce) {
  setenv("LOCKSTEP_TIMEOUT", "20", 1);
  lockstepUniqueId id;
  ASSERT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  lockstepComm_t comm[2] = {nullptr, nullptr};
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  for (int r = 0; r < 2; ++r) ASSERT_EQ(lockstepCommInitRank(&comm[r], 2, id, r), lockstepSuccess);
  ASSERT_EQ(lockstepCommDestroy(comm[0]), lockstepSuccess);
  EXPECT_EQ(lockstepGroupEnd(), lockstepInvalidUsage);
  EXPECT_NE(lastError().find("rank 0 of this communicator, created in the same group, was destroyed before the group "
                             "ended"),
            std::string::npos)
      << lastError();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 2.0);
  EXPECT_EQ(lockstepCommDestroy(comm[1]), lockstepSuccess) << lastError();
}

// Rank 0 serving the rendezvous itself (LOCKSTEP_ROOT, as under torchrun): the service it starts
// in the init call must live until the group's end builds the communicator. It was freed when
// the call returned, and the build waited for a rendezvous that was gone (helper-66).
TEST_F(GroupedInit, InitFromTheEnvironmentWithItsOwnRendezvousWorksInAGroup) {
  setenv("LOCKSTEP_RANK", "0", 1);
  setenv("LOCKSTEP_WORLD_SIZE", "1", 1);
  setenv("LOCKSTEP_ROOT", ("127.0.0.1:" + std::to_string(freePort())).c_str(), 1);
  lockstepComm_t comm = nullptr;
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepCommInitFromEnv(&comm), lockstepSuccess) << lastError();
  EXPECT_EQ(lockstepGroupEnd(), lockstepSuccess) << lastError();
  for (const char* v : {"LOCKSTEP_RANK", "LOCKSTEP_WORLD_SIZE", "LOCKSTEP_ROOT"}) unsetenv(v);
  float x = 2;
  EXPECT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comm, nullptr), lockstepSuccess);
  EXPECT_EQ(lockstepCommDestroy(comm), lockstepSuccess);
}

// One rank of three is never created: the group's end fails within the timeout naming it, and
// the two handles it made say why until destroyed. The thread's next groups work.
TEST_F(GroupedInit, AFailedInitIsReportedByTheGroupEndAndByItsHandles) {
  setenv("LOCKSTEP_TIMEOUT", "2", 1);
  lockstepUniqueId id;
  ASSERT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  lockstepComm_t comm[2] = {nullptr, nullptr};
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  for (int r = 0; r < 2; ++r) ASSERT_EQ(lockstepCommInitRank(&comm[r], 3, id, r), lockstepSuccess);
  const lockstepResult_t result = lockstepGroupEnd();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string why = lastError();
  EXPECT_NE(result, lockstepSuccess);
  EXPECT_LT(took, 8.0);
  EXPECT_NE(why.find("communicator #0 of the group (rank 0 of 3) failed"), std::string::npos) << why;
  EXPECT_NE(why.find("rank(s) 2 never connected"), std::string::npos) << why;
  int count = -1;
  for (lockstepComm_t c : comm) {
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(lockstepCommCount(c, &count), lockstepInvalidUsage);
    EXPECT_NE(lastError().find("never connected"), std::string::npos) << lastError();
    // A watchdog polling the handle is given the init's code, as NCCL gives a failed
    // non-blocking init's (it was refused, the code only in the refusal's text).
    lockstepResult_t async = lockstepSuccess;
    EXPECT_EQ(lockstepCommGetAsyncError(c, &async), lockstepSuccess) << lastError();
    EXPECT_EQ(async, result);
    EXPECT_NE(lastError().find("never connected"), std::string::npos) << lastError();
  }
  for (lockstepComm_t c : comm) EXPECT_EQ(lockstepCommDestroy(c), lockstepSuccess) << lastError();
  lockstepResult_t async = lockstepSuccess;
  EXPECT_EQ(lockstepCommGetAsyncError(comm[0], &async), lockstepInvalidUsage) << "destroyed";
  std::vector<lockstepComm_t> fresh = testing::initThreadComms(2);
  destroyAll(fresh);
}

}  // namespace
}  // namespace lockstep
