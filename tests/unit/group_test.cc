// Groups, non-blocking requests and communicator split, with ranks as threads.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include "lockstep/lockstep.hpp"
#include "src/core/api_internal.h"
#include "src/core/communicator.h"
#include "tests/common/thread_comms.h"

namespace lockstep {
namespace {

using testing::destroyAll;
using testing::initThreadComms;
using testing::onThreads;

// Small slots, so that a message far larger than a link's buffering must flow while both sides
// are busy: a naive ring of blocking calls would deadlock.
class SmallSlots : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("LOCKSTEP_SLOT_BYTES", "4096", 1);
    setenv("LOCKSTEP_SLOTS", "2", 1);
    setenv("LOCKSTEP_TIMEOUT", "20", 1);
  }
  void TearDown() override {
    unsetenv("LOCKSTEP_SLOT_BYTES");
    unsetenv("LOCKSTEP_SLOTS");
    unsetenv("LOCKSTEP_TIMEOUT");
  }
};

TEST_F(SmallSlots, NaiveRingOfSendRecvInAGroupNeverDeadlocks) {
  for (int n : {1, 2, 3, 5}) {
    auto comms = initThreadComms(n);
    const size_t count = 300000;  // 1.2 MB: 150 times what one link buffers
    std::vector<std::string> errors(n);
    onThreads(n, [&](int r) {
      std::vector<int32_t> out(count), in(count, -1);
      for (size_t i = 0; i < count; ++i) out[i] = static_cast<int32_t>(r * 1000003 + i);
      int next = (r + 1) % n, prev = (r + n - 1) % n;
      lockstepGroupStart();
      // Odd ranks post the receive first: the order must not matter.
      if (r % 2) lockstepRecv(in.data(), count, lockstepInt32, prev, comms[r], nullptr);
      lockstepSend(out.data(), count, lockstepInt32, next, comms[r], nullptr);
      if (r % 2 == 0) lockstepRecv(in.data(), count, lockstepInt32, prev, comms[r], nullptr);
      if (lockstepGroupEnd() != lockstepSuccess) errors[r] = lockstepGetLastError(nullptr);
      for (size_t i = 0; i < count && errors[r].empty(); ++i) {
        if (in[i] != static_cast<int32_t>(prev * 1000003 + i)) errors[r] = "wrong data at " + std::to_string(i);
      }
    });
    for (int r = 0; r < n; ++r) EXPECT_EQ(errors[r], "") << "n=" << n << " rank " << r;
    destroyAll(comms);
  }
}

// A collective between a group's sends and its receives: the sends and receives still run as one
// fused Work (after the group's collectives), so every rank posting the same calls matches them,
// whatever the size. (They once ran as separate Works around the all-reduce: a mismatch for small
// messages, a deadlock until the timeout for large ones.)
TEST_F(SmallSlots, ACollectiveBetweenAGroupsSendsAndReceives) {
  for (int n : {2, 3}) {
    for (size_t count : {size_t{1}, size_t{300000}}) {
      auto comms = initThreadComms(n);
      std::vector<std::string> errors(n);
      onThreads(n, [&](int r) {
        std::vector<int32_t> out(count), in(count, -1);
        for (size_t i = 0; i < count; ++i) out[i] = static_cast<int32_t>(r * 1000003 + i);
        int next = (r + 1) % n, prev = (r + n - 1) % n;
        int64_t one = 1, sum = 0;
        lockstepGroupStart();
        lockstepSend(out.data(), count, lockstepInt32, next, comms[r], nullptr);
        lockstepAllReduce(&one, &sum, 1, lockstepInt64, lockstepSum, comms[r], nullptr);
        lockstepRecv(in.data(), count, lockstepInt32, prev, comms[r], nullptr);
        if (lockstepGroupEnd() != lockstepSuccess) errors[r] = lockstepGetLastError(nullptr);
        if (errors[r].empty() && sum != n) errors[r] = "all-reduce gave " + std::to_string(sum);
        for (size_t i = 0; i < count && errors[r].empty(); ++i) {
          if (in[i] != static_cast<int32_t>(prev * 1000003 + i)) errors[r] = "wrong data at " + std::to_string(i);
        }
      });
      for (int r = 0; r < n; ++r) EXPECT_EQ(errors[r], "") << "n=" << n << " count " << count << " rank " << r;
      destroyAll(comms);
    }
  }
}

