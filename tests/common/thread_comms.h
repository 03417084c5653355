// Ranks as threads of the test process, through the public API: lockstepGetUniqueId, then one
// lockstepCommInitRank per thread (TCP bootstrap over loopback, inproc links between threads).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "lockstep/lockstep.h"

namespace lockstep::testing {

// Runs fn(rank) on n threads and joins them.
inline void onThreads(int n, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) threads.emplace_back(fn, r);
  for (auto& t : threads) t.join();
}

// `before(rank)`, when given, runs on each rank's thread first (a GPU test makes its CUDA
// context current there, as a trainer does before it creates its communicator).
inline std::vector<lockstepComm_t> initThreadComms(int n, const std::function<void(int)>& before = {}) {
  lockstepUniqueId id;
  EXPECT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  std::vector<lockstepComm_t> comms(n, nullptr);
  std::vector<std::string> errors(n);
  onThreads(n, [&](int r) {
    if (before) before(r);
    if (lockstepCommInitRank(&comms[r], n, id, r) != lockstepSuccess) errors[r] = lockstepGetLastError(nullptr);
  });
  for (int r = 0; r < n; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  return comms;
}

inline void destroyAll(std::vector<lockstepComm_t>& comms) {
  for (auto c : comms) {
    if (c) EXPECT_EQ(lockstepCommDestroy(c), lockstepSuccess);
  }
  comms.clear();
}

}  // namespace lockstep::testing
