// Every collective through the public API, with ranks as threads: every dtype (and op where it
// applies), counts 0, 1, N-1 and odd, roots, in place and out, with 4 KiB slices and 2 credits so
// that even small counts cut into many pipelined slices. Exact results, checked bit for bit.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "perf/collectives.h"
#include "perf/pattern.h"
#include "tests/common/thread_comms.h"

namespace lockstep {
namespace {

using perf::Coll;
using testing::onThreads;

class Collectives : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    setenv("LOCKSTEP_SLOT_BYTES", "4096", 1);
    setenv("LOCKSTEP_SLOTS", "2", 1);
    setenv("LOCKSTEP_TIMEOUT", "20", 1);  // a bug shows up as a quick failure, not a long hang
    comms_ = testing::initThreadComms(GetParam());
  }
  void TearDown() override {
    testing::destroyAll(comms_);
    unsetenv("LOCKSTEP_SLOT_BYTES");
    unsetenv("LOCKSTEP_SLOTS");
    unsetenv("LOCKSTEP_TIMEOUT");
  }
  std::vector<lockstepComm_t> comms_;
};

// The checks are only as good as the expected results: max and min ones that were almost all 0
// at 16-64 ranks (min of unsigned and fp8 types) passed a call that wrote zeros. Each element's
// result must come from the data, vary along the buffer, and be held by different ranks.
TEST(CheckPatterns, MaxAndMinResultsVaryAlongTheBufferAndComeFromEveryRank) {
  const size_t n = Pattern::kPeriod;
  for (int t = 0; t < lockstepNumTypes; ++t) {
    const auto type = static_cast<lockstepDataType_t>(t);
    const size_t elem = dataTypeSize(type);
    for (lockstepRedOp_t op : {lockstepMax, lockstepMin}) {
      for (int ranks : {2, 16, 64}) {
        Pattern pat(type, op, ranks);
        std::vector<char> want(n * elem), zeros(n * elem, 0);
        pat.fillExpected(want.data(), n);
        EXPECT_GT(pat.countWrong(zeros.data(), n), n / 2) << dataTypeName(type) << " " << ranks << " ranks";
        std::set<std::string> distinct;
        for (size_t i = 0; i < n; ++i) distinct.insert(std::string(want.data() + i * elem, elem));
        EXPECT_GE(distinct.size(), 8u) << dataTypeName(type) << " " << ranks << " ranks";
        // Each rank's data alone is wrong at most elements: the result is not one rank's copy.
        for (int r = 0; r < ranks; ++r) {
          std::vector<char> mine(n * elem);
          pat.fill(mine.data(), n, r);
          EXPECT_GT(pat.countWrong(mine.data(), n), n / 4) << dataTypeName(type) << " rank " << r;
        }
      }
    }
  }
}

TEST_P(Collectives, EveryCollectiveTypeOpCountRootInPlaceAndOut) {
  const int n = GetParam();
  const std::vector<size_t> counts = {0, 1, size_t(n - 1), 1031};
  std::vector<int> roots = {0};
  if (n > 1) roots.push_back(n - 1);
  if (n > 2) roots.push_back(n / 2);
  std::vector<std::string> failures(n);
  onThreads(n, [&](int r) {
    std::vector<char> a, b;
    for (Coll c : perf::kAllColls) {
      for (int t = 0; t < lockstepNumTypes; ++t) {
        auto type = static_cast<lockstepDataType_t>(t);
        const size_t elem = dataTypeSize(type);
        for (int o = 0; o < (perf::collReduces(c) ? int(lockstepNumOps) : 1); ++o) {
          auto op = static_cast<lockstepRedOp_t>(o);
          Pattern pat(type, op, n);
          for (int root : perf::collRooted(c) ? roots : std::vector<int>{-1}) {
            for (size_t count : counts) {
              for (bool inPlace : {false, true}) {
                if (inPlace && !perf::collHasInPlace(c)) continue;
                size_t bytes = std::max(perf::sendElems(c, count, n), perf::recvElems(c, count, n)) * elem;
                a.assign(bytes + 8, 0);
                b.assign(bytes + 8, 0);
                auto bufs = perf::collBuffers(c, a.data(), b.data(), count, r, n, elem, inPlace);
                perf::fillInput(c, pat, bufs.send, count, r, n, root);
                lockstepResult_t rc = perf::runColl(c, bufs.send, bufs.recv, count, type, op, root, comms_[r], nullptr);
                size_t wrong = rc == lockstepSuccess ? perf::countWrong(c, pat, bufs.recv, count, r, n, root) : 0;
                if ((rc != lockstepSuccess || wrong) && failures[r].empty()) {
                  failures[r] = std::string(perf::collName(c)) + " " + dataTypeName(type) + " " + redOpName(op) +
                                " root " + std::to_string(root) + " count " + std::to_string(count) +
                                (inPlace ? " in place" : " out of place") + ": " +
                                (rc != lockstepSuccess ? lockstepGetLastError(nullptr)
                                                       : std::to_string(wrong) + " wrong elements");
                }
              }
            }
          }
        }
      }
    }
  });
  for (int r = 0; r < n; ++r) EXPECT_EQ(failures[r], "") << "rank " << r;
}

INSTANTIATE_TEST_SUITE_P(Ranks, Collectives, ::testing::Values(1, 2, 3, 4, 5, 8));

}  // namespace
}  // namespace lockstep