// Outside a group, sends and receives run in call order (as NCCL's): an exchange whose messages
// exceed the links' buffering cannot complete when both sides post Isend then Irecv. It times out,
// and the message says what to do; in a group the same exchange completes.
TEST_F(SmallSlots, AnUngroupedExchangeBeyondTheBufferingTimesOutSayingToGroupIt) {
  setenv("LOCKSTEP_TIMEOUT", "2", 1);
  auto comms = initThreadComms(2);
  const size_t count = 64 * 1024;  // 256 KiB against 2 x 4 KiB of slots
  std::vector<std::string> errors(2);
  onThreads(2, [&](int r) {
    std::vector<int32_t> out(count, r), in(count);
    lockstepRequest_t send = nullptr, recv = nullptr;
    ASSERT_EQ(lockstepIsend(out.data(), count, lockstepInt32, 1 - r, comms[r], &send), lockstepSuccess);
    ASSERT_EQ(lockstepIrecv(in.data(), count, lockstepInt32, 1 - r, comms[r], &recv), lockstepSuccess);
    if (lockstepWait(&send, -1) != lockstepSuccess) errors[r] = lockstepGetLastError(nullptr);
    lockstepWait(&recv, -1);
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(errors[r].find("belong in one lockstepGroupStart/End"), std::string::npos) << errors[r];
    // The size in bytes (it read "262144 x uint8" for int32s).
    EXPECT_NE(errors[r].find("send (262144 bytes) timed out"), std::string::npos) << errors[r];
  }
  destroyAll(comms);
}

// A rank's sends to itself wait for its own receives, which the same thread can only post after
// the send returns (calls run one after another, queued or not). What cannot fit the link to
// itself, or a receive with nothing sent to match it, can never end: refused at once (they once
// waited out LOCKSTEP_TIMEOUT and broke the communicator), and the communicator goes on.
TEST_F(SmallSlots, SendsToItselfThatCanNeverEndAreRefusedAtOnceAndTheCommunicatorGoesOn) {
  setenv("LOCKSTEP_TIMEOUT", "10", 1);
  auto comms = initThreadComms(2);
  const size_t fits = 1024, tooBig = 3 * 1024;  // int32s: one slot of 4 KiB; three against two slots
  onThreads(2, [&](int r) {
    std::vector<int32_t> a(tooBig), b(tooBig), in(tooBig);
    std::iota(a.begin(), a.end(), r * 100000);
    std::iota(b.begin(), b.end(), r * 100000 + 50000);
    auto seconds = [start = std::chrono::steady_clock::now()] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    auto refused = [&](lockstepResult_t rc, const char* what) {
      EXPECT_EQ(rc, lockstepInvalidUsage) << what;
      return std::string(lockstepGetLastError(nullptr));
    };
    // Too large for the link at all, blocking and not.
    std::string why = refused(lockstepSend(a.data(), tooBig, lockstepInt32, r, comms[r], nullptr), "send");
    EXPECT_NE(why.find("(itself) can never end: it needs 3 messages"), std::string::npos) << why;
    EXPECT_NE(why.find("lockstepGroupStart/End"), std::string::npos) << why;
    lockstepRequest_t req = nullptr;
    ASSERT_EQ(lockstepIsend(a.data(), tooBig, lockstepInt32, r, comms[r], &req), lockstepSuccess);
    refused(lockstepWait(&req, -1), "Isend");
    // What fits is buffered; a second that no longer fits behind it is refused, and fits again
    // once the first has been received. The messages come back whole and in order.
    ASSERT_EQ(lockstepSend(a.data(), fits, lockstepInt32, r, comms[r], nullptr), lockstepSuccess);
    why = refused(lockstepSend(b.data(), 2 * fits, lockstepInt32, r, comms[r], nullptr), "second send");
    EXPECT_NE(why.find("1 of them taken by earlier sends"), std::string::npos) << why;
    ASSERT_EQ(lockstepSend(b.data(), fits, lockstepInt32, r, comms[r], nullptr), lockstepSuccess);
    ASSERT_EQ(lockstepRecv(in.data(), fits, lockstepInt32, r, comms[r], nullptr), lockstepSuccess);
    EXPECT_TRUE(std::equal(in.begin(), in.begin() + fits, a.begin()));
    ASSERT_EQ(lockstepRecv(in.data(), fits, lockstepInt32, r, comms[r], nullptr), lockstepSuccess);
    EXPECT_TRUE(std::equal(in.begin(), in.begin() + fits, b.begin()));
    // In one group, any size flows.
    lockstepGroupStart();
    lockstepSend(a.data(), tooBig, lockstepInt32, r, comms[r], nullptr);
    lockstepRecv(in.data(), tooBig, lockstepInt32, r, comms[r], nullptr);
    ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << lockstepGetLastError(nullptr);
    EXPECT_EQ(in, a);
    // A receive with nothing sent (here an Irecv before its Isend). Refused, and so is the send
    // queued behind it, and every later one to itself: that send's message would otherwise sit in
    // the link and be taken by the next receive (stale data, helper-35).
    lockstepRequest_t recv = nullptr, send = nullptr;
    ASSERT_EQ(lockstepIrecv(in.data(), fits, lockstepInt32, r, comms[r], &recv), lockstepSuccess);
    ASSERT_EQ(lockstepIsend(b.data(), fits, lockstepInt32, r, comms[r], &send), lockstepSuccess);
    why = refused(lockstepWait(&recv, -1), "Irecv");
    EXPECT_NE(why.find("no send to itself matches"), std::string::npos) << why;
    why = refused(lockstepWait(&send, -1), "the Isend behind it");
    EXPECT_NE(why.find("refused since a receive from itself was"), std::string::npos) << why;
    refused(lockstepSend(a.data(), fits, lockstepInt32, r, comms[r], nullptr), "a later send");
    EXPECT_LT(seconds(), 5.0);
    // The communicator goes on with its peer: collectives, and sends and receives to it (they
    // were once refused as "to rank r (itself)", leaving the peer's matching call to time out).
    int32_t x = r + 1, sum = 0;
    ASSERT_EQ(lockstepAllReduce(&x, &sum, 1, lockstepInt32, lockstepSum, comms[r], nullptr), lockstepSuccess)
        << lockstepGetLastError(nullptr);
    EXPECT_EQ(sum, 3);
    const int peer = 1 - r;
    int32_t got = -1;
    lockstepGroupStart();
    lockstepSend(&x, 1, lockstepInt32, peer, comms[r], nullptr);
    lockstepRecv(&got, 1, lockstepInt32, peer, comms[r], nullptr);
    ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << lockstepGetLastError(nullptr);
    EXPECT_EQ(got, peer + 1);
    if (r == 0) {
      ASSERT_EQ(lockstepSend(&x, 1, lockstepInt32, peer, comms[r], nullptr), lockstepSuccess)
          << lockstepGetLastError(nullptr);
    } else {
      ASSERT_EQ(lockstepRecv(&got, 1, lockstepInt32, peer, comms[r], nullptr), lockstepSuccess)
          << lockstepGetLastError(nullptr);
      EXPECT_EQ(got, 1);
    }
    // And to itself, still refused; in a group with the peer, the group says the peer's part
    // went with it (the peer's matching calls would wait: here both ranks' groups are refused).
    refused(lockstepSend(a.data(), fits, lockstepInt32, r, comms[r], nullptr), "a send to itself after all that");
    lockstepGroupStart();
    lockstepSend(&x, 1, lockstepInt32, r, comms[r], nullptr);
    lockstepRecv(&got, 1, lockstepInt32, r, comms[r], nullptr);
    lockstepSend(&x, 1, lockstepInt32, peer, comms[r], nullptr);
    lockstepRecv(&got, 1, lockstepInt32, peer, comms[r], nullptr);
    why = refused(lockstepGroupEnd(), "a group to itself and its peer");
    EXPECT_NE(why.find("sends and receives to other ranks were refused with it"), std::string::npos) << why;
  });
  destroyAll(comms);
}

// A receive where the peer calls a collective fails at once on both sides, naming the kind of
// call; the message once blamed the sequence number and suggested a skipped call.
TEST(SendRecv, AReceiveAgainstACollectiveIsAMismatchOfKindOnBothSides) {
  auto comms = initThreadComms(2);
  std::vector<std::string> errors(2);
  onThreads(2, [&](int r) {
    float x[4] = {1, 2, 3, 4}, y[4];
    const lockstepResult_t rc = r == 0 ? lockstepRecv(y, 4, lockstepFloat32, 1, comms[r], nullptr)
                                       : lockstepAllReduce(x, y, 4, lockstepFloat32, lockstepSum, comms[r], nullptr);
    EXPECT_EQ(rc, lockstepMismatch) << "rank " << r;
    errors[r] = lockstepGetLastError(nullptr);
  });
  for (const std::string& e : errors) {
    EXPECT_NE(e.find("called send/recv but rank 1"), std::string::npos) << e;
    EXPECT_NE(e.find("first difference: kind (a send or receive on one side, a collective on the other; in a group"),
              std::string::npos)
        << e;
    EXPECT_EQ(e.find("skipped a call"), std::string::npos) << e;
  }
  destroyAll(comms);
}

// A send or receive of count 0 is a message (header only), as in MPI and NCCL: it pairs with the
// peer's call, so a 0-count send against a 10-element receive is a mismatch, not a receive that
// silently takes the next message. (They once moved nothing at all.)
TEST_F(SmallSlots, ZeroCountSendsAndReceivesAreMatchedMessages) {
  {
    auto comms = initThreadComms(2);
    std::vector<std::string> errors(2);
    onThreads(2, [&](int r) {
      std::vector<int32_t> v(10, r == 0 ? 7 : -1);
      // Blocking, ungrouped, NULL buffers: each pairs with the peer's.
      lockstepResult_t a = r == 0 ? lockstepSend(nullptr, 0, lockstepInt32, 1, comms[r], nullptr)
                                  : lockstepRecv(nullptr, 0, lockstepInt32, 0, comms[r], nullptr);
      lockstepResult_t b = r == 0 ? lockstepSend(v.data(), 10, lockstepInt32, 1, comms[r], nullptr)
                                  : lockstepRecv(v.data(), 10, lockstepInt32, 0, comms[r], nullptr);
      if (a != lockstepSuccess || b != lockstepSuccess || v[9] != 7) errors[r] = lockstepGetLastError(nullptr);
      // An all-to-all-v in a group, with empty pieces both ways.
      std::vector<int32_t> out(4, r), in(4, -1);
      const size_t mine = r == 0 ? 0 : 4, theirs = r == 0 ? 4 : 0;
      lockstepGroupStart();
      lockstepSend(out.data(), mine, lockstepInt32, 1 - r, comms[r], nullptr);
      lockstepRecv(in.data(), theirs, lockstepInt32, 1 - r, comms[r], nullptr);
      if (lockstepGroupEnd() != lockstepSuccess) errors[r] += lockstepGetLastError(nullptr);
      if (r == 0 && in[3] != 1) errors[r] += " / the group's data";
    });
    for (int r = 0; r < 2; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
    destroyAll(comms);
  }
  auto comms = initThreadComms(2);
  std::string why;
  onThreads(2, [&](int r) {
    std::vector<int32_t> v(10, 7);
    if (r == 0) {
      lockstepSend(v.data(), 0, lockstepInt32, 1, comms[r], nullptr);
      lockstepSend(v.data(), 10, lockstepInt32, 1, comms[r], nullptr);
    } else if (lockstepRecv(v.data(), 10, lockstepInt32, 0, comms[r], nullptr) != lockstepMismatch) {
      why = std::string("no mismatch: ") + lockstepGetLastError(nullptr);
    } else {
      why = lockstepGetLastError(nullptr);
    }
  });
  EXPECT_NE(why.find("sent a 0-byte message where rank 1 posted a 40-byte receive"), std::string::npos) << why;
  destroyAll(comms);
}

TEST_F(SmallSlots, AllPairsExchangeInOneGroup) {
  const int n = 4;
  auto comms = initThreadComms(n);
  const size_t count = 20000;
  onThreads(n, [&](int r) {
    std::vector<std::vector<int64_t>> out(n, std::vector<int64_t>(count)), in(n, std::vector<int64_t>(count));
    for (int p = 0; p < n; ++p) std::iota(out[p].begin(), out[p].end(), int64_t(r) * 100 + p);
    lockstepGroupStart();
    for (int p = n - 1; p >= 0; --p) lockstepRecv(in[p].data(), count, lockstepInt64, p, comms[r], nullptr);
    for (int p = 0; p < n; ++p) lockstepSend(out[p].data(), count, lockstepInt64, p, comms[r], nullptr);
    ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << lockstepGetLastError(nullptr);
    for (int p = 0; p < n; ++p) {
      EXPECT_EQ(in[p][0], int64_t(p) * 100 + r) << "rank " << r << " from " << p;
      EXPECT_EQ(in[p][count - 1], int64_t(p) * 100 + r + int64_t(count) - 1);
    }
  });
  destroyAll(comms);
}

TEST_F(SmallSlots, OneThreadDrivesEveryRanksCommunicatorInAGroup) {
  const int n = 4;
  auto comms = initThreadComms(n);
  const size_t count = 100003;
  std::vector<std::vector<float>> bufs(n, std::vector<float>(count));
  for (int r = 0; r < n; ++r) std::fill(bufs[r].begin(), bufs[r].end(), float(r + 1));
  // As with single-process multi-GPU NCCL: the calls of all ranks from one thread, in one group.
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  for (int r = 0; r < n; ++r) {
    ASSERT_EQ(lockstepAllReduce(bufs[r].data(), bufs[r].data(), count, lockstepFloat32, lockstepSum, comms[r], nullptr),
              lockstepSuccess);
  }
  ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << lockstepGetLastError(nullptr);
  for (int r = 0; r < n; ++r) EXPECT_EQ(bufs[r][count - 1], 10.0f);
  destroyAll(comms);
}

TEST(Groups, MisuseIsRejected) {
  EXPECT_EQ(lockstepGroupEnd(), lockstepInvalidUsage);
  auto comms = initThreadComms(1);
  float x = 1;
  lockstepRequest_t req;
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepIallReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[0], &req), lockstepSuccess);
  EXPECT_EQ(lockstepWait(&req, -1), lockstepInvalidUsage) << "waiting inside a group";
  EXPECT_EQ(lockstepCommDestroy(comms[0]), lockstepInvalidUsage) << "destroying a comm the group uses";
  lockstepComm_t child;
  EXPECT_EQ(lockstepCommSplit(comms[0], 0, 0, &child), lockstepInvalidUsage);
  // Each refusal was a failed call inside the group, which discards it (as any failed call does).
  ASSERT_EQ(lockstepGroupEnd(), lockstepInvalidUsage);
  EXPECT_EQ(lockstepWait(&req, -1), lockstepInvalidUsage);
  EXPECT_EQ(req, nullptr);
  destroyAll(comms);
}

