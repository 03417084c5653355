// Collectives on device buffers with the real CUDA runtime: 1, 2 and 4 ranks (threads) sharing
// one GPU, every collective x dtype x op, in place and out of place, posted on each rank's
// stream, once as cuda_ipc kernels and once through the staged path (LOCKSTEP_CUDA_IPC=0). The
// oracle is the host path: the same call on host copies of the same random bytes must give the
// same bits (both device paths run the same schedules with the same element functors). Also: a group in
// which one thread drives every rank, a stream that reaches the op too late (timeout, and the
// stream is released), and abort. Skipped, and said so, when this machine has no GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/dtype.h"
#include "lockstep/lockstep.h"
#include "perf/collectives.h"
#include "src/core/api_internal.h"
#include "src/core/communicator.h"
#include "tests/common/thread_comms.h"
#include "tests/gpu/have_gpu.h"
#include "tests/gpu/same_values.h"

namespace lockstep {
namespace {

using perf::Coll;
using Clock = std::chrono::steady_clock;

struct DeviceBytes {
  char* p = nullptr;
  explicit DeviceBytes(size_t bytes) {
    void* v = nullptr;
    if (cudaMalloc(&v, bytes) == cudaSuccess) p = static_cast<char*>(v);
  }
  ~DeviceBytes() { cudaFree(p); }
};

// One rank's pass over every collective x dtype x op x placement; returns "" or what differed.
std::string runEverything(lockstepComm_t comm, int rank, int n) {
  if (cudaSetDevice(0) != cudaSuccess) return "cudaSetDevice failed";
  // Non-blocking streams, and copies on them: ranks sharing a GPU must not wait for each other
  // through the legacy default stream (see README, Device buffers).
  cudaStream_t stream;
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) return "cudaStreamCreate failed";
  const size_t count = 4099;  // not a multiple of any vector width or slice
  const size_t maxBytes = count * n * 8 + 64;
  std::vector<char> hostSend(maxBytes), hostRecv(maxBytes), viaHost(maxBytes), viaDevice(maxBytes);
  DeviceBytes devSend(maxBytes), devRecv(maxBytes);
  if (!devSend.p || !devRecv.p) return "cudaMalloc failed";
  for (Coll c : perf::kAllColls) {
    const int root = perf::collRooted(c) ? n - 1 : -1;
    for (int t = 0; t < lockstepNumTypes; ++t) {
      const auto type = static_cast<lockstepDataType_t>(t);
      const size_t elem = dataTypeSize(type);
      for (int o = 0; o < (perf::collReduces(c) ? lockstepNumOps : 1); ++o) {
        const auto op = static_cast<lockstepRedOp_t>(o);
        for (bool inPlace : {false, true}) {
          if (inPlace && !perf::collHasInPlace(c)) continue;
          std::mt19937 rng(static_cast<uint32_t>(rank * 1000003 + t * 101 + o * 7 + int(c) * 13 + inPlace));
          for (auto& b : hostSend) b = static_cast<char>(rng());
          std::memcpy(hostRecv.data(), hostSend.data(), maxBytes);  // in place: both in one buffer
          const std::string what = std::string(perf::collName(c)) + " " + dataTypeName(type) + " " + redOpName(op) +
                                   (inPlace ? " in place" : "");
          // Host path: the oracle.
          perf::CollBuffers hb = perf::collBuffers(c, hostSend.data(), hostRecv.data(), count, rank, n, elem, inPlace);
          if (perf::runColl(c, hb.send, hb.recv, count, type, op, root, comm, nullptr) != lockstepSuccess) {
            return what + " (host): " + lockstepGetLastError(nullptr);
          }
          std::memcpy(viaHost.data(), hostRecv.data(), maxBytes);
          // Device path, from the same input (hostSend is still the input: only out-of-place calls
          // read it, and they do not write it).
          cudaMemcpyAsync(devSend.p, hostSend.data(), maxBytes, cudaMemcpyHostToDevice, stream);
          cudaMemcpyAsync(devRecv.p, hostSend.data(), maxBytes, cudaMemcpyHostToDevice, stream);
          perf::CollBuffers db = perf::collBuffers(c, devSend.p, devRecv.p, count, rank, n, elem, inPlace);
          if (perf::runColl(c, db.send, db.recv, count, type, op, root, comm, nullptr, stream) != lockstepSuccess) {
            return what + " (device): " + lockstepGetLastError(nullptr);
          }
          if (cudaStreamSynchronize(stream) != cudaSuccess) return what + ": cudaStreamSynchronize failed";
          lockstepResult_t async;
          lockstepCommGetAsyncError(comm, &async);
          if (async != lockstepSuccess) return what + ": async error " + lockstepGetErrorString(async);
          cudaMemcpyAsync(viaDevice.data(), devRecv.p, maxBytes, cudaMemcpyDeviceToHost, stream);
          if (cudaStreamSynchronize(stream) != cudaSuccess) return what + ": cudaStreamSynchronize failed";
          // Only the bytes the call defines on this rank are compared.
          const bool rootless = c == Coll::kReduce && rank != root;
          const size_t outBytes = rootless ? 0 : perf::recvElems(c, count, n) * elem;
          const size_t at = static_cast<char*>(hb.recv) - hostRecv.data();
          std::string where;
          if (!testing::sameValues(type, viaHost.data() + at, viaDevice.data() + at, outBytes, &where)) {
            return what + ": the device result differs from the host path's (" + where + ")";
          }
        }
      }
    }
  }
  cudaStreamDestroy(stream);
  return "";
}

// Each rank's thread gets the primary context current before it creates its communicator.
void useGpu0(int) {
  cudaSetDevice(0);
  cudaFree(nullptr);
}

class GpuCollectives : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(GpuCollectives, EveryCollectiveTypeAndOpMatchesTheHostPathBitForBit) {
  SKIP_WITHOUT_GPU();
  const int n = std::get<0>(GetParam());
  const bool ipc = std::get<1>(GetParam());
  setenv("LOCKSTEP_TIMEOUT", "30", 1);  // a rank that stops early fails the others quickly
  setenv("LOCKSTEP_CUDA_IPC", ipc ? "1" : "0", 1);
  auto comms = testing::initThreadComms(n, useGpu0);
  unsetenv("LOCKSTEP_TIMEOUT");
  unsetenv("LOCKSTEP_CUDA_IPC");
  for (int r = 0; r < n; ++r) {
    ASSERT_EQ(communicatorOf(comms[r])->cudaIpc(), ipc)
        << "rank " << r << ": cuda_ipc should be " << (ipc ? "on" : "off");
  }
  std::vector<std::string> errors(n);
  testing::onThreads(n, [&](int r) { errors[r] = runEverything(comms[r], r, n); });
  for (int r = 0; r < n; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  testing::destroyAll(comms);
}

INSTANTIATE_TEST_SUITE_P(OneGpu, GpuCollectives, ::testing::Combine(::testing::Values(1, 2, 4), ::testing::Bool()),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "ranks" +
                                  (std::get<1>(info.param) ? "CudaIpc" : "Staged");
                         });

// As nccl-tests: one thread, every rank's communicator, one group, then the streams.
TEST(GpuStreams, OneThreadDrivesFourCommunicatorsInAGroup) {
  SKIP_WITHOUT_GPU();
  constexpr int kRanks = 4;
  constexpr size_t kCount = 1 << 20;
  auto comms = testing::initThreadComms(kRanks, useGpu0);
  std::vector<cudaStream_t> streams(kRanks);
  std::vector<float*> bufs(kRanks);
  std::vector<float> host(kCount);
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_EQ(cudaStreamCreateWithFlags(&streams[r], cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&bufs[r]), kCount * sizeof(float)), cudaSuccess);
    for (size_t i = 0; i < kCount; ++i) host[i] = float(r + 1);
    ASSERT_EQ(cudaMemcpy(bufs[r], host.data(), kCount * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // nothing else runs yet
  }
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_EQ(lockstepAllReduce(bufs[r], bufs[r], kCount, lockstepFloat32, lockstepSum, comms[r], streams[r]),
              lockstepSuccess)
        << lockstepGetLastError(nullptr);
  }
  ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << lockstepGetLastError(nullptr);
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_EQ(cudaStreamSynchronize(streams[r]), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(host.data(), bufs[r], kCount * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    for (size_t i = 0; i < kCount; i += 997) ASSERT_EQ(host[i], 10.0f) << "rank " << r;
    cudaFree(bufs[r]);
    cudaStreamDestroy(streams[r]);
  }
  testing::destroyAll(comms);
}

void CUDART_CB sleepOnStream(void* ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(*static_cast<int*>(ms)));
}

