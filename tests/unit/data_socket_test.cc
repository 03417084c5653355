// How the socket transport tunes its data connections (src/net/socket.cc, tuneDataSocket): no
// Nagle delay, and a congestion control without pacing where the connection stays in the host.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <fstream>
#include <string>
#include <utility>

#include "src/core/errors.h"
#include "src/net/socket.h"
#include "tests/common/loopback_pair.h"

namespace lockstep {
namespace {

std::string congestionOf(int fd) {
  char name[32] = {};
  socklen_t n = sizeof(name);
  EXPECT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &n), 0);
  return name;
}

std::string systemDefault() {
  std::ifstream f("/proc/sys/net/ipv4/tcp_congestion_control");
  std::string name;
  f >> name;
  return name;
}

using testing::loopbackPair;

TEST(DataSocket, ALoopbackConnectionGetsRenoAndNoNagleDelay) {
  auto [client, server] = loopbackPair();
  EXPECT_EQ(tuneDataSocket(client.get(), ""), "reno");
  EXPECT_EQ(congestionOf(client.get()), "reno");
  EXPECT_EQ(tuneDataSocket(server.get(), ""), "reno") << "the accepting end too";
  int nodelay = 0;
  socklen_t n = sizeof(nodelay);
  ASSERT_EQ(getsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &n), 0);
  EXPECT_EQ(nodelay, 1);
}

TEST(DataSocket, SystemKeepsTheSystemsChoiceAndANameIsSetAsGiven) {
  auto [client, server] = loopbackPair();
  ASSERT_EQ(congestionOf(client.get()), systemDefault());
  EXPECT_EQ(tuneDataSocket(client.get(), "system"), "");
  EXPECT_EQ(congestionOf(client.get()), systemDefault());
  EXPECT_EQ(tuneDataSocket(client.get(), "reno"), "reno");
  EXPECT_EQ(congestionOf(client.get()), "reno");
}

TEST(DataSocket, ACongestionControlTheKernelRefusesIsAClearError) {
  auto [client, server] = loopbackPair();
  try {
    tuneDataSocket(client.get(), "no-such-control");
    FAIL() << "an unknown congestion control was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("LOCKSTEP_SOCKET_CC=no-such-control"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lockstep
