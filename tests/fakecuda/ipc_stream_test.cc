// cuda_ipc end to end on the CPU: real communicators on threads, the stand-in CUDA driver
// (fake_cuda_driver.c) with a current context, and the stand-in kernel launcher
// (fake_ipc_launch.cc) that runs each Program on host threads when the fake stream reaches it.
// So the calls take the cuda_ipc path (segments allocated and exchanged at init, schedules
// lowered, "kernels" enqueued on the caller's stream, errors copied back and reported), and
// only the kernel itself is swapped for the host run of the same interpreter.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "lockstep/lockstep.h"
#include "tests/common/subprocess.h"
#include "tests/common/thread_comms.h"
#include "tests/fakecuda/every_collective.h"
#include "tests/fakecuda/fake_cuda.h"

extern "C" unsigned long fakeIpcLaunches();

namespace lockstep {
namespace {

using testing::destroyAll;
using testing::initThreadComms;
using testing::onThreads;
using Clock = std::chrono::steady_clock;

// The next all-reduce on `comm` fails at once, naming the cause (`what`), and launches nothing.
void expectRefused(lockstepComm_t comm, float* buf, size_t count, void* stream, const std::string& what) {
  const unsigned long launches = fakeIpcLaunches();
  auto t0 = Clock::now();
  EXPECT_EQ(lockstepAllReduce(buf, buf, count, lockstepFloat32, lockstepSum, comm, stream), lockstepRemoteError);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 0.5);
  const std::string text = lockstepGetLastError(nullptr);
  EXPECT_NE(text.find(what), std::string::npos) << text;
  EXPECT_EQ(fakeIpcLaunches(), launches);
}

// The line of the flight-recorder dump at `path` recording `op` ("allreduce #3") on `track`
// ("cuda_ipc", "host"), or "" if there is none.
std::string traceLine(const std::string& path, const std::string& op, const std::string& track) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"name\":\"" + op + "\"") != std::string::npos &&
        line.find("\"path\":\"" + track + "\"") != std::string::npos)
      return line;
  }
  return "";
}

std::string stateIn(const std::string& line) {
  const std::string key = "\"state\":\"";
  const size_t at = line.find(key);
  return at == std::string::npos ? "" : line.substr(at + key.size(), line.find('"', at + key.size()) - at - key.size());
}

class CudaIpc : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("LOCKSTEP_TIMEOUT", "20", 1);
    setenv("LOCKSTEP_CUDA_IPC_SLOT_BYTES", "64K", 1);  // several slices per call, FIFOs that wrap
    setenv("LOCKSTEP_CUDA_IPC_BLOCKS", "2", 1);
    cuda = FakeCuda::load();
    live0 = cuda.hostLive();
    // A context, as a trainer has made one before it creates communicators.
    void* lib = ::dlopen(LOCKSTEP_FAKE_CUDA_PATH, RTLD_NOW | RTLD_GLOBAL);
    auto retain = reinterpret_cast<int (*)(void**, int)>(::dlsym(lib, "cuDevicePrimaryCtxRetain"));
    auto setCurrent = reinterpret_cast<int (*)(void*)>(::dlsym(lib, "cuCtxSetCurrent"));
    void* ctx = nullptr;
    ASSERT_EQ(retain(&ctx, 0), 0);
    ASSERT_EQ(setCurrent(ctx), 0);
  }
  void TearDown() override {
    unsetenv("LOCKSTEP_TIMEOUT");
    unsetenv("LOCKSTEP_CUDA_IPC_SLOT_BYTES");
    unsetenv("LOCKSTEP_CUDA_IPC_BLOCKS");
    unsetenv("LOCKSTEP_CUDA_IPC");
  }
  // Rank 0's all-reduce on `s`, which rank 1 never joins: its kernel waits for rank 1.
  static constexpr size_t kWaitingCount = 1 << 16;
  void startAKernelThatWaitsForRank1(lockstepComm_t rank0, DeviceArray<float>& buf, void* s) {
    ASSERT_EQ(lockstepAllReduce(buf.p, buf.p, kWaitingCount, lockstepFloat32, lockstepSum, rank0, s), lockstepSuccess);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_FALSE(cuda.streamIdle(s)) << "the kernel should be waiting for rank 1";
  }
  FakeCuda cuda{};
  long live0 = 0;  // pinned allocations live before the test (a destroy may keep some for good)
};