// A stream that reaches the op only after the timeout: the op fails with a timeout, the error
// reaches lockstepCommGetAsyncError, and the stream is not left waiting.
TEST(GpuStreams, AStreamThatArrivesTooLateTimesOutAndIsReleased) {
  SKIP_WITHOUT_GPU();
  setenv("LOCKSTEP_TIMEOUT", "1", 1);
  auto comms = testing::initThreadComms(2, useGpu0);
  unsetenv("LOCKSTEP_TIMEOUT");
  std::vector<lockstepResult_t> async(2, lockstepSuccess);
  std::vector<cudaError_t> synced(2, cudaSuccess);
  testing::onThreads(2, [&](int r) {
    cudaSetDevice(0);
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    float* buf = nullptr;
    cudaMalloc(reinterpret_cast<void**>(&buf), 1024 * sizeof(float));
    static int delayMs = 2500;
    if (r == 0) cudaLaunchHostFunc(s, sleepOnStream, &delayMs);
    lockstepAllReduce(buf, buf, 1024, lockstepFloat32, lockstepSum, comms[r], s);
    synced[r] = cudaStreamSynchronize(s);
    lockstepCommGetAsyncError(comms[r], &async[r]);
    cudaFree(buf);
    cudaStreamDestroy(s);
  });
  EXPECT_EQ(synced[0], cudaSuccess);
  EXPECT_EQ(synced[1], cudaSuccess);
  EXPECT_EQ(async[0], lockstepTimeout);
  EXPECT_NE(async[1], lockstepSuccess);
  for (auto c : comms) lockstepCommDestroy(c);
}

// Abort from another thread releases a stream whose op waits for a peer that never posts.
TEST(GpuStreams, AbortReleasesTheStreamWithinASecond) {
  SKIP_WITHOUT_GPU();
  auto comms = testing::initThreadComms(2, useGpu0);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  float* buf = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&buf), 4096 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(lockstepAllReduce(buf, buf, 4096, lockstepFloat32, lockstepSum, comms[0], s), lockstepSuccess);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady) << "the stream should wait for the op";
  auto t0 = Clock::now();
  std::thread aborter([&] { EXPECT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess); });
  EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  aborter.join();
  EXPECT_LT(ms, 1000.0);
  cudaFree(buf);
  cudaStreamDestroy(s);
  EXPECT_EQ(lockstepCommDestroy(comms[1]), lockstepSuccess);
}

}  // namespace
}  // namespace lockstep
