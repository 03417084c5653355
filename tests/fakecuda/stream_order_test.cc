// The stream-ordered device path (src/exec/stream_order.h) end to end on the CPU: real
// communicators on threads, over inproc and socket links, with a stand-in CUDA driver
// (fake_cuda_driver.c) whose "device memory" is marked host memory and whose streams are threads
// that run their commands in order. What a GPU adds (real copies over PCIe, real stream
// semantics) is left to tests/gpu; everything Lockstep itself does is exercised here.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "lockstep/lockstep.h"
#include "src/core/memory_kind.h"
#include "tests/common/thread_comms.h"
#include "tests/fakecuda/every_collective.h"
#include "tests/fakecuda/fake_cuda.h"

namespace lockstep {
namespace {

using testing::destroyAll;
using testing::initThreadComms;
using testing::onThreads;
using Clock = std::chrono::steady_clock;

class StreamOrdered : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    setenv("LOCKSTEP_TRANSPORTS", GetParam(), 1);
    setenv("LOCKSTEP_TIMEOUT", "20", 1);
    cuda = FakeCuda::load();
    live0 = cuda.hostLive();
  }
  void TearDown() override {
    unsetenv("LOCKSTEP_TRANSPORTS");
    unsetenv("LOCKSTEP_TIMEOUT");
  }
  FakeCuda cuda{};
  long live0 = 0;  // pinned allocations live before the test (a destroy may keep some for good)
};

// Every collective with device buffers, posted back to back on each rank's stream, checked once
// the stream has run (tests/fakecuda/every_collective.h).
TEST_P(StreamOrdered, EveryCollectiveOnDeviceBuffersIsRightOnceTheStreamHasRun) {
  constexpr int kRanks = 3;
  auto comms = initThreadComms(kRanks);
  std::vector<std::string> errors(kRanks);
  onThreads(kRanks, [&](int r) { errors[r] = everyCollectiveOnDevice(cuda, comms[r], r, kRanks); });
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  destroyAll(comms);
  EXPECT_EQ(cuda.hostLive(), live0) << "pinned staging left after destroy";
}

struct Fill {
  float* p;
  size_t n;
  float v;
  static void run(void* self) {
    auto* f = static_cast<Fill*>(self);
    for (size_t i = 0; i < f->n; ++i) f->p[i] = f->v;
  }
};

// The call returns while the stream is held, before the stream has even produced the input (a
// host function queued ahead of the call writes it); the op sees that input, not the buffer's
// contents at call time, and its result lands only once the stream is let go.
TEST_P(StreamOrdered, ACallReturnsAtOnceAndSeesTheInputTheStreamProducesBeforeIt) {
  constexpr int kRanks = 2;
  constexpr size_t kCount = 4096;
  auto comms = initThreadComms(kRanks);
  std::vector<std::string> errors(kRanks);
  onThreads(kRanks, [&](int r) {
    void* s = cuda.streamCreate();
    DeviceArray<float> in(cuda, kCount), out(cuda, kCount);
    for (size_t i = 0; i < kCount; ++i) in[i] = out[i] = -7.0f;
    ASSERT_EQ(cuda.streamHold(s), 0);
    Fill fill{in.p, kCount, float(r + 1)};
    ASSERT_EQ(cuda.launchHostFunc(s, &Fill::run, &fill), 0);
    auto t0 = Clock::now();
    lockstepResult_t rc = lockstepAllReduce(in.p, out.p, kCount, lockstepFloat32, lockstepSum, comms[r], s);
    auto callMs = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (rc != lockstepSuccess) {
      errors[r] = lockstepGetLastError(nullptr);
      return;
    }
    EXPECT_LT(callMs, 1000.0) << "the call waited for the stream";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_FALSE(cuda.streamIdle(s));
    EXPECT_EQ(out[0], -7.0f) << "the result arrived before the stream reached the op";
    cuda.streamResume(s);
    ASSERT_EQ(cuda.streamSynchronize(s), 0);
    for (size_t i = 0; i < kCount; ++i) ASSERT_EQ(out[i], 3.0f) << "rank " << r << " i " << i;
    cuda.streamDestroy(s);
  });
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  destroyAll(comms);
}

