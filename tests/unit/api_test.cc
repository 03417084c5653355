// The public C and C++ API, with ranks as threads of this process (TCP bootstrap through the
// rendezvous lockstepGetUniqueId starts, inproc links between the threads).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "lockstep/lockstep.h"
#include "lockstep/lockstep.hpp"

namespace {

void onThreads(int n, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) threads.emplace_back(fn, r);
  for (auto& t : threads) t.join();
}

std::vector<lockstepComm_t> initComms(int n) {
  lockstepUniqueId id;
  EXPECT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  std::vector<lockstepComm_t> comms(n, nullptr);
  std::vector<lockstepResult_t> rc(n);
  onThreads(n, [&](int r) { rc[r] = lockstepCommInitRank(&comms[r], n, id, r); });
  for (int r = 0; r < n; ++r) EXPECT_EQ(rc[r], lockstepSuccess) << lockstepGetLastError(nullptr);
  return comms;
}

TEST(Api, VersionAndErrorStrings) {
  int v = 0;
  ASSERT_EQ(lockstepGetVersion(&v), lockstepSuccess);
  EXPECT_EQ(v, LOCKSTEP_VERSION_CODE);
  EXPECT_EQ(lockstepGetVersion(nullptr), lockstepInvalidArgument);
  for (int r = 0; r < lockstepNumResults; ++r) {
    EXPECT_GT(std::strlen(lockstepGetErrorString(static_cast<lockstepResult_t>(r))), 0u);
  }
}

TEST(Api, UniqueIdHexRoundTrip) {
  lockstepUniqueId id, back;
  ASSERT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  char hex[2 * LOCKSTEP_UNIQUE_ID_BYTES + 1];
  ASSERT_EQ(lockstepUniqueIdToHex(&id, hex, sizeof(hex)), lockstepSuccess);
  ASSERT_EQ(lockstepUniqueIdFromHex(hex, &back), lockstepSuccess);
  EXPECT_EQ(std::memcmp(&id, &back, sizeof(id)), 0);
  EXPECT_EQ(lockstepUniqueIdToHex(&id, hex, 10), lockstepInvalidArgument);
  EXPECT_EQ(lockstepUniqueIdFromHex("00", &back), lockstepInvalidArgument);
}

// Launch variables are read by init from the environment only: a stale or foreign value (a
// leftover LOCKSTEP_RANK, a Slurm variable) must not fail lockstepGetUniqueId, which
// lockstep-run and lockstepCommInitRank programs call.
TEST(Api, OnlyInitFromTheEnvironmentReadsTheLaunchVariables) {
  setenv("LOCKSTEP_RANK", "x", 1);
  lockstepUniqueId id;
  EXPECT_EQ(lockstepGetUniqueId(&id), lockstepSuccess) << lockstepGetLastError(nullptr);
  lockstepComm_t comm = nullptr;
  EXPECT_EQ(lockstepCommInitFromEnv(&comm), lockstepInvalidArgument);
  EXPECT_NE(std::string(lockstepGetLastError(nullptr)).find("LOCKSTEP_RANK"), std::string::npos)
      << lockstepGetLastError(nullptr);
  unsetenv("LOCKSTEP_RANK");
}