// Every collective with device buffers, back to back on each rank's stream
// (tests/fakecuda/every_collective.h): each runs as one cuda_ipc launch per rank (the barrier,
// which has no buffers, takes the staged path).
TEST_F(CudaIpc, EveryCollectiveRunsAsKernelsAndIsRight) {
  constexpr int kRanks = 3;
  auto comms = initThreadComms(kRanks);
  std::vector<std::string> errors(kRanks);
  const unsigned long before = fakeIpcLaunches();
  onThreads(kRanks, [&](int r) { errors[r] = everyCollectiveOnDevice(cuda, comms[r], r, kRanks); });
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  // Every call but the barrier ran as one kernel on every rank (the small all-reduce too: where
  // the host tuner picks the one-shot, kernels run recursive doubling).
  EXPECT_EQ(fakeIpcLaunches() - before, 9u * kRanks);
  destroyAll(comms);
  EXPECT_EQ(cuda.hostLive(), live0) << "pinned memory left after destroy";
}

// A split makes communicators of their own, each with its own segments and kernels: the halves
// run at once, on the same ranks' streams, next to the parent's calls.
TEST_F(CudaIpc, SplitCommunicatorsRunTheirOwnKernels) {
  constexpr int kRanks = 4;
  constexpr size_t kCount = 1 << 15;
  auto comms = initThreadComms(kRanks);
  std::vector<std::string> errors(kRanks);
  const unsigned long before = fakeIpcLaunches();
  onThreads(kRanks, [&](int r) {
    lockstepComm_t half = nullptr;
    if (lockstepCommSplit(comms[r], r % 2, r, &half) != lockstepSuccess) {
      errors[r] = std::string("split: ") + lockstepGetLastError(nullptr);
      return;
    }
    void* s = cuda.streamCreate();
    DeviceArray<float> whole(cuda, kCount), part(cuda, kCount);
    for (size_t i = 0; i < kCount; ++i) whole[i] = part[i] = float(r + 1);
    if (lockstepAllReduce(part.p, part.p, kCount, lockstepFloat32, lockstepSum, half, s) != lockstepSuccess ||
        lockstepAllReduce(whole.p, whole.p, kCount, lockstepFloat32, lockstepSum, comms[r], s) != lockstepSuccess) {
      errors[r] = lockstepGetLastError(nullptr);
    }
    if (cuda.streamSynchronizeFor(s, 30000) != 0) errors[r] = "the stream never finished";
    // Ranks 0, 2 hold 1 and 3; ranks 1, 3 hold 2 and 4.
    const float halfSum = r % 2 ? 6.0f : 4.0f;
    for (size_t i = 0; i < kCount && errors[r].empty(); ++i) {
      if (part[i] != halfSum || whole[i] != 10.0f) errors[r] = "wrong at element " + std::to_string(i);
    }
    cuda.streamDestroy(s);
    lockstepCommDestroy(half);
  });
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  EXPECT_EQ(fakeIpcLaunches() - before, 2u * kRanks);
  destroyAll(comms);
}