// As nccl-tests does: one thread drives every rank's communicator in one group. This only
// works if nothing in the group blocks.
TEST_P(StreamOrdered, OneThreadDrivesEveryCommunicatorInAGroup) {
  constexpr int kRanks = 3;
  constexpr size_t kCount = 100000;
  auto comms = initThreadComms(kRanks);
  std::vector<void*> streams;
  std::vector<std::unique_ptr<DeviceArray<int32_t>>> bufs;
  for (int r = 0; r < kRanks; ++r) {
    streams.push_back(cuda.streamCreate());
    bufs.push_back(std::make_unique<DeviceArray<int32_t>>(cuda, kCount));
    for (size_t i = 0; i < kCount; ++i) (*bufs[r])[i] = int32_t(r * 3 + i);
  }
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_EQ(lockstepAllReduce(bufs[r]->p, bufs[r]->p, kCount, lockstepInt32, lockstepSum, comms[r], streams[r]),
              lockstepSuccess)
        << lockstepGetLastError(nullptr);
  }
  ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << lockstepGetLastError(nullptr);
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_EQ(cuda.streamSynchronize(streams[r]), 0);
    for (size_t i = 0; i < kCount; ++i) ASSERT_EQ((*bufs[r])[i], int32_t(9 + 3 * i)) << "rank " << r;
    cuda.streamDestroy(streams[r]);
  }
  destroyAll(comms);
}

// shm links join processes, not threads: tests/mp/device_check.cc covers them.
INSTANTIATE_TEST_SUITE_P(Transports, StreamOrdered, ::testing::Values("inproc", "socket"),
                         [](const auto& info) { return std::string(info.param); });

class StreamFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    cuda = FakeCuda::load();
    live0 = cuda.hostLive();
  }
  void TearDown() override { unsetenv("LOCKSTEP_TIMEOUT"); }
  FakeCuda cuda{};
  long live0 = 0;  // pinned allocations live before the test (a destroy may keep some for good)
};

// A stream that never reaches the op: the rank's executor gives up after the timeout, names the
// stream, the peer learns it, and both streams are released (nothing waits forever).
TEST_F(StreamFaults, AStreamThatNeverReachesTheOpTimesOutAndNoStreamIsLeftWaiting) {
  setenv("LOCKSTEP_TIMEOUT", "1", 1);
  constexpr int kRanks = 2;
  constexpr size_t kCount = 256;
  auto comms = initThreadComms(kRanks);
  std::vector<lockstepResult_t> async(kRanks, lockstepSuccess);
  std::vector<double> releasedMs(kRanks);
  onThreads(kRanks, [&](int r) {
    void* s = cuda.streamCreate();
    DeviceArray<float> buf(cuda, kCount);
    if (r == 0) ASSERT_EQ(cuda.streamHold(s), 0);  // rank 0's stream is stuck before the op
    auto t0 = Clock::now();
    ASSERT_EQ(lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[r], s), lockstepSuccess);
    if (r == 1) {
      ASSERT_EQ(cuda.streamSynchronizeFor(s, 10000), 0) << "rank 1's stream was left waiting";
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      cuda.streamResume(s);  // the op has failed by now: its wait is already satisfied
      ASSERT_EQ(cuda.streamSynchronizeFor(s, 10000), 0) << "rank 0's stream was left waiting";
    }
    releasedMs[r] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    ASSERT_EQ(lockstepCommGetAsyncError(comms[r], &async[r]), lockstepSuccess);
    cuda.streamDestroy(s);
  });
  EXPECT_EQ(async[0], lockstepTimeout);
  EXPECT_NE(async[1], lockstepSuccess);  // rank 0 told it, or it timed out waiting
  for (auto c : comms) lockstepCommDestroy(c);
  EXPECT_EQ(cuda.hostLive(), live0);
}