// Ranks that are threads of one process, joined by sockets: a split inside a group is refused at
// once, as over inproc. Taken for ranks of other processes (by transport name), it waited in the
// exchange for the other rank's split, which this very thread would make, to the timeout, and
// broke both communicators (helper-85).
TEST(Groups, ASplitInsideAGroupAmongThreadRanksOverSocketsIsRefusedAtOnce) {
  setenv("LOCKSTEP_TRANSPORTS", "socket", 1);
  setenv("LOCKSTEP_TIMEOUT", "5", 1);
  auto comms = initThreadComms(2);
  unsetenv("LOCKSTEP_TRANSPORTS");
  unsetenv("LOCKSTEP_TIMEOUT");
  ASSERT_STREQ(communicatorOf(comms[0])->transportTo(1), "socket");
  const auto t0 = std::chrono::steady_clock::now();
  lockstepComm_t child = nullptr;
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  EXPECT_EQ(lockstepCommSplit(comms[0], 0, 0, &child), lockstepInvalidUsage);
  EXPECT_EQ(lockstepGroupEnd(), lockstepInvalidUsage);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  onThreads(2, [&](int r) {
    float x = 1;
    EXPECT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr), lockstepSuccess)
        << lockstepGetLastError(comms[r]);
    EXPECT_EQ(x, 2.0f);
  });
  destroyAll(comms);
}

// A wait returns when its op ends: the op's end rings the futex the waiter sleeps on. It used to
// sleep in growing steps, up to 0.5 ms, and notice the end that much later (helper-86). Rank 1
// posts 3 ms after rank 0 began waiting, long enough for rank 0's wait to be asleep; the median
// over the rounds of rank 0's return after rank 1's post stays well under a step (here 55 us
// with the ring, 196-204 without it).
TEST(Requests, AWaitReturnsSoonAfterItsOpEnds) {
  auto comms = initThreadComms(2);
  constexpr int kRounds = 40;
  std::vector<double> lateUs;
  std::atomic<int64_t> postedAt{0};
  std::atomic<int> round{-1};
  const auto nowUs = [] {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  onThreads(2, [&](int r) {
    float x = 1, y = 0;
    for (int i = 0; i < kRounds; ++i) {
      lockstepRequest_t req = nullptr;
      if (r == 1) {
        while (round.load() != i) std::this_thread::yield();
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
        postedAt.store(nowUs());
      }
      ASSERT_EQ(lockstepIallReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[r], &req), lockstepSuccess);
      if (r == 0) round.store(i);
      ASSERT_EQ(lockstepWait(&req, -1), lockstepSuccess);
      if (r == 0) lateUs.push_back(static_cast<double>(nowUs() - postedAt.load()));
      ASSERT_EQ(lockstepBarrier(comms[r], nullptr), lockstepSuccess);
    }
  });
  std::sort(lateUs.begin(), lateUs.end());
  ASSERT_EQ(lateUs.size(), static_cast<size_t>(kRounds));
  EXPECT_LT(lateUs[kRounds / 2], 130.0) << "median microseconds from the last post to the wait's return";
  destroyAll(comms);
}

TEST(Requests, ManyOutstandingOpsCompleteInOrderWithCorrectData) {
  const int n = 3, ops = 64;
  auto comms = initThreadComms(n);
  onThreads(n, [&](int r) {
    std::vector<std::vector<int32_t>> bufs(ops, std::vector<int32_t>(5000));
    std::vector<lockstepRequest_t> reqs(ops);
    for (int k = 0; k < ops; ++k) {
      std::fill(bufs[k].begin(), bufs[k].end(), k * 10 + r);
      ASSERT_EQ(lockstepIallReduce(bufs[k].data(), bufs[k].data(), bufs[k].size(), lockstepInt32, lockstepSum, comms[r],
                                   &reqs[k]),
                lockstepSuccess);
    }
    ASSERT_EQ(lockstepWait(&reqs[ops - 1], -1), lockstepSuccess);
    // Executed in issue order: once the last is done, every earlier one is too.
    for (int k = 0; k < ops - 1; ++k) {
      int done = 0;
      ASSERT_EQ(lockstepTest(&reqs[k], &done), lockstepSuccess);
      EXPECT_EQ(done, 1) << "op " << k;
      EXPECT_EQ(reqs[k], nullptr);
    }
    for (int k = 0; k < ops; ++k) EXPECT_EQ(bufs[k][4999], 3 * k * 10 + 0 + 1 + 2) << "op " << k;
  });
  destroyAll(comms);
}

TEST(Requests, WaitWithADeadlineReportsInProgressThenCompletes) {
  const int n = 2;
  auto comms = initThreadComms(n);
  onThreads(n, [&](int r) {
    double x = r, y = 0;
    if (r == 1) usleep(300 * 1000);  // rank 1 is late
    lockstepRequest_t req;
    ASSERT_EQ(lockstepIallReduce(&x, &y, 1, lockstepFloat64, lockstepSum, comms[r], &req), lockstepSuccess);
    if (r == 0) {
      EXPECT_EQ(lockstepWait(&req, 20), lockstepInProgress);
      EXPECT_NE(req, nullptr) << "still valid after a deadline";
      int done = 1;
      EXPECT_EQ(lockstepTest(&req, &done), lockstepSuccess);
      EXPECT_EQ(done, 0);
    }
    // Rank 0 waits with the largest timeout there is (forever, not a deadline overflowed into
    // the past), rank 1 with none.
    EXPECT_EQ(lockstepWait(&req, r == 0 ? INT64_MAX : -1), lockstepSuccess) << lockstepGetLastError(nullptr);
    EXPECT_EQ(y, 1.0);
  });
  destroyAll(comms);
}