// Deterministic mode's rank-ordered reductions, and a forced one-shot, need a copy of the input
// that the kernels do not take: those calls take the staged path, and sum in rank order at every
// size. On 4 ranks the values tell the orders apart: ((a+b)+c)+d is not (a+b)+(c+d) (recursive
// doubling's) in float, and the deterministic tuner picks the one-shot at small sizes.
TEST_F(CudaIpc, CallsThatNeedAnInputCopyTakeTheStagedPath) {
  constexpr int kRanks = 4;
  constexpr float kBase[kRanks] = {1e8f, 1.0f, -1e8f, 1.0f};
  for (const char* var : {"LOCKSTEP_DETERMINISTIC=1", "LOCKSTEP_ALGO=allreduce=direct"}) {
    std::string name(var, std::strchr(var, '=') - var), value(std::strchr(var, '=') + 1);
    setenv(name.c_str(), value.c_str(), 1);
    auto comms = initThreadComms(kRanks);
    unsetenv(name.c_str());
    const unsigned long before = fakeIpcLaunches();
    onThreads(kRanks, [&](int r) {
      void* s = cuda.streamCreate();
      for (size_t count : {size_t(64), size_t(1000), size_t(1) << 14}) {
        DeviceArray<float> buf(cuda, count);
        for (size_t i = 0; i < count; ++i) buf[i] = kBase[r] * float(1 + i % 5);
        ASSERT_EQ(lockstepAllReduce(buf.p, buf.p, count, lockstepFloat32, lockstepSum, comms[r], s), lockstepSuccess);
        ASSERT_EQ(cuda.streamSynchronizeFor(s, 30000), 0);
        for (size_t i = 0; i < count; ++i) {
          float ranked = 0;
          for (int k = 0; k < kRanks; ++k) ranked += kBase[k] * float(1 + i % 5);
          ASSERT_EQ(buf[i], ranked) << var << " count " << count << " element " << i;
        }
      }
      cuda.streamDestroy(s);
    });
    EXPECT_EQ(fakeIpcLaunches(), before) << var;
    destroyAll(comms);
  }
}

// A stream being captured into a CUDA graph is refused with a clear error, and nothing is
// enqueued: the communicator stays usable once capture ends.
TEST_F(CudaIpc, AStreamUnderGraphCaptureIsRefused) {
  void* lib = ::dlopen(LOCKSTEP_FAKE_CUDA_PATH, RTLD_NOW | RTLD_GLOBAL);
  auto setCapturing = reinterpret_cast<void (*)(void*, int)>(::dlsym(lib, "fakeCudaStreamSetCapturing"));
  ASSERT_NE(setCapturing, nullptr);
  constexpr size_t kCount = 4096;
  auto comms = initThreadComms(2);
  const unsigned long before = fakeIpcLaunches();
  std::vector<std::string> errors(2);
  onThreads(2, [&](int r) {
    void* s = cuda.streamCreate();
    DeviceArray<float> buf(cuda, kCount);
    for (size_t i = 0; i < kCount; ++i) buf[i] = float(r + 1);
    setCapturing(s, 1);
    if (lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[r], s) != lockstepInvalidUsage) {
      errors[r] = "a capturing stream was accepted";
    } else if (std::string(lockstepGetLastError(nullptr)).find("CUDA graph") == std::string::npos) {
      errors[r] = std::string("unclear error: ") + lockstepGetLastError(nullptr);
    }
    setCapturing(s, 0);
    if (lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[r], s) != lockstepSuccess ||
        cuda.streamSynchronizeFor(s, 30000) != 0 || buf[kCount - 1] != 3.0f) {
      errors[r] += " / the call after capture failed";
    }
    cuda.streamDestroy(s);
  });
  for (int r = 0; r < 2; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  EXPECT_EQ(fakeIpcLaunches() - before, 2u);
  destroyAll(comms);
}

TEST_F(CudaIpc, TurnedOffDeviceCallsTakeTheStagedPath) {
  setenv("LOCKSTEP_CUDA_IPC", "0", 1);
  constexpr size_t kCount = 1 << 16;
  auto comms = initThreadComms(2);
  const unsigned long before = fakeIpcLaunches();
  onThreads(2, [&](int r) {
    void* s = cuda.streamCreate();
    DeviceArray<float> buf(cuda, kCount);
    for (size_t i = 0; i < kCount; ++i) buf[i] = float(r + 1);
    ASSERT_EQ(lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[r], s), lockstepSuccess);
    ASSERT_EQ(cuda.streamSynchronizeFor(s, 30000), 0);
    EXPECT_EQ(buf[kCount - 1], 3.0f);
    cuda.streamDestroy(s);
  });
  EXPECT_EQ(fakeIpcLaunches(), before);
  destroyAll(comms);
}