// A forked child holds a copy of its parent's communicators, whose threads and peers are the
// parent's. Its calls are refused: a collective once stood in for the parent's rank (the peers
// summed its data, and everyone returned success), and a destroy waited for ever on threads that
// do not exist in the child. The parent's communicator is untouched.
TEST(Api, AForkedChildCannotUseItsParentsCommunicator) {
  auto comms = initComms(2);
  onThreads(2, [&](int r) {
    float x = 1;
    EXPECT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr), lockstepSuccess);
  });
  // A request in flight at the fork (rank 1 has not joined it yet): in the child, a wait on it
  // would poll for ever for a progress thread that exists only in the parent.
  float a = 1, b = 0;
  lockstepRequest_t pending = nullptr;
  ASSERT_EQ(lockstepIallReduce(&a, &b, 1, lockstepFloat32, lockstepSum, comms[0], &pending), lockstepSuccess);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    float x = 100;
    const bool refused =
        lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[0], nullptr) == lockstepInvalidUsage &&
        std::strstr(lockstepGetLastError(nullptr), "forked") != nullptr &&
        lockstepCommDestroy(comms[0]) == lockstepInvalidUsage && lockstepCommAbort(comms[1]) == lockstepInvalidUsage &&
        lockstepWait(&pending, -1) == lockstepInvalidUsage;
    _exit(refused ? 0 : 1);
  }
  int status = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (waitpid(child, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      ADD_FAILURE() << "the child hung";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  float c = 1, d = 0;
  EXPECT_EQ(lockstepAllReduce(&c, &d, 1, lockstepFloat32, lockstepSum, comms[1], nullptr), lockstepSuccess);
  EXPECT_EQ(lockstepWait(&pending, -1), lockstepSuccess);
  EXPECT_EQ(b, 2.0f);
  onThreads(2, [&](int r) {
    float x = 1;
    EXPECT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr), lockstepSuccess);
    EXPECT_EQ(x, 2.0f);
  });
  for (auto c : comms) EXPECT_EQ(lockstepCommDestroy(c), lockstepSuccess);
}

// One thread drives a communicator at a time. A second thread calling while the first is inside
// a call is refused, naming the misuse; it once ran, sharing the communicator's plans and
// sequence numbers, and calls returned success with wrong sums. The first thread's calls are
// untouched, and calls made one after the other from different threads are fine.
TEST(Api, ASecondThreadInsideACallOnTheSameCommunicatorIsRefused) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "two threads race on one communicator on purpose (the misuse refused here)";
#endif
  auto comms = initComms(1);
  const size_t n = size_t{4} << 20;  // 16 MiB: each call takes milliseconds
  std::vector<float> in(n, 1.0f), out(n);
  std::atomic<bool> done{false};
  int refused = 0, otherErrors = 0;
  std::string message;
  std::thread second([&] {
    float x = 1, y = 0;
    while (!done.load()) {
      const lockstepResult_t r = lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], nullptr);
      if (r == lockstepInvalidUsage) {
        ++refused;
        message = lockstepGetLastError(nullptr);
      } else if (r != lockstepSuccess || y != 1.0f) {
        ++otherErrors;
      }
    }
  });
  for (int i = 0; i < 20; ++i) {
    std::fill(out.begin(), out.end(), 0.0f);
    lockstepResult_t r = lockstepInvalidUsage;
    // The second thread may be inside a call of its own at this moment: then this one is refused.
    while (r == lockstepInvalidUsage)
      r = lockstepAllReduce(in.data(), out.data(), n, lockstepFloat32, lockstepSum, comms[0], nullptr);
    ASSERT_EQ(r, lockstepSuccess) << lockstepGetLastError(nullptr);
    ASSERT_EQ(out[n - 1], 1.0f);
  }
  done.store(true);
  second.join();
  EXPECT_GT(refused, 0) << "the second thread was never refused";
  EXPECT_EQ(otherErrors, 0);
  EXPECT_NE(message.find("another thread is inside a call on this communicator"), std::string::npos) << message;
  // Ordered calls from another thread are fine.
  std::thread([&] {
    float x = 2, y = 0;
    EXPECT_EQ(lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], nullptr), lockstepSuccess);
    EXPECT_EQ(y, 2.0f);
  }).join();
  for (auto c : comms) EXPECT_EQ(lockstepCommDestroy(c), lockstepSuccess);
}