TEST(Requests, TheCallerIsFreeWhileTheOpRuns) {
  // The op progresses on the communicator's thread while the caller computes.
  const int n = 2;
  auto comms = initThreadComms(n);
  onThreads(n, [&](int r) {
    std::vector<float> v(16 << 20, 1.0f);
    lockstepRequest_t req;
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(lockstepIallReduce(v.data(), v.data(), v.size(), lockstepFloat32, lockstepSum, comms[r], &req),
              lockstepSuccess);
    double postUs = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(lockstepWait(&req, -1), lockstepSuccess);
    double totalUs = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(postUs, totalUs / 4) << "posting must not run the 64 MiB all-reduce";
    EXPECT_EQ(v[12345], 2.0f);
  });
  destroyAll(comms);
}

// One thread at a time completes a request (as in MPI): with one thread waiting, another's wait,
// test or free is refused, naming the misuse (each once crashed the process: the waiter freed the
// request under it); the waiter's op completes with the right sum.
TEST(Requests, ASecondThreadCompletingARequestBeingWaitedForIsRefused) {
  auto comms = initThreadComms(2);
  float x = 1, y = 0;
  lockstepRequest_t req = nullptr;
  ASSERT_EQ(lockstepIallReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], &req), lockstepSuccess);
  lockstepRequest_t seen = req;  // the waiter's copy: the main thread never reads req after this
  std::atomic<bool> waiting{false};
  lockstepResult_t waited = lockstepInternalError;
  std::thread waiter([&] {
    waiting = true;
    waited = lockstepWait(&req, 20000);  // rank 1 comes below
  });
  while (!waiting) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  int done = 7;
  EXPECT_EQ(lockstepWait(&seen, 0), lockstepInvalidUsage);
  EXPECT_NE(std::string(lockstepGetLastError(nullptr)).find("another thread is waiting for, testing or freeing"),
            std::string::npos)
      << lockstepGetLastError(nullptr);
  EXPECT_EQ(lockstepTest(&seen, &done), lockstepInvalidUsage);
  EXPECT_EQ(done, 0);
  EXPECT_EQ(lockstepRequestFree(&seen), lockstepInvalidUsage);
  EXPECT_NE(seen, nullptr) << "a refused free leaves the handle";
  float x1 = 2, y1 = 0;
  EXPECT_EQ(lockstepAllReduce(&x1, &y1, 1, lockstepFloat32, lockstepSum, comms[1], nullptr), lockstepSuccess);
  waiter.join();
  EXPECT_EQ(waited, lockstepSuccess) << lockstepGetLastError(nullptr);
  EXPECT_EQ(req, nullptr);
  EXPECT_EQ(y, 3.0f);
  EXPECT_EQ(y1, 3.0f);
  destroyAll(comms);
}

// A split drives its communicator as a collective does: beside another thread's call on it, it is
// refused at once (it once waited for ever for that call's end, and an abort waited with it), and
// the call and later splits go on.
TEST(Split, ASplitBesideAnotherThreadsCallIsRefusedAndBothGoOn) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "two threads race on one communicator on purpose (the misuse refused here)";
#endif
  auto comms = initThreadComms(2);
  float x = 1, y = 0;
  std::atomic<bool> started{false};
  lockstepResult_t inside = lockstepInternalError;
  std::thread caller([&] {
    started = true;
    inside = lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], nullptr);  // rank 1 comes below
  });
  while (!started) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  lockstepComm_t child = nullptr;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(lockstepCommSplit(comms[0], 0, 0, &child), lockstepInvalidUsage);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_NE(std::string(lockstepGetLastError(nullptr)).find("another thread is inside a call"), std::string::npos)
      << lockstepGetLastError(nullptr);
  EXPECT_EQ(child, nullptr);
  float x1 = 2, y1 = 0;
  EXPECT_EQ(lockstepAllReduce(&x1, &y1, 1, lockstepFloat32, lockstepSum, comms[1], nullptr), lockstepSuccess);
  caller.join();
  EXPECT_EQ(inside, lockstepSuccess);
  EXPECT_EQ(y, 3.0f);
  std::vector<lockstepComm_t> children(2, nullptr);
  onThreads(2, [&](int r) {
    EXPECT_EQ(lockstepCommSplit(comms[r], 0, r, &children[r]), lockstepSuccess) << lockstepGetLastError(nullptr);
    float a = 1, b = 0;
    EXPECT_EQ(lockstepAllReduce(&a, &b, 1, lockstepFloat32, lockstepSum, children[r], nullptr), lockstepSuccess);
    EXPECT_EQ(b, 2.0f);
  });
  destroyAll(children);
  destroyAll(comms);
}

// A rank whose split is refused (bad color, NULL newcomm) still takes part in the exchange: every
// rank fails at once naming it, and nobody's split pairs with a later one.
TEST(Split, ARefusedCallFailsEveryRankAndTheNextSplitWorks) {
  const int n = 3;
  auto comms = initThreadComms(n);
  for (int culprit = 0; culprit < 2; ++culprit) {  // 0: a negative color; 1: newcomm NULL
    std::vector<lockstepComm_t> children(n, nullptr);
    std::vector<lockstepResult_t> first(n);
    std::vector<std::string> why(n);
    std::vector<double> seconds(n);
    onThreads(n, [&](int r) {
      auto t0 = std::chrono::steady_clock::now();
      if (r == 1) {
        first[r] = culprit == 0 ? lockstepCommSplit(comms[r], -5, 0, &children[r])
                                : lockstepCommSplit(comms[r], 0, 0, nullptr);
      } else {
        first[r] = lockstepCommSplit(comms[r], 0, r, &children[r]);
      }
      why[r] = lockstepGetLastError(nullptr);
      seconds[r] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      // Everyone tries again, correctly: the same split, now for all.
      ASSERT_EQ(lockstepCommSplit(comms[r], 0, r, &children[r]), lockstepSuccess) << lockstepGetLastError(nullptr);
    });
    for (int r = 0; r < n; ++r) {
      EXPECT_EQ(first[r], lockstepInvalidArgument) << "rank " << r << ": " << why[r];
      EXPECT_NE(why[r].find(r == 1 ? (culprit == 0 ? "color -5" : "newcomm is NULL") : "rank 1"), std::string::npos)
          << why[r];
      EXPECT_LT(seconds[r], 5.0) << "rank " << r << " waited for the refused rank";
    }
    onThreads(n, [&](int r) {
      int size = 0;
      ASSERT_EQ(lockstepCommCount(children[r], &size), lockstepSuccess);
      EXPECT_EQ(size, n) << "the retry formed one communicator of everyone";
      int64_t v = 1, sum = 0;
      ASSERT_EQ(lockstepAllReduce(&v, &sum, 1, lockstepInt64, lockstepSum, children[r], nullptr), lockstepSuccess);
      EXPECT_EQ(sum, n);
      ASSERT_EQ(lockstepAllReduce(&v, &sum, 1, lockstepInt64, lockstepSum, comms[r], nullptr), lockstepSuccess);
    });
    destroyAll(children);
  }
  destroyAll(comms);
}

// One rank splits while the other calls a collective: both are told of the mismatch within
// moments, where each once waited out its whole timeout (300 s by default).
TEST(Split, ARankThatCallsACollectiveInsteadIsAMismatchNotATimeout) {
  auto comms = initThreadComms(2);
  std::vector<lockstepResult_t> result(2);
  std::vector<std::string> why(2);
  std::vector<double> seconds(2);
  onThreads(2, [&](int r) {
    const auto t0 = std::chrono::steady_clock::now();
    if (r == 0) {
      lockstepComm_t child = nullptr;
      result[r] = lockstepCommSplit(comms[r], 0, 0, &child);
    } else {
      float x = 1;
      result[r] = lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr);
    }
    why[r] = lockstepGetLastError(r == 0 ? nullptr : comms[r]);
    seconds[r] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(result[r], lockstepMismatch) << "rank " << r << ": " << why[r];
    EXPECT_NE(why[r].find("lockstepCommSplit #1"), std::string::npos) << why[r];
    EXPECT_LT(seconds[r], 10.0) << "rank " << r;
  }
  destroyAll(comms);
}

// A split waiting for a rank that never comes ends with an abort from another thread.
TEST(Split, AnAbortEndsASplitThatWaitsForAbsentRanks) {
  auto comms = initThreadComms(2);
  lockstepResult_t result = lockstepSuccess;
  std::atomic<bool> started{false};
  std::thread splitter([&] {
    lockstepComm_t child = nullptr;
    started = true;
    result = lockstepCommSplit(comms[0], 0, 0, &child);  // rank 1 never splits
  });
  while (!started) std::this_thread::yield();
  usleep(200 * 1000);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess);
  splitter.join();
  EXPECT_EQ(result, lockstepAborted);
  // Milliseconds: an abort waits for no report from a peer (it once took a 300 ms grace for one).
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(250));
  EXPECT_EQ(lockstepCommDestroy(comms[1]), lockstepSuccess);
}