// A rank whose op ran but whose result cannot reach its device buffer (the driver refused the
// copy-out's host function) refuses later work: the group hears it at once, so its peer's next
// op fails within a second or so naming it, instead of waiting out the 20 s timeout.
TEST_F(StreamFaults, ARankWhoseResultCannotReachItsDeviceTellsItsPeers) {
  setenv("LOCKSTEP_TIMEOUT", "20", 1);
  setenv("LOCKSTEP_CUDA_IPC", "0", 1);  // the staged path, whose copy-out can fail this way
  constexpr size_t kCount = 256;
  auto comms = initThreadComms(2);
  std::vector<lockstepResult_t> async(2, lockstepSuccess);
  std::vector<double> secs(2);
  onThreads(2, [&](int r) {
    void* s = cuda.streamCreate();
    DeviceArray<float> buf(cuda, kCount);
    // The staged path's second host function is the copy-out's (the first opens the op).
    if (r == 0) cuda.streamFailHostFunc(s, 2);
    ASSERT_EQ(lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[r], s), lockstepSuccess);
    ASSERT_EQ(cuda.streamSynchronizeFor(s, 10000), 0);
    auto t0 = Clock::now();
    lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[r], s);  // may fail at once
    ASSERT_EQ(cuda.streamSynchronizeFor(s, 30000), 0) << "rank " << r << "'s stream was left waiting";
    secs[r] = std::chrono::duration<double>(Clock::now() - t0).count();
    ASSERT_EQ(lockstepCommGetAsyncError(comms[r], &async[r]), lockstepSuccess);
    cuda.streamDestroy(s);
  });
  EXPECT_EQ(async[0], lockstepSystemError);
  EXPECT_EQ(async[1], lockstepSystemError) << "rank 1 should have heard rank 0's failure (its code is relayed)";
  EXPECT_LT(secs[1], 5.0) << "rank 1 waited for its timeout";
  for (auto c : comms) lockstepCommDestroy(c);
  unsetenv("LOCKSTEP_CUDA_IPC");
}

// Destroy while a stream is stuck before its op: the destroy gives up waiting after the timeout
// and keeps the staging. When the stream runs later, its host function releases a block and
// counts the ticket in memory that is still there (it was freed under it once: only a sanitizer
// or a corrupted heap told).
TEST_F(StreamFaults, AStreamThatRunsAfterADestroyGaveUpOnItTouchesNothingFreed) {
  setenv("LOCKSTEP_TIMEOUT", "1", 1);
  setenv("LOCKSTEP_CUDA_IPC", "0", 1);  // the staged path, whose tickets the stream releases
  constexpr size_t kCount = 256;
  auto comms = initThreadComms(2);
  void* stuck = cuda.streamCreate();
  DeviceArray<float> buf(cuda, kCount);
  onThreads(2, [&](int r) {
    void* s = r == 0 ? stuck : cuda.streamCreate();
    DeviceArray<float> mine(cuda, kCount);
    if (r == 0) ASSERT_EQ(cuda.streamHold(s), 0);
    lockstepAllReduce(r == 0 ? buf.p : mine.p, r == 0 ? buf.p : mine.p, kCount, lockstepFloat32, lockstepSum, comms[r],
                      s);
    if (r == 1) {
      ASSERT_EQ(cuda.streamSynchronizeFor(s, 10000), 0);
      cuda.streamDestroy(s);
    }
  });
  auto t0 = Clock::now();
  for (auto c : comms) EXPECT_EQ(lockstepCommDestroy(c), lockstepSuccess);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 10.0) << "destroy waited too long";
  EXPECT_FALSE(cuda.streamIdle(stuck)) << "the stream should still be stuck";
  EXPECT_GT(cuda.hostLive(), live0) << "the staging the stream may still use was freed";
  cuda.streamResume(stuck);
  EXPECT_EQ(cuda.streamSynchronizeFor(stuck, 10000), 0) << "the stream never finished";
  cuda.streamDestroy(stuck);
  unsetenv("LOCKSTEP_CUDA_IPC");
}