// A thread polling a communicator while another aborts it, as a training thread races its
// watchdog: the first error it sees is the abort, with its code. The handle said it was closing
// before it said it was aborted, and a call between the two was told "not a live communicator"
// (lockstepInvalidUsage: 66 of 20000 races, helper-93).
TEST(Api, AThreadRacingAnAbortIsToldTheAbort) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  int races = 0;
  std::string wrong;
  while (std::chrono::steady_clock::now() < until && wrong.empty()) {
    auto comms = initComms(1);
    std::atomic<bool> polling{false};
    std::thread racer([&] {
      polling.store(true);
      for (;;) {
        lockstepResult_t async = lockstepSuccess;
        lockstepResult_t r = lockstepCommGetAsyncError(comms[0], &async);
        if (r == lockstepSuccess) r = async;
        if (r != lockstepSuccess) {
          if (r != lockstepAborted) wrong = lockstepGetLastError(nullptr);
          return;
        }
      }
    });
    while (!polling.load()) {
    }
    EXPECT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess);
    racer.join();
    ++races;
  }
  EXPECT_EQ(wrong, "") << "after " << races << " races";
}

TEST(Api, InitRejectsBadArguments) {
  lockstepUniqueId id;
  ASSERT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  lockstepComm_t comm;
  EXPECT_EQ(lockstepCommInitRank(&comm, 0, id, 0), lockstepInvalidArgument);
  EXPECT_EQ(lockstepCommInitRank(&comm, 2, id, 2), lockstepInvalidArgument);
  EXPECT_NE(std::string(lockstepGetLastError(nullptr)).find("rank 2"), std::string::npos);
  EXPECT_EQ(lockstepCommInitRank(nullptr, 1, id, 0), lockstepInvalidArgument);
  lockstepUniqueId junk;
  std::memset(&junk, 7, sizeof(junk));
  EXPECT_EQ(lockstepCommInitRank(&comm, 1, junk, 0), lockstepInvalidArgument);
  // Beyond the largest communicator the rendezvous serves: refused before anything is sized by
  // it (INT_MAX once ended in "out of memory" after gigabytes; 2^22 + 1 in the rendezvous).
  for (int huge : {(1 << 22) + 1, INT_MAX}) {
    comm = reinterpret_cast<lockstepComm_t>(0x1234);
    EXPECT_EQ(lockstepCommInitRank(&comm, huge, id, 0), lockstepInvalidArgument);
    EXPECT_NE(std::string(lockstepGetLastError(nullptr)).find("outside [1, 4194304]"), std::string::npos)
        << lockstepGetLastError(nullptr);
    EXPECT_EQ(comm, nullptr);
  }
  // What a failed init left is safe to close, as with NCCL.
  EXPECT_EQ(lockstepCommDestroy(comm), lockstepSuccess);
  EXPECT_EQ(lockstepCommAbort(nullptr), lockstepSuccess);
}

// The text is in a buffer of the thread's own that never moves, as NCCL's: a pointer kept from an
// earlier failure stays readable (it once pointed into a string a longer message reallocated),
// and reads the latest message.
TEST(Api, TheLastErrorsPointerStaysValidAcrossLaterErrors) {
  EXPECT_EQ(lockstepGetVersion(nullptr), lockstepInvalidArgument);
  const char* kept = lockstepGetLastError(nullptr);
  EXPECT_STREQ(kept, "version is NULL");
  lockstepUniqueId id;
  ASSERT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  lockstepComm_t comm;
  EXPECT_EQ(lockstepCommInitRank(&comm, 2, id, 7), lockstepInvalidArgument);
  EXPECT_EQ(kept, lockstepGetLastError(nullptr));
  EXPECT_NE(std::string(kept).find("rank 7 is outside [0, 2)"), std::string::npos) << kept;
}

// Every out-parameter is cleared first, so a caller that frees whatever is not NULL after a
// failure frees nothing: lockstepCommSplit's too when its communicator is refused.
TEST(Api, ASplitOfNoCommunicatorClearsNewcomm) {
  lockstepComm_t child = reinterpret_cast<lockstepComm_t>(0x1234);
  EXPECT_EQ(lockstepCommSplit(nullptr, 0, 0, &child), lockstepInvalidArgument);
  EXPECT_EQ(child, nullptr);
}