TEST(Split, ColorsAndKeysFormIndependentCommunicatorsUsedConcurrently) {
  const int n = 6;
  auto comms = initThreadComms(n);
  std::vector<lockstepComm_t> children(n, nullptr);
  onThreads(n, [&](int r) {
    // Even and odd ranks, each ordered by descending old rank; rank 5 opts out.
    int color = r == 5 ? LOCKSTEP_SPLIT_NOCOLOR : r % 2;
    ASSERT_EQ(lockstepCommSplit(comms[r], color, -r, &children[r]), lockstepSuccess) << lockstepGetLastError(nullptr);
  });
  EXPECT_EQ(children[5], nullptr);
  int rank, size;
  lockstepCommUserRank(children[0], &rank);
  lockstepCommCount(children[0], &size);
  EXPECT_EQ(size, 3);
  EXPECT_EQ(rank, 2) << "key -r puts old rank 0 last among 0, 2, 4";
  lockstepCommCount(children[1], &size);
  EXPECT_EQ(size, 2);

  // Parent and child driven at the same time by different threads of each rank.
  onThreads(n, [&](int r) {
    std::thread childThread([&] {
      if (!children[r]) return;
      for (int k = 0; k < 50; ++k) {
        int64_t v = r, sum = 0;
        ASSERT_EQ(lockstepAllReduce(&v, &sum, 1, lockstepInt64, lockstepSum, children[r], nullptr), lockstepSuccess);
        ASSERT_EQ(sum, r % 2 ? 1 + 3 : 0 + 2 + 4);
      }
    });
    for (int k = 0; k < 50; ++k) {
      int64_t v = 1, sum = 0;
      ASSERT_EQ(lockstepAllReduce(&v, &sum, 1, lockstepInt64, lockstepSum, comms[r], nullptr), lockstepSuccess);
      ASSERT_EQ(sum, n);
    }
    childThread.join();
  });
  destroyAll(children);
  destroyAll(comms);
}

}  // namespace
}  // namespace lockstep

namespace lockstep {
namespace {

using testing::destroyAll;
using testing::initThreadComms;
using testing::onThreads;

// Point-to-point order does not depend on whether either end used a group.
TEST_F(SmallSlots, MessagesToOnePeerStayWholeAndInOrderWithOrWithoutGroups) {
  auto comms = initThreadComms(2);
  onThreads(2, [&](int r) {
    std::vector<int32_t> a(3 * 1024), b(1024);  // 3 slots, then 1 slot
    if (r == 0) {
      std::iota(a.begin(), a.end(), 0);
      std::iota(b.begin(), b.end(), 100000);
      lockstepGroupStart();
      lockstepSend(a.data(), a.size(), lockstepInt32, 1, comms[r], nullptr);
      lockstepSend(b.data(), b.size(), lockstepInt32, 1, comms[r], nullptr);
      int64_t v = 1, s = 0;  // a collective after the sends keeps its place
      lockstepAllReduce(&v, &s, 1, lockstepInt64, lockstepSum, comms[r], nullptr);
      ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << lockstepGetLastError(nullptr);
      EXPECT_EQ(s, 2);
    } else {
      ASSERT_EQ(lockstepRecv(a.data(), a.size(), lockstepInt32, 0, comms[r], nullptr), lockstepSuccess);
      ASSERT_EQ(lockstepRecv(b.data(), b.size(), lockstepInt32, 0, comms[r], nullptr), lockstepSuccess);
      int64_t v = 1, s = 0;
      ASSERT_EQ(lockstepAllReduce(&v, &s, 1, lockstepInt64, lockstepSum, comms[r], nullptr), lockstepSuccess);
      EXPECT_EQ(s, 2);
      for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], int32_t(i));
      for (size_t i = 0; i < b.size(); ++i) ASSERT_EQ(b[i], int32_t(100000 + i));
    }
  });
  destroyAll(comms);
}

TEST_F(SmallSlots, ASendLargerThanItsReceiveIsAMismatchNotCorruption) {
  auto comms = initThreadComms(2);
  onThreads(2, [&](int r) {
    std::vector<int32_t> buf(2048, 1);
    lockstepResult_t rc = r == 0 ? lockstepSend(buf.data(), 2048, lockstepInt32, 1, comms[r], nullptr)
                                 : lockstepRecv(buf.data(), 1024, lockstepInt32, 0, comms[r], nullptr);
    if (r == 1) {
      EXPECT_EQ(rc, lockstepMismatch);
      EXPECT_NE(std::string(lockstepGetLastError(nullptr)).find("8192-byte message"), std::string::npos)
          << lockstepGetLastError(nullptr);
    } else {
      // The sender learns through the group's failure notice.
      EXPECT_TRUE(rc == lockstepSuccess || rc == lockstepMismatch) << rc;
    }
    int64_t v = 1, s = 0;
    EXPECT_NE(lockstepAllReduce(&v, &s, 1, lockstepInt64, lockstepSum, comms[r], nullptr), lockstepSuccess)
        << "after a mismatch the communicator refuses work rather than compute garbage";
  });
  destroyAll(comms);
}

TEST(Groups, AFailedCallDiscardsTheWholeGroup) {
  auto comms = initThreadComms(1);
  float x = 1, y = 0;
  lockstepRequest_t req;
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepIallReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], &req), lockstepSuccess);
  EXPECT_EQ(lockstepAllReduce(nullptr, &y, 1, lockstepFloat32, lockstepSum, comms[0], nullptr),
            lockstepInvalidArgument);
  EXPECT_EQ(lockstepGroupEnd(), lockstepInvalidArgument) << "nothing was launched";
  EXPECT_EQ(lockstepWait(&req, -1), lockstepInvalidArgument) << "the group's requests carry its error";
  EXPECT_EQ(y, 0.0f);
  // A non-blocking call without its request handle fails the group the same way.
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], nullptr), lockstepSuccess);
  EXPECT_EQ(lockstepIallReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], nullptr), lockstepInvalidArgument);
  EXPECT_EQ(lockstepGroupEnd(), lockstepInvalidArgument) << "nothing was launched";
  EXPECT_EQ(y, 0.0f);
  // The next group is unaffected.
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], nullptr), lockstepSuccess);
  ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess);
  EXPECT_EQ(y, 1.0f);
  // Any entry point that fails inside a group discards it, not only the collectives: here an
  // destroy (refused inside a group), a wait for an op of the group, a bad query and a split.
  // Each leaves the communicator as it was.
  lockstepRequest_t done = nullptr, mine = nullptr;
  float earlier = 0;  // its own output: the op runs in the background while the loop uses y
  ASSERT_EQ(lockstepIallReduce(&x, &earlier, 1, lockstepFloat32, lockstepSum, comms[0], &done), lockstepSuccess);
  lockstepComm_t child = nullptr;
  const std::function<lockstepResult_t()> misuses[] = {
      [&] { return lockstepCommDestroy(comms[0]); },
      [&] { return lockstepWait(&mine, -1); },
      [&] { return lockstepCommCount(comms[0], nullptr); },
      [&] { return lockstepCommSplit(comms[0], 0, 0, &child); },
  };
  for (const auto& misuse : misuses) {
    y = 0;
    ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
    ASSERT_EQ(lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], nullptr), lockstepSuccess);
    float z = 0;
    ASSERT_EQ(lockstepIallReduce(&x, &z, 1, lockstepFloat32, lockstepSum, comms[0], &mine), lockstepSuccess);
    const lockstepResult_t refused = misuse();
    EXPECT_NE(refused, lockstepSuccess);
    EXPECT_EQ(lockstepGroupEnd(), refused) << "nothing was launched";
    EXPECT_EQ(y, 0.0f);
    EXPECT_EQ(lockstepWait(&mine, -1), refused) << "the group's request carries the discard";
    lockstepResult_t async;
    ASSERT_EQ(lockstepCommGetAsyncError(comms[0], &async), lockstepSuccess);
    EXPECT_EQ(async, lockstepSuccess);
  }
  EXPECT_EQ(lockstepWait(&done, -1), lockstepSuccess) << "the request from before the groups is untouched";
  EXPECT_EQ(earlier, 1.0f);
  ASSERT_EQ(lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], nullptr), lockstepSuccess);
  EXPECT_EQ(y, 1.0f);
  destroyAll(comms);
}

