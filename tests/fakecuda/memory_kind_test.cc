// Pointer kinds through a stand-in CUDA driver (fake_cuda_driver.c, loaded as libcuda.so.1):
// the library finds a driver only when the process has loaded one, classifies buffers through
// it, and refuses device memory mixed with host memory with InvalidUsage and a message, leaving
// the communicator usable. (Device buffers on their own take the stream-ordered path:
// stream_order_test.cc.)
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "lockstep/lockstep.h"
#include "src/core/memory_kind.h"
#include "tests/common/thread_comms.h"

namespace lockstep {
namespace {

using MarkFn = void (*)(const void*, size_t, unsigned, unsigned);
using QueriesFn = unsigned long long (*)();

struct FakeDriver {
  MarkFn mark;
  QueriesFn queries;
};

FakeDriver loadFakeDriver() {
  void* lib = ::dlopen(LOCKSTEP_FAKE_CUDA_PATH, RTLD_NOW | RTLD_GLOBAL);
  EXPECT_NE(lib, nullptr) << ::dlerror();
  FakeDriver d{reinterpret_cast<MarkFn>(::dlsym(lib, "fakeCudaMark")),
               reinterpret_cast<QueriesFn>(::dlsym(lib, "fakeCudaQueries"))};
  EXPECT_NE(d.mark, nullptr);
  refreshCudaDriver();
  return d;
}

// ctest runs every test in its own process (gtest_discover_tests), so this one sees a process
// that never loaded a driver; run alone or first, it holds as well.
TEST(MemoryKind, WithoutADriverEveryPointerIsHostAndNoDriverIsLoaded) {
  ASSERT_EQ(::dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD), nullptr) << "a driver is already loaded";
  refreshCudaDriver();
  std::vector<float> v(16);
  EXPECT_EQ(memoryKindOf(v.data()), MemoryKind::kHost);
  const BufferRole roles[] = {{v.data(), "sendbuff"}, {v.data(), "recvbuff"}};
  EXPECT_NO_THROW(checkBufferKinds(roles, 2, "all_reduce"));
  // Asking must not load the driver into a host-only process.
  EXPECT_EQ(::dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD), nullptr);
}

TEST(MemoryKind, ALoadedDriverClassifiesEveryKind) {
  FakeDriver d = loadFakeDriver();
  std::vector<char> dev(256), pinned(256), managed(256), plain(256);
  d.mark(dev.data(), dev.size(), 2, 0);
  d.mark(pinned.data(), pinned.size(), 1, 0);
  d.mark(managed.data(), managed.size(), 2, 1);
  EXPECT_EQ(memoryKindOf(dev.data() + 100), MemoryKind::kDevice);
  EXPECT_EQ(memoryKindOf(pinned.data()), MemoryKind::kPinned);
  EXPECT_EQ(memoryKindOf(managed.data() + 255), MemoryKind::kManaged);
  EXPECT_EQ(memoryKindOf(plain.data()), MemoryKind::kHost);
  EXPECT_GE(d.queries(), 4u);
}

TEST(MemoryKind, MixedBuffersAreRefusedWithTheirRolesAndTheCommStaysUsable) {
  FakeDriver d = loadFakeDriver();
  constexpr int kRanks = 2;
  constexpr size_t kCount = 64;
  // One "device", one pinned and one managed buffer per rank, plus an ordinary one.
  std::vector<std::vector<float>> dev(kRanks, std::vector<float>(kCount)), pinned = dev, managed = dev, plain = dev;
  for (int r = 0; r < kRanks; ++r) {
    d.mark(dev[r].data(), kCount * sizeof(float), 2, 0);
    d.mark(pinned[r].data(), kCount * sizeof(float), 1, 0);
    d.mark(managed[r].data(), kCount * sizeof(float), 2, 1);
  }
  auto comms = testing::initThreadComms(kRanks);
  std::vector<std::string> mixed(kRanks);
  std::vector<lockstepResult_t> mixedRc(kRanks), hostRc(kRanks);
  testing::onThreads(kRanks, [&](int r) {
    mixedRc[r] =
        lockstepAllReduce(plain[r].data(), dev[r].data(), kCount, lockstepFloat32, lockstepSum, comms[r], nullptr);
    mixed[r] = lockstepGetLastError(comms[r]);
    // Pinned and managed memory are host-accessible: they run, and the result is right.
    for (size_t i = 0; i < kCount; ++i) pinned[r][i] = float(r + 1);
    hostRc[r] =
        lockstepAllReduce(pinned[r].data(), managed[r].data(), kCount, lockstepFloat32, lockstepSum, comms[r], nullptr);
  });
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(mixedRc[r], lockstepInvalidUsage);
    EXPECT_NE(mixed[r].find("recvbuff is CUDA device memory but sendbuff is host memory"), std::string::npos)
        << mixed[r];
    EXPECT_EQ(hostRc[r], lockstepSuccess) << lockstepGetLastError(comms[r]);
    for (size_t i = 0; i < kCount; ++i) ASSERT_EQ(managed[r][i], 3.0f) << "rank " << r << " element " << i;
  }
  testing::destroyAll(comms);
}

// A device buffer that does not start on a whole element is refused at the call, naming it: a GPU
// kernel's misaligned load would end the process's CUDA context (the cuda_ipc path once took it).
TEST(MemoryKind, DeviceBuffersOffAnElementBoundaryAreRefusedAndTheCommStaysUsable) {
  FakeDriver d = loadFakeDriver();
  constexpr size_t kCount = 64;
  alignas(16) static char dev[2][kCount * sizeof(double) + 16];
  for (auto& b : dev) d.mark(b, sizeof(b), 2, 0);
  auto comms = testing::initThreadComms(1);
  EXPECT_EQ(lockstepAllReduce(dev[0] + 2, dev[1], kCount, lockstepFloat32, lockstepSum, comms[0], nullptr),
            lockstepInvalidArgument);
  std::string why = lockstepGetLastError(comms[0]);
  EXPECT_NE(why.find("sendbuff"), std::string::npos) << why;
  EXPECT_NE(why.find("2 byte(s) off a 4-byte float32 boundary"), std::string::npos) << why;
  EXPECT_EQ(lockstepAllGather(dev[0], dev[1] + 4, kCount, lockstepFloat64, comms[0], nullptr), lockstepInvalidArgument);
  why = lockstepGetLastError(comms[0]);
  EXPECT_NE(why.find("recvbuff"), std::string::npos) << why;
  EXPECT_NE(why.find("4 byte(s) off a 8-byte float64 boundary"), std::string::npos) << why;
  // The refusals left the communicator as it was.
  std::vector<float> in(kCount, 2.0f), out(kCount);
  EXPECT_EQ(lockstepAllReduce(in.data(), out.data(), kCount, lockstepFloat32, lockstepSum, comms[0], nullptr),
            lockstepSuccess)
      << lockstepGetLastError(comms[0]);
  EXPECT_EQ(out[kCount - 1], 2.0f);
  testing::destroyAll(comms);
}

}  // namespace
}  // namespace lockstep