// A rank that never makes the call: its peer's kernel gives up at the timeout, the stream goes
// on, and the error names the missing rank (in the async error, then in the next call).
TEST_F(CudaIpc, AMissingRankTimesOutAndIsNamed) {
  setenv("LOCKSTEP_TIMEOUT", "1", 1);
  // A kernel's timeout makes its rank dump the flight recorder (at destroy) into TMPDIR.
  const std::string dir = "/tmp/lockstep-ipc-timeout-" + std::to_string(getpid());
  ASSERT_EQ(system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
  const char* tmp = getenv("TMPDIR");
  const std::string savedTmp = tmp ? tmp : "";
  setenv("TMPDIR", dir.c_str(), 1);
  constexpr size_t kCount = 1 << 16;
  auto comms = initThreadComms(2);
  void* s = cuda.streamCreate();
  DeviceArray<float> buf(cuda, kCount);
  auto t0 = Clock::now();
  ASSERT_EQ(lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[0], s), lockstepSuccess);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 0.5) << "the call waited for the stream";
  ASSERT_EQ(cuda.streamSynchronizeFor(s, 10000), 0) << "the kernel never gave up";
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_GE(secs, 0.9);
  EXPECT_LT(secs, 5.0);
  lockstepResult_t async = lockstepSuccess;
  ASSERT_EQ(lockstepCommGetAsyncError(comms[0], &async), lockstepSuccess);
  EXPECT_EQ(async, lockstepTimeout);
  EXPECT_NE(lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[0], s), lockstepSuccess);
  const std::string text = lockstepGetLastError(nullptr);
  EXPECT_NE(text.find("rank 1"), std::string::npos) << text;
  EXPECT_NE(text.find("cuda_ipc"), std::string::npos) << text;
  cuda.streamDestroy(s);
  destroyAll(comms);
  if (tmp)
    setenv("TMPDIR", savedTmp.c_str(), 1);
  else
    unsetenv("TMPDIR");
  const std::string line =
      traceLine(dir + "/lockstep-trace-" + std::to_string(getpid()) + ".0.json", "allreduce #1", "cuda_ipc");
  EXPECT_EQ(stateIn(line), lockstepGetErrorString(lockstepTimeout)) << line;
  system(("rm -rf " + dir).c_str());
}