// An abort while a stream is stuck before its op (often the reason to abort) returns within
// moments, keeping the staging the stream may still use; it once waited out the 20 s timeout.
TEST_F(StreamFaults, AnAbortDoesNotWaitForAStreamStuckBeforeItsOp) {
  setenv("LOCKSTEP_TIMEOUT", "20", 1);
  setenv("LOCKSTEP_CUDA_IPC", "0", 1);
  constexpr size_t kCount = 256;
  auto comms = initThreadComms(2);
  void* stuck = cuda.streamCreate();
  DeviceArray<float> buf(cuda, kCount);
  ASSERT_EQ(cuda.streamHold(stuck), 0);
  ASSERT_EQ(lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[0], stuck), lockstepSuccess);
  auto t0 = Clock::now();
  EXPECT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0) << "the abort waited for the stream";
  EXPECT_GT(cuda.hostLive(), live0) << "the staging the stream may still use was freed";
  EXPECT_EQ(lockstepCommDestroy(comms[1]), lockstepSuccess);
  cuda.streamResume(stuck);
  EXPECT_EQ(cuda.streamSynchronizeFor(stuck, 10000), 0) << "the stream never finished";
  cuda.streamDestroy(stuck);
  unsetenv("LOCKSTEP_CUDA_IPC");
}

// After its communicator failed, a stream-ordered call is refused. It once returned success,
// its op failed without running, and the stream's copy-out wrote the recycled staging (an earlier
// call's result) into the caller's buffer.
TEST_F(StreamFaults, ACallOnAFailedCommunicatorIsRefusedAndLeavesTheBufferAlone) {
  setenv("LOCKSTEP_TIMEOUT", "1", 1);
  setenv("LOCKSTEP_CUDA_IPC", "0", 1);
  constexpr size_t kCount = 256;
  auto comms = initThreadComms(2);
  void* s = cuda.streamCreate();
  DeviceArray<float> a(cuda, kCount), b(cuda, kCount);
  for (size_t i = 0; i < kCount; ++i) a[i] = 100.0f;
  // Rank 1 never joins: rank 0's op times out and the communicator fails.
  ASSERT_EQ(lockstepAllReduce(a.p, a.p, kCount, lockstepFloat32, lockstepSum, comms[0], s), lockstepSuccess);
  ASSERT_EQ(cuda.streamSynchronizeFor(s, 10000), 0);
  lockstepResult_t async = lockstepSuccess;
  ASSERT_EQ(lockstepCommGetAsyncError(comms[0], &async), lockstepSuccess);
  ASSERT_EQ(async, lockstepTimeout);
  for (size_t i = 0; i < kCount; ++i) b[i] = 7.0f;
  EXPECT_EQ(lockstepAllReduce(b.p, b.p, kCount, lockstepFloat32, lockstepSum, comms[0], s), lockstepTimeout);
  ASSERT_EQ(cuda.streamSynchronizeFor(s, 10000), 0);
  for (size_t i = 0; i < kCount; ++i) ASSERT_EQ(b[i], 7.0f) << i;
  cuda.streamDestroy(s);
  for (auto c : comms) lockstepCommDestroy(c);
  unsetenv("LOCKSTEP_CUDA_IPC");
}

// A call whose enqueue fails after its input copy was queued (the driver refuses the next host
// function) leaves that copy's staging in use: a destroy keeps it. It was freed under the queued
// copy, which then wrote into memory the next allocation got.
TEST_F(StreamFaults, StagingAQueuedCopyStillUsesOutlivesTheDestroy) {
  setenv("LOCKSTEP_CUDA_IPC", "0", 1);
  constexpr size_t kCount = 4096;
  auto comms = initThreadComms(2);
  void* s = cuda.streamCreate();
  DeviceArray<float> buf(cuda, kCount);
  for (size_t i = 0; i < kCount; ++i) buf[i] = 42.0f;
  ASSERT_EQ(cuda.streamHold(s), 0);  // busy with earlier work
  cuda.streamFailHostFunc(s, 1);
  EXPECT_NE(lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[0], s), lockstepSuccess);
  for (auto c : comms) lockstepCommDestroy(c);
  EXPECT_GT(cuda.hostLive(), live0) << "the staging the queued copy writes was freed";
  cuda.streamResume(s);
  EXPECT_EQ(cuda.streamSynchronizeFor(s, 10000), 0);
  cuda.streamDestroy(s);
  unsetenv("LOCKSTEP_CUDA_IPC");
}