// The C++ group() discards the group when its function throws, whatever it throws (buffers local
// to the function are gone by then: launching would write into freed memory).
TEST(Groups, TheCxxGroupLaunchesNothingWhenItsFunctionThrows) {
  auto comms = initThreadComms(1);
  float x = 1, y = 0;
  lockstep::Request pending;
  bool caught = false;
  try {
    lockstep::group([&] {
      lockstepRequest_t req = nullptr;
      ASSERT_EQ(lockstepIallReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], &req), lockstepSuccess);
      pending = lockstep::Request(req);
      throw std::runtime_error("the caller's own failure");
    });
  } catch (const std::runtime_error& e) {
    caught = std::string(e.what()) == "the caller's own failure";
  }
  EXPECT_TRUE(caught) << "the caller's exception goes on unchanged";
  EXPECT_THROW(pending.wait(), lockstep::Exception) << "the group's request carries the discard";
  EXPECT_EQ(y, 0.0f) << "nothing was launched";
  // No group is left open, and the next one runs.
  lockstep::group([&] { ASSERT_EQ(lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], nullptr), 0); });
  EXPECT_EQ(y, 1.0f);
  EXPECT_EQ(lockstepGroupAbandon(), lockstepInvalidUsage) << "no group is open";
  destroyAll(comms);
}

// Inside a group, an operation launched before it (a non-blocking call, an earlier group) can be
// waited for, and a C++ Request dropped there waits for such an operation and only lets go of one
// of the open group. The destructor once waited on everything, was refused inside the group, and
// so discarded the group; move-assigning the next iteration's request then freed the last one's
// handle without waiting, and its buffer was freed under the running all-reduce.
// A wait whose deadline passes inside a group is an answer (lockstepInProgress), not a failure:
// the group still launches. It once discarded the group like any failed call.
TEST(Groups, AWaitThatRunsOutOfTimeInsideAGroupDoesNotDiscardIt) {
  auto comms = initThreadComms(2);
  float a = 1, b = 0, x = 1, y = 0;
  lockstepRequest_t before = nullptr, inside = nullptr;
  // Rank 1 has not called yet: this all-reduce cannot finish.
  ASSERT_EQ(lockstepIallReduce(&a, &b, 1, lockstepFloat32, lockstepSum, comms[0], &before), lockstepSuccess);
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepIallReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], &inside), lockstepSuccess);
  EXPECT_EQ(lockstepWait(&before, 10), lockstepInProgress);
  EXPECT_EQ(lockstepGroupEnd(), lockstepSuccess) << lockstepGetLastError(nullptr);
  std::thread rank1([&] {
    float c = 1, d = 0, u = 1, v = 0;
    EXPECT_EQ(lockstepAllReduce(&c, &d, 1, lockstepFloat32, lockstepSum, comms[1], nullptr), lockstepSuccess);
    EXPECT_EQ(lockstepAllReduce(&u, &v, 1, lockstepFloat32, lockstepSum, comms[1], nullptr), lockstepSuccess);
  });
  EXPECT_EQ(lockstepWait(&before, -1), lockstepSuccess);
  EXPECT_EQ(lockstepWait(&inside, -1), lockstepSuccess);
  rank1.join();
  EXPECT_EQ(b, 2.0f);
  EXPECT_EQ(y, 2.0f);
  destroyAll(comms);
}

// Nor is a wait there that reports an earlier operation's failure: the wait did its job. It once
// discarded the group, leaving this rank out of the group its peer ran (helper-57), though the
// failed operation (a receive from itself that nothing sent, refused when it ran) left the
// communicator usable.
TEST(Groups, AWaitInsideAGroupThatReportsAnEarlierOperationsFailureDoesNotDiscardIt) {
  auto comms = initThreadComms(2);
  float y = 0;
  lockstepRequest_t refused = nullptr;
  ASSERT_EQ(lockstepIrecv(&y, 1, lockstepFloat32, 0, comms[0], &refused), lockstepSuccess);
  lockstepResult_t peer = lockstepInternalError;
  std::thread rank1([&] {
    float c = 1;
    peer = lockstepAllReduce(&c, &c, 1, lockstepFloat32, lockstepSum, comms[1], nullptr);
  });
  float x = 1;
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[0], nullptr), lockstepSuccess);
  EXPECT_EQ(lockstepWait(&refused, -1), lockstepInvalidUsage);
  EXPECT_NE(std::string(lockstepGetLastError(nullptr)).find("itself"), std::string::npos)
      << lockstepGetLastError(nullptr);
  const lockstepResult_t end = lockstepGroupEnd();
  const std::string why = lockstepGetLastError(nullptr);
  // Discarded, the peer's all-reduce would wait out its timeout: the abort ends it at once.
  if (end != lockstepSuccess) lockstepCommAbort(comms[0]);
  rank1.join();
  EXPECT_EQ(end, lockstepSuccess) << why;
  EXPECT_EQ(peer, lockstepSuccess);
  EXPECT_EQ(x, 2.0f);
  if (end == lockstepSuccess) EXPECT_EQ(lockstepCommDestroy(comms[0]), lockstepSuccess);
  EXPECT_EQ(lockstepCommDestroy(comms[1]), lockstepSuccess);
}

TEST(Groups, RequestsLaunchedBeforeAGroupCanBeWaitedForInsideIt) {
  auto comms = initThreadComms(1);
  const size_t n = size_t{1} << 20;  // long enough to still be running at the next group
  float x = 1, y = 0;
  lockstepRequest_t before = nullptr;
  std::vector<float> big(n, 1.0f), out(n, 0.0f);
  ASSERT_EQ(lockstepIallReduce(big.data(), out.data(), n, lockstepFloat32, lockstepSum, comms[0], &before), 0);
  int launched = 0;
  ASSERT_EQ(lockstepRequestLaunched(before, &launched), lockstepSuccess);
  EXPECT_EQ(launched, 1);
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  lockstepRequest_t inside = nullptr;
  ASSERT_EQ(lockstepIallReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], &inside), lockstepSuccess);
  ASSERT_EQ(lockstepRequestLaunched(inside, &launched), lockstepSuccess);
  EXPECT_EQ(launched, 0) << "an op of the open group starts at its GroupEnd";
  EXPECT_EQ(lockstepWait(&before, -1), lockstepSuccess) << "an op launched before the group";
  EXPECT_EQ(out[n - 1], 1.0f);
  ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << "the wait did not discard the group";
  EXPECT_EQ(lockstepWait(&inside, -1), lockstepSuccess);
  EXPECT_EQ(y, 1.0f);

  // The C++ wrapper, as a training loop writes it: each iteration's request replaces the last,
  // whose buffers are freed right after.
  lockstep::Request pending;
  std::unique_ptr<std::vector<float>> lastIn, lastOut;
  float q = 0;  // the dropped ops' output: it must outlive them (they end by destroyAll)
  for (int iter = 0; iter < 4; ++iter) {
    auto in = std::make_unique<std::vector<float>>(n, float(iter + 1));
    auto out = std::make_unique<std::vector<float>>(n, 0.0f);
    lockstep::group([&] {
      lockstepRequest_t r = nullptr;
      ASSERT_EQ(lockstepIallReduce(in->data(), out->data(), n, lockstepFloat32, lockstepSum, comms[0], &r), 0);
      pending = lockstep::Request(r);  // waits for the last iteration's op
      lockstepRequest_t dropped = nullptr;
      ASSERT_EQ(lockstepIallReduce(&x, &q, 1, lockstepFloat32, lockstepSum, comms[0], &dropped), 0);
      lockstep::Request discard(dropped);  // dropped inside the group: the group keeps the op
    });
    if (lastOut) {
      EXPECT_EQ((*lastOut)[n - 1], float(iter)) << "the last op was done before its handle was replaced";
    }
    lastIn = std::move(in);  // the last iteration's buffers are freed here
    lastOut = std::move(out);
  }
  pending.wait();
  EXPECT_EQ((*lastOut)[n - 1], 4.0f);
  destroyAll(comms);
}

