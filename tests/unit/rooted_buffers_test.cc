// Rooted collectives touch only the buffers the caller gave them a part in: a reduce writes the
// root's recvbuff alone, a broadcast reads the root's sendbuff alone. Other ranks may pass
// anything there, NULL included (as in NCCL), and an in-place reduce keeps a non-root's input
// as it was. Every reduce and broadcast algorithm, forced, on enough ranks for a tree to have
// interior nodes with two children.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>
#include <tuple>
#include <vector>

#include "tests/common/thread_comms.h"

namespace lockstep {
namespace {

using testing::onThreads;

class RootedBuffers : public ::testing::TestWithParam<std::tuple<const char*, int>> {
 protected:
  void SetUp() override {
    const std::string algo = std::get<0>(GetParam());
    setenv("LOCKSTEP_ALGO", ("reduce=" + algo + (algo == "ordered" ? "" : ",broadcast=" + algo)).c_str(), 1);
    setenv("LOCKSTEP_SLOT_BYTES", "4096", 1);  // many slices per call
    setenv("LOCKSTEP_TIMEOUT", "20", 1);
    comms_ = testing::initThreadComms(std::get<1>(GetParam()));
  }
  void TearDown() override {
    testing::destroyAll(comms_);
    for (const char* v : {"LOCKSTEP_ALGO", "LOCKSTEP_SLOT_BYTES", "LOCKSTEP_TIMEOUT"}) unsetenv(v);
  }
  std::vector<lockstepComm_t> comms_;
};

float input(int rank, size_t i) { return static_cast<float>(rank + 1 + static_cast<int>(i % 7)); }

TEST_P(RootedBuffers, OnlyTheRootsPartIsTouched) {
  const int n = std::get<1>(GetParam());
  const bool broadcasts = std::string(std::get<0>(GetParam())) != "ordered";
  std::vector<std::string> failures(n);
  onThreads(n, [&](int r) {
    auto fail = [&](const std::string& what) {
      if (failures[r].empty()) failures[r] = what;
    };
    for (int root : {0, n - 1, n / 2}) {
      for (size_t count : {size_t{5}, size_t{1031}, size_t{20011}}) {
        const std::string at = " (root " + std::to_string(root) + ", count " + std::to_string(count) + ")";
        // Non-roots: NULL recvbuff, a recvbuff that must stay as it is, or in place.
        const int mode = r % 3;
        std::vector<float> in(count), out(count, -7.0f);
        for (size_t i = 0; i < count; ++i) in[i] = input(r, i);
        const bool inPlace = r == root ? root % 2 == 1 : mode == 2;
        float* send = in.data();
        float* recv = inPlace ? in.data() : r == root || mode == 1 ? out.data() : nullptr;
        if (lockstepReduce(send, recv, count, lockstepFloat32, lockstepSum, root, comms_[r], nullptr) !=
            lockstepSuccess) {
          fail(std::string("reduce: ") + lockstepGetLastError(nullptr) + at);
          return;
        }
        for (size_t i = 0; i < count; ++i) {
          float want = 0;
          for (int k = 0; k < n; ++k) want += input(k, i);
          if (r == root && recv[i] != want) fail("root's result wrong at " + std::to_string(i) + at);
          if (r != root && mode == 1 && out[i] != -7.0f) fail("a non-root's recvbuff was written" + at);
          if (r != root && mode == 2 && in[i] != input(r, i)) fail("a non-root's in-place input was changed" + at);
        }
        if (!broadcasts) continue;
        // Broadcast: non-roots pass no sendbuff (or their recvbuff, in place).
        std::vector<float> data(count, -1.0f);
        if (r == root)
          for (size_t i = 0; i < count; ++i) data[i] = input(root, i);
        const float* bsend = r == root ? data.data() : mode == 2 ? data.data() : nullptr;
        if (lockstepBroadcast(bsend, data.data(), count, lockstepFloat32, root, comms_[r], nullptr) !=
            lockstepSuccess) {
          fail(std::string("broadcast: ") + lockstepGetLastError(nullptr) + at);
          return;
        }
        for (size_t i = 0; i < count; ++i) {
          if (data[i] != input(root, i)) fail("broadcast result wrong at " + std::to_string(i) + at);
        }
      }
    }
  });
  for (int r = 0; r < n; ++r) EXPECT_EQ(failures[r], "") << "rank " << r;
}

INSTANTIATE_TEST_SUITE_P(Algorithms, RootedBuffers,
                         ::testing::Combine(::testing::Values("tree", "chain", "ordered"), ::testing::Values(3, 5, 8)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) + "_" + std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace lockstep