// A reduce on five ranks, whose tree has a non-root node with two children: the non-roots pass
// no recvbuff (as NCCL allows) and their device inputs stay as they were; the root's is right.
TEST_F(StreamFaults, AReduceWritesOnlyTheRootsDeviceBuffer) {
  setenv("LOCKSTEP_ALGO", "reduce=tree", 1);
  constexpr int kRanks = 5;
  constexpr size_t kCount = 1031;
  auto comms = initThreadComms(kRanks);
  std::vector<std::string> errors(kRanks);
  onThreads(kRanks, [&](int r) {
    void* s = cuda.streamCreate();
    DeviceArray<float> in(cuda, kCount), out(cuda, kCount);
    for (size_t i = 0; i < kCount; ++i) in[i] = static_cast<float>(r + 1);
    if (lockstepReduce(in.p, r == 0 ? out.p : nullptr, kCount, lockstepFloat32, lockstepSum, 0, comms[r], s) !=
        lockstepSuccess)
      errors[r] = lockstepGetLastError(nullptr);
    if (cuda.streamSynchronizeFor(s, 10000) != 0) errors[r] += " stream left waiting";
    for (size_t i = 0; i < kCount && errors[r].empty(); ++i) {
      if (in[i] != static_cast<float>(r + 1)) errors[r] = "input changed at " + std::to_string(i);
      if (r == 0 && out[i] != 15.0f) errors[r] = "wrong result at " + std::to_string(i);
    }
    lockstepResult_t async = lockstepSuccess;
    lockstepCommGetAsyncError(comms[r], &async);
    if (async != lockstepSuccess && errors[r].empty()) errors[r] = "async error " + std::to_string(async);
    cuda.streamDestroy(s);
  });
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  destroyAll(comms);
  unsetenv("LOCKSTEP_ALGO");
  EXPECT_EQ(cuda.hostLive(), live0);
}

// Abort from another thread while a rank's op waits for a peer that never posts: the stream is
// released within a second and the async error says aborted.
TEST_F(StreamFaults, AbortReleasesAStreamWhoseOpWaitsForAPeer) {
  constexpr size_t kCount = 1024;
  auto comms = initThreadComms(2);
  void* s = cuda.streamCreate();
  DeviceArray<float> buf(cuda, kCount);
  ASSERT_EQ(lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[0], s), lockstepSuccess);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(cuda.streamIdle(s)) << "the stream should be waiting for the op";
  auto t0 = Clock::now();
  std::thread aborter([&] { EXPECT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess); });
  EXPECT_EQ(cuda.streamSynchronizeFor(s, 5000), 0) << "the aborted op left its stream waiting";
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  aborter.join();
  EXPECT_LT(ms, 1000.0);
  cuda.streamDestroy(s);
  EXPECT_EQ(lockstepCommDestroy(comms[1]), lockstepSuccess);
  EXPECT_EQ(cuda.hostLive(), live0);
}

// A loop of the same calls allocates its pinned staging once; destroy frees it.
TEST_F(StreamFaults, RepeatedCallsReuseTheirPinnedStaging) {
  constexpr int kRanks = 2;
  constexpr size_t kCount = 50000;
  auto comms = initThreadComms(kRanks);
  std::vector<unsigned long long> afterFirst(kRanks), afterAll(kRanks);
  std::vector<void*> streams = {cuda.streamCreate(), cuda.streamCreate()};
  onThreads(kRanks, [&](int r) {
    DeviceArray<float> buf(cuda, kCount);
    for (int it = 0; it < 30; ++it) {
      ASSERT_EQ(lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[r], streams[r]),
                lockstepSuccess);
      ASSERT_EQ(cuda.streamSynchronize(streams[r]), 0);
      if (it == 0) afterFirst[r] = cuda.hostAllocs();
    }
    afterAll[r] = cuda.hostAllocs();
  });
  // Both ranks' first calls are done before either's later ones could allocate.
  const unsigned long long first = std::max(afterFirst[0], afterFirst[1]);
  EXPECT_EQ(std::max(afterAll[0], afterAll[1]), first) << "a repeated call allocated pinned memory";
  for (void* s : streams) cuda.streamDestroy(s);
  destroyAll(comms);
  EXPECT_EQ(cuda.hostLive(), live0);
}