TEST(Api, AllReduceAcrossThreadRanks) {
  const int n = 4;
  auto comms = initComms(n);
  onThreads(n, [&](int r) {
    int rank = -1, count = -1;
    EXPECT_EQ(lockstepCommUserRank(comms[r], &rank), lockstepSuccess);
    EXPECT_EQ(lockstepCommCount(comms[r], &count), lockstepSuccess);
    EXPECT_EQ(rank, r);
    EXPECT_EQ(count, n);
    std::vector<double> buf(100003, r + 1.0);
    EXPECT_EQ(lockstepAllReduce(buf.data(), buf.data(), buf.size(), lockstepFloat64, lockstepSum, comms[r], nullptr),
              lockstepSuccess);
    for (double x : buf) ASSERT_EQ(x, n * (n + 1) / 2.0);
    EXPECT_EQ(lockstepBarrier(comms[r], nullptr), lockstepSuccess);
  });
  for (auto c : comms) EXPECT_EQ(lockstepCommDestroy(c), lockstepSuccess);
}

TEST(Api, BadArgumentsAreRejectedAndTheCommunicatorStaysUsable) {
  const int n = 2;
  auto comms = initComms(n);
  onThreads(n, [&](int r) {
    lockstepComm_t c = comms[r];
    float x = 1, y = 0;
    EXPECT_EQ(lockstepAllReduce(nullptr, &y, 1, lockstepFloat32, lockstepSum, c, nullptr), lockstepInvalidArgument);
    EXPECT_NE(std::string(lockstepGetLastError(c)).find("sendbuff"), std::string::npos);
    EXPECT_EQ(lockstepAllReduce(&x, nullptr, 1, lockstepFloat32, lockstepSum, c, nullptr), lockstepInvalidArgument);
    EXPECT_EQ(lockstepAllReduce(&x, &y, 1, static_cast<lockstepDataType_t>(99), lockstepSum, c, nullptr),
              lockstepInvalidArgument);
    EXPECT_EQ(lockstepAllReduce(&x, &y, 1, lockstepFloat32, static_cast<lockstepRedOp_t>(-1), c, nullptr),
              lockstepInvalidArgument);
    EXPECT_EQ(lockstepAllReduce(&x, &y, SIZE_MAX / 2, lockstepFloat32, lockstepSum, c, nullptr),
              lockstepInvalidArgument);
    EXPECT_EQ(lockstepBroadcast(&x, &y, 1, lockstepFloat32, n, c, nullptr), lockstepInvalidArgument) << "root";
    EXPECT_EQ(lockstepReduce(&x, &y, 1, lockstepFloat32, lockstepSum, -1, c, nullptr), lockstepInvalidArgument);
    EXPECT_EQ(lockstepSend(&x, 1, lockstepFloat32, 7, c, nullptr), lockstepInvalidArgument) << "peer";
    EXPECT_NE(std::string(lockstepGetLastError(c)).find("peer 7"), std::string::npos) << lockstepGetLastError(c);
    EXPECT_EQ(lockstepRecv(&y, 1, lockstepFloat32, -2, c, nullptr), lockstepInvalidArgument);
    float big[4];
    EXPECT_EQ(lockstepAllReduce(big, big + 1, 2, lockstepFloat32, lockstepSum, c, nullptr), lockstepInvalidArgument)
        << "partly overlapping buffers";
    int fakeStream;
    EXPECT_EQ(lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, c, &fakeStream), lockstepInvalidUsage);
    EXPECT_EQ(lockstepAllReduce(nullptr, nullptr, 0, lockstepFloat32, lockstepSum, c, nullptr), lockstepSuccess)
        << "count 0 needs no buffers";
    EXPECT_EQ(lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, c, nullptr), lockstepSuccess);
    EXPECT_EQ(y, 2.0f);
  });
  EXPECT_EQ(lockstepAllReduce(nullptr, nullptr, 0, lockstepFloat32, lockstepSum, nullptr, nullptr),
            lockstepInvalidArgument);
  for (auto c : comms) EXPECT_EQ(lockstepCommDestroy(c), lockstepSuccess);
  EXPECT_EQ(lockstepCommDestroy(comms[0]), lockstepInvalidUsage) << "a destroyed comm is detected";
  float x = 0;
  EXPECT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[1], nullptr), lockstepInvalidUsage);
}