// The flight recorder lists kernel ops beside host ones, each with its outcome, and lockstep-trace
// reads them: every rank entered and completed every op.
TEST_F(CudaIpc, TheFlightRecorderListsKernelOps) {
  const std::string dir = "/tmp/lockstep-ipc-trace-" + std::to_string(getpid());
  ASSERT_EQ(system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
  setenv("LOCKSTEP_TRACE", (dir + "/t.%r.json").c_str(), 1);
  auto comms = initThreadComms(2);
  unsetenv("LOCKSTEP_TRACE");
  constexpr size_t kCount = 1 << 14;
  std::vector<std::string> errors(2);
  onThreads(2, [&](int r) {
    void* s = cuda.streamCreate();
    DeviceArray<float> buf(cuda, kCount);
    for (int k = 0; k < 3 && errors[r].empty(); ++k) {
      if (lockstepAllReduce(buf.p, buf.p, kCount, lockstepFloat32, lockstepSum, comms[r], s) != lockstepSuccess)
        errors[r] = lockstepGetLastError(nullptr);
    }
    if (cuda.streamSynchronizeFor(s, 30000) != 0) errors[r] = "the stream never finished";
    std::vector<float> host(kCount, 1.0f);  // then one on host memory: the host executor's
    if (errors[r].empty() && lockstepAllReduce(host.data(), host.data(), kCount, lockstepFloat32, lockstepSum, comms[r],
                                               nullptr) != lockstepSuccess)
      errors[r] = lockstepGetLastError(nullptr);
    cuda.streamDestroy(s);
  });
  for (int r = 0; r < 2; ++r) ASSERT_EQ(errors[r], "") << "rank " << r;
  destroyAll(comms);
  for (int r = 0; r < 2; ++r) {
    const std::string path = dir + "/t." + std::to_string(r) + ".json";
    for (int k = 1; k <= 3; ++k) {
      const std::string line = traceLine(path, "allreduce #" + std::to_string(k), "cuda_ipc");
      EXPECT_EQ(stateIn(line), "no error") << "rank " << r << " op " << k << ": " << line;
      EXPECT_NE(line.find("\"peers\":[" + std::to_string(1 - r) + "]"), std::string::npos) << line;
    }
    EXPECT_EQ(stateIn(traceLine(path, "allreduce #4", "host")), "no error");
    EXPECT_EQ(traceLine(path, "allreduce #4", "cuda_ipc"), "");
  }
  testing::ProcResult t = testing::run({LOCKSTEP_TRACE_PATH, dir + "/t.0.json", dir + "/t.1.json"}, {}, 30);
  EXPECT_EQ(t.code, 0) << t.output;
  EXPECT_NE(t.output.find("last completed #4"), std::string::npos) << t.output;
  system(("rm -rf " + dir).c_str());
}

// One rank passes host memory where its peer passes device memory: the peer's call runs as a
// kernel, this one on the host path, and the two never exchange a message. The control plane
// compares what each entered and names the difference on both ranks within a second or so, not
// at the 20 s timeout.
TEST_F(CudaIpc, HostMemoryOnOneRankIsAMismatchNamedOnBothRanks) {
  constexpr size_t kCount = 1 << 14;
  auto comms = initThreadComms(2);
  std::vector<std::string> errors(2);
  std::vector<double> secs(2);
  onThreads(2, [&](int r) {
    void* s = cuda.streamCreate();
    DeviceArray<float> dev(cuda, kCount);
    std::vector<float> host(kCount, 1.0f);
    auto t0 = Clock::now();
    std::string text;
    if (r == 0) {
      if (lockstepAllReduce(dev.p, dev.p, kCount, lockstepFloat32, lockstepSum, comms[r], s) != lockstepSuccess) {
        errors[r] = std::string("the post failed: ") + lockstepGetLastError(nullptr);
      } else if (cuda.streamSynchronizeFor(s, 10000) != 0) {
        errors[r] = "the kernel never gave up";
      }
      lockstepResult_t async = lockstepSuccess;
      lockstepCommGetAsyncError(comms[r], &async);
      if (async != lockstepMismatch) errors[r] += " / async error " + std::to_string(async);
      lockstepAllReduce(dev.p, dev.p, kCount, lockstepFloat32, lockstepSum, comms[r], s);
      text = lockstepGetLastError(nullptr);
    } else {
      // Blocking, with host memory: the host path.
      if (lockstepAllReduce(host.data(), host.data(), kCount, lockstepFloat32, lockstepSum, comms[r], nullptr) !=
          lockstepMismatch) {
        errors[r] = "the host call did not fail as a mismatch";
      }
      text = lockstepGetLastError(nullptr);
    }
    secs[r] = std::chrono::duration<double>(Clock::now() - t0).count();
    if (text.find("first difference: path") == std::string::npos) errors[r] += " / unclear error: " + text;
    if (text.find("cuda_ipc kernels") == std::string::npos) errors[r] += " / no side named: " + text;
    cuda.streamDestroy(s);
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(errors[r], "") << "rank " << r;
    EXPECT_LT(secs[r], 5.0) << "rank " << r << " waited for its timeout";
  }
  destroyAll(comms);
}

// A call with nothing to move may pass NULL buffers on one rank (the host executor takes it) and
// device buffers on another (kernels): no mismatch, then or later. The watchdog, which compares
// a rank's last op while it is idle, once reported "first difference: path" here.
TEST_F(CudaIpc, ACountZeroCallOnDifferentPathsIsNoMismatch) {
  auto comms = initThreadComms(2);
  std::vector<std::string> errors(2);
  onThreads(2, [&](int r) {
    void* s = cuda.streamCreate();
    DeviceArray<float> dev(cuda, 16);
    lockstepResult_t rc = r == 0
                              ? lockstepAllReduce(nullptr, nullptr, 0, lockstepFloat32, lockstepSum, comms[r], nullptr)
                              : lockstepAllReduce(dev.p, dev.p, 0, lockstepFloat32, lockstepSum, comms[r], s);
    if (rc != lockstepSuccess) errors[r] = std::string("the count-0 call: ") + lockstepGetLastError(nullptr);
    cuda.streamSynchronizeFor(s, 5000);
    std::this_thread::sleep_for(std::chrono::milliseconds(800));  // several heartbeats, both idle
    lockstepResult_t async = lockstepSuccess;
    lockstepCommGetAsyncError(comms[r], &async);
    if (async != lockstepSuccess) errors[r] += std::string(" / async error: ") + lockstepGetLastError(comms[r]);
    cuda.streamDestroy(s);
  });
  for (int r = 0; r < 2; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  destroyAll(comms);
}

// Both ranks run op 1; then rank 1 destroys its communicator (a clean goodbye, saying it completed
// op 1) while rank 0's kernel for op 2 already waits for it. The control plane stops that kernel
// within a second or so (not at the 20 s timeout) and the error says who left after which op.
// Rank 1's segment, which rank 0's kernel may have written into, is only freed by the last of
// the two to let go of it. A later call on rank 0 is refused before any kernel starts.
TEST_F(CudaIpc, APeerThatLeavesStopsTheKernelWaitingForIt) {
  constexpr size_t kCount = 1 << 14;
  auto comms = initThreadComms(2);
  std::vector<void*> streams(2);
  std::vector<std::unique_ptr<DeviceArray<float>>> bufs;
  for (int r = 0; r < 2; ++r) {
    streams[r] = cuda.streamCreate();
    bufs.push_back(std::make_unique<DeviceArray<float>>(cuda, kCount));
  }
  onThreads(2, [&](int r) {
    ASSERT_EQ(lockstepAllReduce(bufs[r]->p, bufs[r]->p, kCount, lockstepFloat32, lockstepSum, comms[r], streams[r]),
              lockstepSuccess);
    ASSERT_EQ(cuda.streamSynchronizeFor(streams[r], 10000), 0);
  });
  auto t0 = Clock::now();
  ASSERT_EQ(lockstepAllReduce(bufs[0]->p, bufs[0]->p, kCount, lockstepFloat32, lockstepSum, comms[0], streams[0]),
            lockstepSuccess);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(cuda.streamIdle(streams[0])) << "the kernel should be waiting for rank 1";
  ASSERT_EQ(lockstepCommDestroy(comms[1]), lockstepSuccess);
  ASSERT_EQ(cuda.streamSynchronizeFor(streams[0], 10000), 0) << "the kernel never gave up";
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0) << "it waited for its timeout";
  lockstepResult_t async = lockstepSuccess;
  ASSERT_EQ(lockstepCommGetAsyncError(comms[0], &async), lockstepSuccess);
  EXPECT_EQ(async, lockstepRemoteError);
  expectRefused(comms[0], bufs[0]->p, kCount, streams[0], "left the communicator after op #1, so op #2");
  for (int r = 0; r < 2; ++r) cuda.streamDestroy(streams[r]);
  EXPECT_EQ(lockstepCommDestroy(comms[0]), lockstepSuccess);
}

// A peer that left before this rank posts: the call fails at once, names it, and launches
// nothing (its kernel would write into the departed rank's segment from its first step).
TEST_F(CudaIpc, ACallAfterAPeerLeftIsRefusedBeforeItsKernel) {
  constexpr size_t kCount = 1 << 14;
  auto comms = initThreadComms(2);
  void* s = cuda.streamCreate();
  DeviceArray<float> buf(cuda, kCount);
  // Op 1 moves nothing (count 0): it completes as it is posted.
  onThreads(2, [&](int r) {
    EXPECT_EQ(lockstepAllReduce(buf.p, buf.p, 0, lockstepFloat32, lockstepSum, comms[r], s), lockstepSuccess);
  });
  ASSERT_EQ(lockstepCommDestroy(comms[1]), lockstepSuccess);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the goodbye has arrived
  lockstepResult_t async = lockstepSuccess;
  ASSERT_EQ(lockstepCommGetAsyncError(comms[0], &async), lockstepSuccess);
  EXPECT_EQ(async, lockstepSuccess) << "a peer leaving after the last op is no error";
  expectRefused(comms[0], buf.p, kCount, s, "left the communicator after op #1, so op #2");
  cuda.streamDestroy(s);
  EXPECT_EQ(lockstepCommDestroy(comms[0]), lockstepSuccess);
}

// A destroy waits for its queued kernels (up to the timeout); an abort from another thread while
// it waits stops them, and the destroy returns soon after.
TEST_F(CudaIpc, AnAbortCutsShortADestroyWaitingForItsKernels) {
  auto comms = initThreadComms(2);
  void* s = cuda.streamCreate();
  DeviceArray<float> buf(cuda, kWaitingCount);
  ASSERT_NO_FATAL_FAILURE(startAKernelThatWaitsForRank1(comms[0], buf, s));
  lockstepResult_t destroyed = lockstepInternalError;
  std::thread destroyer([&] { destroyed = lockstepCommDestroy(comms[0]); });  // drains: waits for the kernel
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = Clock::now();
  EXPECT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess);
  destroyer.join();
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  EXPECT_EQ(destroyed, lockstepSuccess);
  EXPECT_LT(ms, 3000.0) << "the destroy waited out its kernel (LOCKSTEP_TIMEOUT is 20 s here)";
  EXPECT_EQ(cuda.streamSynchronizeFor(s, 5000), 0);
  cuda.streamDestroy(s);
  EXPECT_EQ(lockstepCommDestroy(comms[1]), lockstepSuccess);
}

// An all-to-all-v pattern on device buffers: rank 0 has nothing for rank 2 this time (empty
// messages both ways), and full ones for rank 1. Every non-empty message runs as kernels on both
// ends. A group holding an empty message once went down the staged path on its ranks only, so
// rank 0 and rank 1 ran their exchange on different paths and both timed out.
TEST_F(CudaIpc, EmptyMessagesInAGroupLeaveTheRestOnKernels) {
  constexpr int kRanks = 3;
  constexpr size_t kCount = 1000;
  auto comms = initThreadComms(kRanks);
  const unsigned long launches0 = fakeIpcLaunches();
  onThreads(kRanks, [&](int r) {
    void* s = cuda.streamCreate();
    DeviceArray<float> out(cuda, kCount), in(cuda, kCount);
    for (size_t i = 0; i < kCount; ++i) {
      out[i] = float(r * 1000 + i);
      in[i] = -1;
    }
    lockstepComm_t c = comms[r];
    ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
    if (r == 0) {
      lockstepSend(out.p, kCount, lockstepFloat32, 1, c, s);
      lockstepRecv(in.p, kCount, lockstepFloat32, 1, c, s);
      lockstepSend(out.p, 0, lockstepFloat32, 2, c, s);
      lockstepRecv(in.p, 0, lockstepFloat32, 2, c, s);
    } else if (r == 1) {
      lockstepSend(out.p, kCount, lockstepFloat32, 0, c, s);
      lockstepRecv(in.p, kCount, lockstepFloat32, 0, c, s);
    } else {
      lockstepSend(out.p, 0, lockstepFloat32, 0, c, s);
      lockstepRecv(in.p, 0, lockstepFloat32, 0, c, s);
    }
    ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << lockstepGetLastError(nullptr);
    ASSERT_EQ(cuda.streamSynchronizeFor(s, 30000), 0) << "rank " << r << "'s stream";
    lockstepResult_t async = lockstepSuccess;
    ASSERT_EQ(lockstepCommGetAsyncError(c, &async), lockstepSuccess);
    EXPECT_EQ(async, lockstepSuccess) << "rank " << r;
    for (size_t i = 0; i < kCount; ++i) {
      ASSERT_EQ(in[i], r == 2 ? -1.0f : float((1 - r) * 1000 + i)) << "rank " << r << " element " << i;
    }
    cuda.streamDestroy(s);
  });
  EXPECT_EQ(fakeIpcLaunches() - launches0, 2u) << "ranks 0 and 1 run their exchange as kernels";
  destroyAll(comms);
}

// An abort while the stream is stuck before the kernel (which then never starts, so never sees
// the abort flag) returns within moments and keeps the engine the kernel will read; it waited out
// the 20 s timeout.
TEST_F(CudaIpc, AnAbortDoesNotWaitForAKernelWhoseStreamIsStuck) {
  auto comms = initThreadComms(2);
  void* s = cuda.streamCreate();
  DeviceArray<float> buf(cuda, 4096);
  ASSERT_EQ(cuda.streamHold(s), 0);
  ASSERT_EQ(lockstepAllReduce(buf.p, buf.p, 4096, lockstepFloat32, lockstepSum, comms[0], s), lockstepSuccess);
  const auto t0 = Clock::now();
  EXPECT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0) << "the abort waited for the kernel";
  EXPECT_GT(cuda.hostLive(), live0) << "what the queued kernel reads was freed";
  cuda.streamResume(s);  // the kernel runs now, sees the abort flag and ends
  EXPECT_EQ(cuda.streamSynchronizeFor(s, 10000), 0);
  cuda.streamDestroy(s);
  EXPECT_EQ(lockstepCommDestroy(comms[1]), lockstepSuccess);
}