// As in NCCL, a non-root's broadcast sendbuff and reduce recvbuff are unused: any pointer will
// do (here host memory next to device buffers), and it is neither checked nor touched.
TEST_F(StreamFaults, UnusedRootOnlyBuffersMayBeAnything) {
  constexpr int kRanks = 3;
  constexpr size_t kCount = 512;
  auto comms = initThreadComms(kRanks);
  std::vector<std::string> errors(kRanks);
  onThreads(kRanks, [&](int r) {
    void* s = cuda.streamCreate();
    DeviceArray<float> in(cuda, kCount), out(cuda, kCount);
    std::vector<float> unused(kCount, -3.0f);
    for (size_t i = 0; i < kCount; ++i) in[i] = float(r + 1);
    const bool root = r == 0;
    if (lockstepBroadcast(root ? in.p : unused.data(), out.p, kCount, lockstepFloat32, 0, comms[r], s) !=
            lockstepSuccess ||
        lockstepReduce(in.p, root ? in.p : unused.data(), kCount, lockstepFloat32, lockstepSum, 0, comms[r], s) !=
            lockstepSuccess) {
      errors[r] = lockstepGetLastError(nullptr);
      return;
    }
    ASSERT_EQ(cuda.streamSynchronize(s), 0);
    for (size_t i = 0; i < kCount && errors[r].empty(); ++i) {
      if (out[i] != 1.0f) errors[r] = "broadcast result wrong";
      if (root && in[i] != 6.0f) errors[r] = "reduce result wrong";
      if (unused[i] != -3.0f) errors[r] = "an unused buffer was written";
    }
    cuda.streamDestroy(s);
  });
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  destroyAll(comms);
}

// Misuse gets InvalidUsage with a message, and the communicator goes on working.
TEST_F(StreamFaults, MisuseIsRefusedAndTheCommunicatorStaysUsable) {
  constexpr int kRanks = 2;
  constexpr size_t kCount = 64;
  auto comms = initThreadComms(kRanks);
  std::vector<std::string> req(kRanks), group(kRanks), errors(kRanks);
  onThreads(kRanks, [&](int r) {
    void* s1 = cuda.streamCreate();
    void* s2 = cuda.streamCreate();
    DeviceArray<float> buf(cuda, kCount);
    std::vector<float> host(kCount);
    lockstepRequest_t request = nullptr;
    if (lockstepIallReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[r], &request) ==
        lockstepInvalidUsage)
      req[r] = lockstepGetLastError(nullptr);
    lockstepGroupStart();
    lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[r], s1);
    lockstepAllReduce(host.data(), host.data(), kCount, lockstepFloat32, lockstepSum, comms[r], nullptr);
    if (lockstepGroupEnd() == lockstepInvalidUsage) group[r] = lockstepGetLastError(nullptr);
    for (size_t i = 0; i < kCount; ++i) buf[i] = float(r);
    if (lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[r], s2) != lockstepSuccess ||
        cuda.streamSynchronize(s2) != 0)
      errors[r] = lockstepGetLastError(nullptr);
    for (size_t i = 0; i < kCount && errors[r].empty(); ++i) {
      if (buf[i] != 1.0f) errors[r] = "wrong result after the refused calls";
    }
    cuda.streamDestroy(s1);
    cuda.streamDestroy(s2);
  });
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_NE(req[r].find("device buffers complete through a CUDA stream"), std::string::npos) << req[r];
    EXPECT_NE(group[r].find("must all use the same CUDA stream"), std::string::npos) << group[r];
    EXPECT_EQ(errors[r], "") << "rank " << r;
  }
  destroyAll(comms);
}

}  // namespace
}  // namespace lockstep