TEST(Api, CxxLayerRaiiAndExceptions) {
  const int n = 3;
  lockstepUniqueId id = lockstep::uniqueId();
  onThreads(n, [&](int r) {
    lockstep::Comm comm(n, id, r);
    EXPECT_EQ(comm.rank(), r);
    EXPECT_EQ(comm.size(), n);
    std::vector<int64_t> v(10, r);
    comm.allReduce(v.data(), v.data(), v.size(), lockstep::Op::kMax);
    EXPECT_EQ(v[9], n - 1);
    try {
      comm.allReduce<float>(nullptr, nullptr, 5, lockstep::Op::kSum);
      ADD_FAILURE() << "no exception";
    } catch (const lockstep::Exception& e) {
      EXPECT_EQ(e.code(), lockstepInvalidArgument);
    }
    comm.barrier();
  });
}

template <typename T, typename Peer>
constexpr bool recvCompiles = requires(lockstep::Comm& c, T* p, Peer peer) {
  c.recv(p, size_t{1}, peer);
};
template <typename T, typename Peer>
constexpr bool sendCompiles = requires(lockstep::Comm& c, const T* p, Peer peer) {
  c.send(p, size_t{1}, peer);
};
template <typename T, typename Root>
constexpr bool reduceCompiles = requires(lockstep::Comm& c, const T* p, T* q, Root root) {
  c.reduce(p, q, size_t{1}, lockstep::Op::kSum, root);
};
template <typename T, typename Root>
constexpr bool broadcastCompiles = requires(lockstep::Comm& c, const T* p, T* q, Root root) {
  c.broadcast(p, q, size_t{1}, root);
};

// Every integer type maps by size and signedness; the halves and fp8 go through the explicit
// forms; a communicator from the C API can be adopted.
TEST(Api, CxxLayerTakesEveryIntegerTypeExplicitTypesAndAdoptedHandles) {
  static_assert(lockstep::dataTypeOf<long long>() == lockstepInt64);
  static_assert(lockstep::dataTypeOf<unsigned long long>() == lockstepUint64);
  static_assert(lockstep::dataTypeOf<size_t>() == lockstepUint64);
  static_assert(lockstep::dataTypeOf<signed char>() == lockstepInt8);
  static_assert(lockstep::dataTypeOf<int>() == lockstepInt32);
  // A datatype in the peer's or root's place does not compile (it named rank 9).
  static_assert(!recvCompiles<float, lockstepDataType_t> && recvCompiles<float, int>);
  static_assert(!sendCompiles<float, lockstepDataType_t> && sendCompiles<float, int>);
  static_assert(!reduceCompiles<float, lockstepDataType_t> && reduceCompiles<float, int>);
  static_assert(!broadcastCompiles<float, lockstepDataType_t> && broadcastCompiles<float, int>);
  const int n = 2;
  lockstepUniqueId id = lockstep::uniqueId();
  onThreads(n, [&](int r) {
    lockstepComm_t raw = nullptr;
    ASSERT_EQ(lockstepCommInitRank(&raw, n, id, r), lockstepSuccess);
    lockstep::Comm comm = lockstep::Comm::adopt(raw);
    EXPECT_EQ(comm.get(), raw);
    std::vector<long long> v(4, r + 1);
    comm.allReduce(v.data(), v.data(), v.size(), lockstep::Op::kSum);
    EXPECT_EQ(v[3], 3);
    // bfloat16 1.0 is 0x3F80: gathered from both ranks, and summed (2.0 is 0x4000).
    std::vector<uint16_t> one(3, 0x3F80), all(3 * n), sum(3);
    comm.allGather(one.data(), all.data(), one.size(), lockstepBfloat16);
    EXPECT_EQ(all[3 * n - 1], 0x3F80);
    comm.reduceScatter(all.data(), sum.data(), 3, lockstepBfloat16, lockstep::Op::kSum);
    EXPECT_EQ(sum[0], 0x4000);
    lockstep::Request req = comm.iallReduce(one.data(), sum.data(), 3, lockstepBfloat16, lockstep::Op::kMax);
    req.wait();
    EXPECT_EQ(sum[2], 0x3F80);
  });
}

}  // namespace