// Abort from another thread interrupts a blocked call within a second, a plain one or one inside
// a group (which GroupEnd runs inline). It frees the communicator only once the call lets go of
// it: it once freed it under a running GroupEnd (make test-asan checks that no freed memory is
// touched).
TEST(Abort, FromAnotherThreadInterruptsABlockedCallWithinASecond) {
  for (bool inGroup : {false, true}) {
    SCOPED_TRACE(inGroup ? "in a group" : "a plain call");
    auto comms = initThreadComms(2);
    std::atomic<bool> started{false};
    lockstepResult_t blocked = lockstepSuccess;
    std::thread owner([&] {
      float x = 1;
      // Rank 1 never joins: this blocks until the abort.
      if (inGroup) {
        lockstepGroupStart();
        lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[0], nullptr);
        started = true;
        blocked = lockstepGroupEnd();
      } else {
        started = true;
        blocked = lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[0], nullptr);
      }
    });
    while (!started) std::this_thread::yield();
    usleep(200 * 1000);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    owner.join();
    EXPECT_EQ(blocked, lockstepAborted);
    EXPECT_LT(ms, 1000) << "abort took " << ms << " ms";
    std::printf("abort latency: %.1f ms\n", ms);
    // Rank 1 hears that rank 0 aborted, between calls: lockstepCommGetAsyncError reports it.
    lockstepResult_t async = lockstepSuccess;
    for (int i = 0; i < 200 && async == lockstepSuccess; ++i) {
      ASSERT_EQ(lockstepCommGetAsyncError(comms[1], &async), lockstepSuccess);
      if (async == lockstepSuccess) usleep(5000);
    }
    EXPECT_EQ(async, lockstepRemoteError);
    float x = 1;
    EXPECT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[1], nullptr), lockstepRemoteError);
    EXPECT_NE(std::string(lockstepGetLastError(nullptr)).find("aborted"), std::string::npos)
        << lockstepGetLastError(nullptr);
    EXPECT_EQ(lockstepCommDestroy(comms[1]), lockstepSuccess);
  }
}

// A watchdog aborts a group's communicators one by one, while the group's GroupEnd waits on both.
// Each abort returns within a second: GroupEnd let go of the aborted communicator once its calls
// had failed, instead of holding it until the other communicator's call ended (it waited out
// LOCKSTEP_TIMEOUT, helper-57). The first communicator's call is blocking or non-blocking, and
// either communicator is aborted first.
TEST(Abort, OfOneCommunicatorInARunningGroupDoesNotWaitForTheGroupsOtherCalls) {
  for (bool nonBlocking : {false, true}) {
    for (int first : {0, 1}) {
      SCOPED_TRACE(std::string(nonBlocking ? "non-blocking" : "blocking") + ", aborting " + (first ? "B" : "A") +
                   " first");
      auto a = initThreadComms(2), b = initThreadComms(2);
      std::atomic<bool> started{false};
      lockstepResult_t groupEnd = lockstepSuccess, waited = lockstepSuccess;
      std::thread owner([&] {
        float x = 1, y = 1;
        lockstepRequest_t req = nullptr;
        // Rank 1 never joins either communicator: both calls block until the aborts.
        lockstepGroupStart();
        if (nonBlocking) {
          lockstepIallReduce(&x, &x, 1, lockstepFloat32, lockstepSum, a[0], &req);
        } else {
          lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, a[0], nullptr);
        }
        lockstepAllReduce(&y, &y, 1, lockstepFloat32, lockstepSum, b[0], nullptr);
        started = true;
        groupEnd = lockstepGroupEnd();
        if (req) waited = lockstepWait(&req, -1);
      });
      while (!started) std::this_thread::yield();
      usleep(200 * 1000);
      double ms[2];
      for (int k : {first, 1 - first}) {
        const auto t0 = std::chrono::steady_clock::now();
        EXPECT_EQ(lockstepCommAbort(k == 0 ? a[0] : b[0]), lockstepSuccess);
        ms[k] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      }
      owner.join();
      EXPECT_LT(ms[0], 1000) << "abort of A took " << ms[0] << " ms";
      EXPECT_LT(ms[1], 1000) << "abort of B took " << ms[1] << " ms";
      EXPECT_EQ(groupEnd, lockstepAborted);
      if (nonBlocking) EXPECT_EQ(waited, lockstepAborted);
      EXPECT_EQ(lockstepCommDestroy(a[1]), lockstepSuccess);
      EXPECT_EQ(lockstepCommDestroy(b[1]), lockstepSuccess);
    }
  }
}

// Two thread-ranks' communicators, each split once (children) and the child split again.
struct ThreeGenerations {
  std::vector<lockstepComm_t> comms, children{2}, grandchildren{2};
};
ThreeGenerations splitTwice() {
  ThreeGenerations g{initThreadComms(2)};
  onThreads(2, [&](int r) {
    ASSERT_EQ(lockstepCommSplit(g.comms[r], 0, r, &g.children[r]), lockstepSuccess);
    ASSERT_EQ(lockstepCommSplit(g.children[r], 0, r, &g.grandchildren[r]), lockstepSuccess);
  });
  return g;
}

// An abort reaches the communicators split from the aborted one: a library that runs its traffic
// on a child (GradientSync) is stopped with its parent, and a watchdog that aborts the
// communicator it knows is enough. The child stays, failed, for its owner to destroy.
TEST(Abort, AlsoStopsTheCommunicatorsSplitFromIt) {
  auto [comms, children, grandchildren] = splitTwice();
  for (lockstepComm_t blockedOn : {children[0], grandchildren[0]}) {
    std::atomic<bool> started{false};
    lockstepResult_t blocked = lockstepSuccess;
    std::string why;
    std::thread owner([&] {
      float x = 1;
      started = true;
      blocked = lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, blockedOn, nullptr);  // rank 1 never joins
      why = lockstepGetLastError(nullptr);
    });
    while (!started) std::this_thread::yield();
    usleep(200 * 1000);
    if (blockedOn == children[0]) EXPECT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess);
    const auto t0 = std::chrono::steady_clock::now();
    owner.join();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(blocked, lockstepAborted) << why;
    EXPECT_LT(ms, 1000);
    // The error says which communicator: ranks in it are the split's own.
    const std::string name = blockedOn == children[0] ? "[communicator split1c0]" : "[communicator split1c0.split1c0]";
    EXPECT_NE(why.find(name), std::string::npos) << why;
  }
  for (lockstepComm_t c : {grandchildren[0], children[0], grandchildren[1], children[1], comms[1]}) {
    EXPECT_EQ(lockstepCommDestroy(c), lockstepSuccess) << lockstepGetLastError(nullptr);
  }
}

// The abort also reaches a grandchild whose parent (the child between them) is destroyed, and a
// child that a split was still building when the abort came (the split returned it unaborted,
// and its calls waited out the timeout).
TEST(Abort, ReachesGrandchildrenAndChildrenStillBeingSplit) {
  {
    auto [comms, children, grandchildren] = splitTwice();
    ASSERT_EQ(lockstepCommDestroy(children[0]), lockstepSuccess);
    ASSERT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess);
    float x = 1;
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, grandchildren[0], nullptr), lockstepAborted);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(ms, 1000);
    for (lockstepComm_t c : {grandchildren[0], grandchildren[1], children[1], comms[1]}) lockstepCommDestroy(c);
  }
  // A split of two thread-ranks takes tens of milliseconds: aborts at several points inside it.
  int caught = 0;
  for (int delayMs : {2, 5, 10, 20, 30}) {
    auto comms = initThreadComms(2);
    std::vector<lockstepComm_t> children(2, nullptr);
    std::vector<lockstepResult_t> split(2, lockstepSuccess);
    std::vector<std::thread> ranks;
    for (int r = 0; r < 2; ++r)
      ranks.emplace_back([&, r] { split[r] = lockstepCommSplit(comms[r], 0, r, &children[r]); });
    usleep(delayMs * 1000);
    ASSERT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess);
    for (auto& t : ranks) t.join();
    if (split[0] == lockstepSuccess) {
      lockstepResult_t async = lockstepSuccess;
      ASSERT_EQ(lockstepCommGetAsyncError(children[0], &async), lockstepSuccess);
      EXPECT_EQ(async, lockstepAborted) << "a child split while its parent was aborted (" << delayMs << " ms in)";
      caught += async == lockstepAborted;
    }
    for (lockstepComm_t c : {children[0], children[1], comms[1]}) {
      if (c) lockstepCommDestroy(c);
    }
  }
  std::printf("children built while their parent was aborted: %d\n", caught);
}

