// closeGracefully (src/net/socket.cc): the last message sent on a connection arrives even when
// the closing side has unread bytes, which makes a plain close() reset the connection and drop
// what its send queue still holds. The health watchdog's goodbye depends on it.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "src/core/clock.h"
#include "src/net/socket.h"
#include "tests/common/loopback_pair.h"

namespace lockstep {
namespace {

using testing::loopbackPair;

double secondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The watchdog's case: a peer's heartbeat waits unread, and the goodbye is still in the send
// queue (TCP_CORK holds it here, as Nagle's algorithm does behind an unacknowledged message).
// The peer, like Health, closes once it has read the goodbye. With close() alone it gets a reset
// instead (checked by hand when this test was written).
TEST(GracefulClose, TheLastMessageArrivesThoughUnreadBytesWait) {
  auto [mine, theirs] = loopbackPair();
  const std::string heartbeat = "status", bye = "goodbye";
  sendAll(theirs.get(), heartbeat.data(), heartbeat.size(), Deadline::after(std::chrono::seconds(5)));
  ASSERT_TRUE(pollFor(mine.get(), POLLIN, Deadline::after(std::chrono::seconds(5)))) << "heartbeat not arrived";
  int one = 1;
  ASSERT_EQ(setsockopt(mine.get(), IPPROTO_TCP, TCP_CORK, &one, sizeof(one)), 0);
  sendAll(mine.get(), bye.data(), bye.size(), Deadline::after(std::chrono::seconds(5)));

  std::string got(bye.size(), '\0'), error;
  std::thread peer([&, fd = std::move(theirs)]() mutable {
    try {
      recvAll(fd.get(), got.data(), got.size(), Deadline::after(std::chrono::seconds(5)));
    } catch (const std::exception& e) {
      error = e.what();
    }
    fd.reset();
  });
  std::vector<Fd> fds;
  fds.push_back(std::move(mine));
  const auto t0 = Clock::now();
  closeGracefully(fds, Deadline::after(std::chrono::seconds(5)));
  const double secs = secondsSince(t0);
  peer.join();
  EXPECT_EQ(error, "") << "the goodbye was lost";
  EXPECT_EQ(got, bye);
  EXPECT_FALSE(fds[0].valid());
  EXPECT_LT(secs, 2.0) << "it should return as soon as the peer closes, not at the deadline";
}

// A peer that never reads nor closes (stopped, or busy elsewhere) holds the close up only until
// the one deadline shared by every connection; what was sent still reaches it, then the end.
TEST(GracefulClose, APeerThatNeverClosesIsWaitedForOnlyUntilTheDeadline) {
  auto [a, peerA] = loopbackPair();
  auto [b, peerB] = loopbackPair();
  const std::string bye = "goodbye";
  for (const Fd* fd : {&a, &b}) sendAll(fd->get(), bye.data(), bye.size(), Deadline::after(std::chrono::seconds(5)));
  std::vector<Fd> fds;
  fds.push_back(std::move(a));
  fds.emplace_back();  // an invalid one (a peer already lost) is skipped
  fds.push_back(std::move(b));
  const auto t0 = Clock::now();
  closeGracefully(fds, Deadline::after(std::chrono::milliseconds(300)));
  const double secs = secondsSince(t0);
  EXPECT_GE(secs, 0.25) << "it did not wait for the peers";
  EXPECT_LT(secs, 2.0) << "one deadline for all, not one each";
  for (const Fd& fd : fds) EXPECT_FALSE(fd.valid());
  for (const Fd* fd : {&peerA, &peerB}) {
    std::string got(bye.size(), '\0');
    recvAll(fd->get(), got.data(), got.size(), Deadline::after(std::chrono::seconds(5)));
    EXPECT_EQ(got, bye);
    char c;
    EXPECT_EQ(::recv(fd->get(), &c, 1, 0), 0) << "then the end of the stream";
  }
}

}  // namespace
}  // namespace lockstep