namespace {

// A Comm that goes out of scope inside an open group that uses it (an exception thrown through
// lockstep::group's function) frees its communicator: the destroy there is refused, so it aborts.
// It once dropped the handle and kept everything, and its peers learned nothing until their
// timeout.
TEST(Api, ACxxCommLeavingScopeInsideAGroupFreesItsCommunicatorAndPeersHearAtOnce) {
  setenv("LOCKSTEP_TIMEOUT", "30", 1);
  lockstepUniqueId id = lockstep::uniqueId();
  onThreads(2, [&](int r) {
    auto start = std::chrono::steady_clock::now();
    if (r == 0) {
      lockstep::Comm comm(2, id, r);
      float x = 1, y = 0;
      try {
        lockstep::group([&] {
          lockstep::Comm inner = std::move(comm);
          inner.allReduce(&x, &y, 1, lockstep::Op::kSum);
          throw std::runtime_error("the trainer's own failure");
        });
      } catch (const std::runtime_error&) {
      }
    } else {
      lockstep::Comm comm(2, id, r);
      float x = 1, y = 0;
      try {
        comm.allReduce(&x, &y, 1, lockstep::Op::kSum);
        ADD_FAILURE() << "an all-reduce with a rank that aborted succeeded";
      } catch (const lockstep::Exception& e) {
        EXPECT_NE(std::string(e.what()).find("abort"), std::string::npos) << e.what();
      }
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15)) << "rank " << r;
  });
  unsetenv("LOCKSTEP_TIMEOUT");
}

TEST(Api, CxxLayerCoversEveryCollectiveGroupsRequestsAndSplit) {
  const int n = 4;
  lockstepUniqueId id = lockstep::uniqueId();
  onThreads(n, [&](int r) {
    lockstep::Comm comm(n, id, r);
    std::vector<int32_t> in(n * 3), out(n * 3, -1), one(3, r), all(3 * n, -1);
    for (int i = 0; i < n * 3; ++i) in[i] = r + i;
    comm.reduceScatter(in.data(), out.data(), 3, lockstep::Op::kSum);
    EXPECT_EQ(out[0], n * (3 * r) + n * (n - 1) / 2);
    comm.allGather(one.data(), all.data(), 3);
    EXPECT_EQ(all[3 * (n - 1)], n - 1);
    std::vector<double> b(5, r == 2 ? 7.5 : 0.0);
    comm.broadcast(b.data(), b.data(), b.size(), 2);
    EXPECT_EQ(b[4], 7.5);
    int64_t mine = r + 1, total = 0;
    comm.reduce(&mine, &total, 1, lockstep::Op::kProd, 0);
    if (r == 0) EXPECT_EQ(total, 24);
    int64_t got = -1, sent = r * 10;
    lockstep::group([&] {
      comm.send(&sent, 1, (r + 1) % n);
      comm.recv(&got, 1, (r + n - 1) % n);
    });
    EXPECT_EQ(got, ((r + n - 1) % n) * 10);
    std::vector<uint32_t> a2aIn(n), a2aOut(n);
    for (int p = 0; p < n; ++p) a2aIn[p] = r * 100 + p;
    comm.allToAll(a2aIn.data(), a2aOut.data(), 1);
    EXPECT_EQ(a2aOut[3], uint32_t(3 * 100 + r));
    float f = 1;
    lockstep::Request req = comm.iallReduce(&f, &f, 1, lockstep::Op::kSum);
    req.wait();
    EXPECT_EQ(f, float(n));
    lockstep::Comm half = comm.split(r % 2, r);
    ASSERT_TRUE(half.valid());
    EXPECT_EQ(half.size(), 2);
    EXPECT_EQ(half.rank(), r / 2);
    lockstep::Comm none = comm.split(LOCKSTEP_SPLIT_NOCOLOR, 0);
    EXPECT_FALSE(none.valid());
  });
}

}  // namespace
