// Every algorithm over real links (ranks as threads, inproc transport, through the public API),
// forced with LOCKSTEP_ALGO: every collective it implements, N = 1..17, zero, small, odd and
// large counts (large = many pipelined slices), every dtype, in place and out. Exact results.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>
#include <tuple>

#include "kernels/dtype.h"
#include "perf/collectives.h"
#include "src/algo/registry.h"
#include "tests/common/thread_comms.h"

namespace lockstep {
namespace {

using perf::Coll;
using testing::onThreads;

class AlgorithmRanks : public ::testing::TestWithParam<std::tuple<Algorithm, int>> {
 protected:
  void SetUp() override {
    setenv("LOCKSTEP_ALGO", algorithmName(std::get<0>(GetParam())), 1);
    setenv("LOCKSTEP_SLOT_BYTES", "4096", 1);
    setenv("LOCKSTEP_SLOTS", "2", 1);
    setenv("LOCKSTEP_TIMEOUT", "30", 1);  // a bug shows up as a quick failure, not a long hang
    comms_ = testing::initThreadComms(std::get<1>(GetParam()));
  }
  void TearDown() override {
    testing::destroyAll(comms_);
    for (const char* v : {"LOCKSTEP_ALGO", "LOCKSTEP_SLOT_BYTES", "LOCKSTEP_SLOTS", "LOCKSTEP_TIMEOUT"}) unsetenv(v);
  }
  std::vector<lockstepComm_t> comms_;
};

// The ops each dtype runs with: sum everywhere, and every op on one integer and one float type.
std::vector<lockstepRedOp_t> opsFor(Coll c, lockstepDataType_t t) {
  if (!perf::collReduces(c)) return {lockstepSum};
  if (t == lockstepInt32 || t == lockstepFloat32)
    return {lockstepSum, lockstepProd, lockstepMax, lockstepMin, lockstepAvg};
  return {lockstepSum};
}

TEST_P(AlgorithmRanks, EveryCollectiveItImplementsIsExact) {
  const auto [algorithm, n] = GetParam();
  const std::vector<size_t> counts = {0, 1, size_t(n + 1), 1031, 20011};
  std::vector<std::string> failures(n);
  int ran = 0;
  for (Coll c : perf::kAllColls) ran += implements(algorithm, perf::collKind(c));
  ASSERT_GT(ran, 0) << algorithmName(algorithm) << " implements nothing";
  onThreads(n, [&](int r) {
    std::vector<char> a, b;
    for (Coll c : perf::kAllColls) {
      if (!implements(algorithm, perf::collKind(c))) continue;
      for (int t = 0; t < lockstepNumTypes; ++t) {
        auto type = static_cast<lockstepDataType_t>(t);
        const size_t elem = dataTypeSize(type);
        for (lockstepRedOp_t op : opsFor(c, type)) {
          Pattern pat(type, op, n);
          const int root = perf::collRooted(c) ? n / 2 : -1;
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
                failures[r] =
                    std::string(perf::collName(c)) + " " + dataTypeName(type) + " " + redOpName(op) + " count " +
                    std::to_string(count) + (inPlace ? " in place" : " out of place") + ": " +
                    (rc != lockstepSuccess ? lockstepGetLastError(nullptr) : std::to_string(wrong) + " wrong elements");
              }
            }
          }
        }
      }
    }
  });
  for (int r = 0; r < n; ++r) EXPECT_EQ(failures[r], "") << "rank " << r;
}

INSTANTIATE_TEST_SUITE_P(AllN, AlgorithmRanks,
                         ::testing::Combine(::testing::Values(Algorithm::kRing, Algorithm::kTree,
                                                              Algorithm::kRecursiveDoubling, Algorithm::kRabenseifner,
                                                              Algorithm::kDirect, Algorithm::kChain,
                                                              Algorithm::kOrdered),
                                            ::testing::Range(1, 18)),
                         [](const auto& info) {
                           return std::string(algorithmName(std::get<0>(info.param))) + "_N" +
                                  std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace lockstep