// The driver takes the kernel but refuses the host function that reads its result back: the
// kernel is queued all the same, so a destroy keeps what it reads (its program, the abort flag,
// the segments). They were freed under it, and the kernel crashed the process when it ran.
TEST_F(CudaIpc, AKernelWhoseReadBackWasRefusedOutlivesTheDestroy) {
  auto comms = initThreadComms(2);
  void* s = cuda.streamCreate();
  DeviceArray<float> buf(cuda, 4096);
  ASSERT_EQ(cuda.streamHold(s), 0);  // busy with earlier work
  cuda.streamFailHostFunc(s, 2);     // the stand-in kernel is taken, the read-back refused
  EXPECT_NE(lockstepAllReduce(buf.p, buf.p, 4096, lockstepFloat32, lockstepSum, comms[0], s), lockstepSuccess);
  const auto t0 = Clock::now();
  for (auto c : comms) lockstepCommDestroy(c);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0);
  EXPECT_GT(cuda.hostLive(), live0) << "what the queued kernel reads was freed";
  cuda.streamResume(s);
  EXPECT_EQ(cuda.streamSynchronizeFor(s, 30000), 0);
  cuda.streamDestroy(s);
}

// Abort from another thread while a rank's kernel waits for a peer that never posts: the kernel
// sees the host-mapped flag, the stream is released at once, and the async error says aborted.
TEST_F(CudaIpc, AbortStopsAWaitingKernel) {
  auto comms = initThreadComms(2);
  void* s = cuda.streamCreate();
  DeviceArray<float> buf(cuda, kWaitingCount);
  ASSERT_NO_FATAL_FAILURE(startAKernelThatWaitsForRank1(comms[0], buf, s));
  auto t0 = Clock::now();
  std::thread aborter([&] { EXPECT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess); });
  EXPECT_EQ(cuda.streamSynchronizeFor(s, 5000), 0) << "the aborted kernel kept its stream";
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  aborter.join();
  EXPECT_LT(ms, 1000.0);
  cuda.streamDestroy(s);
  EXPECT_EQ(lockstepCommDestroy(comms[1]), lockstepSuccess);
  EXPECT_EQ(cuda.hostLive(), live0);
}

}  // namespace
}  // namespace lockstep
