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
  void SetUp() override { start("4096", nullptr); }
  // transports == nullptr: inproc links, as ranks that are threads get by default.
  void start(const char* slotBytes, const char* transports) {
    setenv("LOCKSTEP_ALGO", algorithmName(std::get<0>(GetParam())), 1);
    setenv("LOCKSTEP_SLOT_BYTES", slotBytes, 1);
    setenv("LOCKSTEP_SLOTS", "2", 1);
    setenv("LOCKSTEP_TIMEOUT", "30", 1);  // a bug shows up as a quick failure, not a long hang
    if (transports) setenv("LOCKSTEP_TRANSPORTS", transports, 1);
    comms_ = testing::initThreadComms(std::get<1>(GetParam()));
  }
  void TearDown() override {
    testing::destroyAll(comms_);
    for (const char* v :
         {"LOCKSTEP_ALGO", "LOCKSTEP_SLOT_BYTES", "LOCKSTEP_SLOTS", "LOCKSTEP_TIMEOUT", "LOCKSTEP_TRANSPORTS"})
      unsetenv(v);
  }
  void everyCollectiveIsExact(const std::vector<lockstepDataType_t>& types, const std::vector<size_t>& counts);
  std::vector<lockstepComm_t> comms_;
};

std::vector<lockstepDataType_t> allTypes() {
  std::vector<lockstepDataType_t> v;
  for (int t = 0; t < lockstepNumTypes; ++t) v.push_back(static_cast<lockstepDataType_t>(t));
  return v;
}

// The ops each dtype runs with: sum everywhere, and every op on one integer and one float type.
std::vector<lockstepRedOp_t> opsFor(Coll c, lockstepDataType_t t) {
  if (!perf::collReduces(c)) return {lockstepSum};
  if (t == lockstepInt32 || t == lockstepFloat32)
    return {lockstepSum, lockstepProd, lockstepMax, lockstepMin, lockstepAvg};
  return {lockstepSum};
}

TEST_P(AlgorithmRanks, EveryCollectiveItImplementsIsExact) {
  const int n = std::get<1>(GetParam());
  everyCollectiveIsExact(allTypes(), {0, 1, size_t(n + 1), 1031, 20011});
}

// Over TCP, with slices large enough to be sent by reference from the op's buffers (no copy
// into the slot; src/exec/host_executor.cc), in place and out: a message still reading memory
// that a later step overwrites must be detached first, or the peer gets the new bytes.
class AlgorithmRanksOverSockets : public AlgorithmRanks {
 protected:
  void SetUp() override { start("16K", "socket"); }
};

TEST_P(AlgorithmRanksOverSockets, EveryCollectiveItImplementsIsExact) {
  everyCollectiveIsExact({lockstepFloat32, lockstepInt32, lockstepBfloat16}, {1031, 20011, 70001});
}

void AlgorithmRanks::everyCollectiveIsExact(const std::vector<lockstepDataType_t>& types,
                                            const std::vector<size_t>& counts) {
  const auto [algorithm, n] = GetParam();
  std::vector<std::string> failures(n);
  int ran = 0;
  for (Coll c : perf::kAllColls) ran += implements(algorithm, perf::collKind(c));
  ASSERT_GT(ran, 0) << algorithmName(algorithm) << " implements nothing";
  onThreads(n, [&](int r) {
    std::vector<char> a, b;
    for (Coll c : perf::kAllColls) {
      if (!implements(algorithm, perf::collKind(c))) continue;
      for (lockstepDataType_t type : types) {
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

// Bit-identity, the library's promise, for every all-reduce algorithm, on data where rounding shows: random bit
// patterns (NaN, Inf, subnormals included) in every floating type, through sum, avg, max and prod. Every rank must hold
// the very same bytes, whatever the algorithm computes where. (A rank's own input used to enter avg unrounded while its
// peers got it rounded to fp16: direct avg differed by rank.)
class AllReduceBits : public AlgorithmRanks {};

TEST_P(AllReduceBits, EveryRankEndsWithTheSameBits) {
  const auto [algorithm, n] = GetParam();
  const lockstepDataType_t types[] = {lockstepFloat16, lockstepBfloat16,   lockstepFloat32,
                                      lockstepFloat64, lockstepFloat8e4m3, lockstepFloat8e5m2};
  for (lockstepDataType_t type : types) {
    for (lockstepRedOp_t op : {lockstepSum, lockstepAvg, lockstepMax, lockstepProd}) {
      for (size_t count : {size_t{1031}, size_t{20011}}) {
        const size_t bytes = count * dataTypeSize(type);
        std::vector<std::vector<unsigned char>> out(n, std::vector<unsigned char>(bytes));
        std::vector<std::string> errors(n);
        onThreads(n, [&](int r) {
          std::vector<unsigned char> in(bytes);
          uint64_t x = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(r + 1) + count + type * 131 + op;
          for (auto& b : in)
            x = x * 6364136223846793005ull + 1442695040888963407ull, b = static_cast<unsigned char>(x >> 56);
          if (lockstepAllReduce(in.data(), out[r].data(), count, type, op, comms_[r], nullptr) != lockstepSuccess)
            errors[r] = lockstepGetLastError(nullptr);
        });
        for (int r = 0; r < n; ++r) ASSERT_EQ(errors[r], "") << "rank " << r;
        for (int r = 1; r < n; ++r) {
          ASSERT_EQ(out[r], out[0]) << algorithmName(algorithm) << " N=" << n << " " << dataTypeName(type) << " "
                                    << redOpName(op) << " count " << count << ": rank " << r << " differs from rank 0";
        }
      }
    }
  }
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

INSTANTIATE_TEST_SUITE_P(SomeN, AlgorithmRanksOverSockets,
                         ::testing::Combine(::testing::Values(Algorithm::kRing, Algorithm::kTree,
                                                              Algorithm::kRecursiveDoubling, Algorithm::kRabenseifner,
                                                              Algorithm::kDirect, Algorithm::kChain,
                                                              Algorithm::kOrdered),
                                            ::testing::Values(2, 3, 5, 8)),
                         [](const auto& info) {
                           return std::string(algorithmName(std::get<0>(info.param))) + "_N" +
                                  std::to_string(std::get<1>(info.param));
                         });

INSTANTIATE_TEST_SUITE_P(AllN, AllReduceBits,
                         ::testing::Combine(::testing::Values(Algorithm::kRing, Algorithm::kTree,
                                                              Algorithm::kRecursiveDoubling, Algorithm::kRabenseifner,
                                                              Algorithm::kDirect, Algorithm::kOrdered),
                                            ::testing::Range(1, 18)),
                         [](const auto& info) {
                           return std::string(algorithmName(std::get<0>(info.param))) + "_N" +
                                  std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace lockstep