// A destroy waits for a call in flight, which may wait on a stalled peer for the whole timeout:
// an abort from a third thread must still cut it short (it was refused, the communicator being
// "not live" once its destroy had begun).
TEST(Abort, CutsShortADestroyThatWaitsForABlockedCall) {
  auto comms = initThreadComms(2);
  std::atomic<bool> started{false};
  lockstepResult_t blocked = lockstepSuccess, destroyed = lockstepInternalError;
  std::thread owner([&] {
    float x = 1;
    started = true;
    blocked = lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[0], nullptr);  // rank 1 never joins
  });
  while (!started) std::this_thread::yield();
  usleep(100 * 1000);
  std::thread destroyer([&] { destroyed = lockstepCommDestroy(comms[0]); });
  usleep(200 * 1000);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess) << lockstepGetLastError(nullptr);
  owner.join();
  destroyer.join();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(blocked, lockstepAborted);
  EXPECT_EQ(destroyed, lockstepSuccess);
  EXPECT_LT(ms, 2000) << "the abort took " << ms << " ms to end the destroy";
  EXPECT_EQ(lockstepCommAbort(comms[0]), lockstepInvalidUsage) << "destroyed by now";
  EXPECT_EQ(lockstepCommDestroy(comms[1]), lockstepSuccess);
}

// The ops of a group run in order, each seeing what the ones before it wrote: two in-place
// all-reduces give N^2, a broadcast then an in-place reduce the reduce of the broadcast value.
// The one-shot and rank-ordered algorithms work from a copy of an in-place input, which was once
// taken when the group was planned, before the first op had run (4 instead of 16 on 4 ranks).
TEST(Groups, EachOpSeesWhatTheOpsBeforeItWrote) {
  for (const char* algo : {"direct", "ordered", "ring", "tree"}) {
    const std::string algos =
        std::string("allreduce=") + algo +
        (std::string(algo) == "direct" || std::string(algo) == "ring" ? "" : std::string(",reduce=") + algo);
    setenv("LOCKSTEP_ALGO", algos.c_str(), 1);
    for (int n : {3, 4}) {
      auto comms = initThreadComms(n);
      std::vector<std::string> errors(n);
      onThreads(n, [&](int r) {
        std::vector<float> x(1031, 1.0f), d(1031, r == 1 ? 5.0f : 0.0f);
        lockstepGroupStart();
        lockstepAllReduce(x.data(), x.data(), x.size(), lockstepFloat32, lockstepSum, comms[r], nullptr);
        lockstepAllReduce(x.data(), x.data(), x.size(), lockstepFloat32, lockstepSum, comms[r], nullptr);
        lockstepBroadcast(d.data(), d.data(), d.size(), lockstepFloat32, 1, comms[r], nullptr);
        lockstepReduce(d.data(), d.data(), d.size(), lockstepFloat32, lockstepSum, n - 1, comms[r], nullptr);
        if (lockstepGroupEnd() != lockstepSuccess) errors[r] = lockstepGetLastError(nullptr);
        for (size_t i = 0; i < x.size() && errors[r].empty(); ++i) {
          if (x[i] != static_cast<float>(n * n))
            errors[r] = "all-reduce: " + std::to_string(x[i]) + " at " + std::to_string(i);
          if (r == n - 1 && d[i] != 5.0f * n)
            errors[r] = "reduce: " + std::to_string(d[i]) + " at " + std::to_string(i);
        }
      });
      for (int r = 0; r < n; ++r) EXPECT_EQ(errors[r], "") << algo << ", " << n << " ranks, rank " << r;
      destroyAll(comms);
    }
  }
  unsetenv("LOCKSTEP_ALGO");
}

// Another thread destroys a communicator after this thread recorded calls on it in a group:
// GroupEnd fails cleanly, naming the cause, and the group's requests carry the error.
// Aborted rather than destroyed, the group and a later call on the communicator say so, with
// lockstepAborted (a watchdog's abort racing the training thread; helper-57 found it reported as
// a usage error).
TEST(Groups, ACommunicatorDestroyedBeforeGroupEndFailsTheGroupCleanly) {
  for (bool abort : {false, true}) {
    SCOPED_TRACE(abort ? "aborted" : "destroyed");
    auto comms = initThreadComms(1);
    float x = 1, y = 0;
    lockstepRequest_t req;
    ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
    ASSERT_EQ(lockstepIallReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], &req), lockstepSuccess);
    ASSERT_EQ(lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], nullptr), lockstepSuccess);
    std::thread other(
        [&] { EXPECT_EQ(abort ? lockstepCommAbort(comms[0]) : lockstepCommDestroy(comms[0]), lockstepSuccess); });
    other.join();
    const lockstepResult_t code = abort ? lockstepAborted : lockstepInvalidUsage;
    EXPECT_EQ(lockstepGroupEnd(), code);
    EXPECT_NE(std::string(lockstepGetLastError(nullptr)).find(abort ? "aborted" : "destroyed"), std::string::npos)
        << lockstepGetLastError(nullptr);
    EXPECT_EQ(lockstepWait(&req, 5000), code) << "the request carries the group's error";
    EXPECT_EQ(y, 0.0f);
    EXPECT_EQ(lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], nullptr), code);
  }
}

// A group's launch drives its communicators as a call does: with another thread inside a call on
// one of them, lockstepGroupEnd is refused as that call would be (it once planned and ran beside
// it, sharing its plans), and the other thread's call and the communicator go on.
TEST(Groups, AGroupEndWhileAnotherThreadIsInACallOnItsCommunicatorIsRefused) {
  auto comms = initThreadComms(2);
  float in[2] = {1, 2}, out[2] = {0, 0};
  float x = 5, y = 0;
  lockstepRequest_t req;
  // Recorded first: recording it while the other thread is inside is refused already.
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepIallReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], &req), lockstepSuccess);
  std::thread inside([&] {
    EXPECT_EQ(lockstepAllReduce(&in[0], &out[0], 1, lockstepFloat32, lockstepSum, comms[0], nullptr), lockstepSuccess);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // rank 0's call waits for rank 1's
  EXPECT_EQ(lockstepGroupEnd(), lockstepInvalidUsage);
  EXPECT_NE(std::string(lockstepGetLastError(nullptr)).find("another thread is inside a call"), std::string::npos)
      << lockstepGetLastError(nullptr);
  EXPECT_EQ(lockstepWait(&req, 5000), lockstepInvalidUsage) << "the request carries the group's error";
  EXPECT_EQ(lockstepAllReduce(&in[1], &out[1], 1, lockstepFloat32, lockstepSum, comms[1], nullptr), lockstepSuccess);
  inside.join();
  EXPECT_EQ(out[0], 3.0f);
  EXPECT_EQ(out[1], 3.0f);
  onThreads(2, [&](int r) {
    float a = 1, b = 0;
    EXPECT_EQ(lockstepAllReduce(&a, &b, 1, lockstepFloat32, lockstepSum, comms[r], nullptr), lockstepSuccess);
    EXPECT_EQ(b, 2.0f);
  });
  EXPECT_EQ(y, 0.0f);
  destroyAll(comms);
}

// An abort is never refused, even with the calling thread's open group holding calls on the
// communicator (it once was, leaving a program's error path no way out): the group then fails at
// its end, its requests carry the error, and the group machinery works for the next group.
TEST(Groups, AnAbortInsideAnOpenGroupIsObeyedAndTheGroupFailsCleanly) {
  auto comms = initThreadComms(1);
  auto other = initThreadComms(1);
  float x = 1, y = 0;
  lockstepRequest_t req;
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepIallReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comms[0], &req), lockstepSuccess);
  EXPECT_EQ(lockstepCommAbort(comms[0]), lockstepSuccess) << lockstepGetLastError(nullptr);
  EXPECT_NE(lockstepGroupEnd(), lockstepSuccess);
  EXPECT_NE(std::string(lockstepGetLastError(nullptr)).find("destroyed"), std::string::npos)
      << lockstepGetLastError(nullptr);
  EXPECT_NE(lockstepWait(&req, 5000), lockstepSuccess) << "the request carries the group's error";
  EXPECT_EQ(y, 0.0f);
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, other[0], nullptr), lockstepSuccess);
  ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << lockstepGetLastError(nullptr);
  EXPECT_EQ(y, 1.0f);
  destroyAll(other);
}

}  // namespace
}  // namespace lockstep
