// connectTo (src/net/socket.cc) against a local port no one listens on yet, with the ephemeral
// range narrowed to start at that very port: the kernel then picks it as the source port and TCP's
// simultaneous open connects the socket to itself (the range's second port then gives the retries
// an honest refusal). connectTo must treat that as refused.
// Runs in a child process with a network namespace of its own (root only; skipped otherwise).
#include <gtest/gtest.h>

#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "src/core/errors.h"
#include "src/net/socket.h"

namespace lockstep {
namespace {

constexpr uint16_t kPort = 40122;

// In the child: 0 = connectTo timed out (right), 1 = it returned a connection to itself,
// 2 = something else went wrong, 3 = no namespace could be made here (skip).
int child() {
  if (unshare(CLONE_NEWNET) != 0) return 3;
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0) return 3;
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) return 3;
  close(s);
  FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "w");
  if (!f || std::fprintf(f, "%u %u\n", kPort, kPort + 1) < 0 || std::fclose(f) != 0) return 3;
  try {
    Fd fd = connectTo(NetAddr::parse("127.0.0.1:" + std::to_string(kPort)),
                      Deadline::after(std::chrono::milliseconds(300)));
    return localAddress(fd.get()).port == kPort ? 1 : 2;
  } catch (const Timeout&) {
    return 0;
  } catch (...) {
    return 2;
  }
}

TEST(Connect, APortNoOneListensOnIsNeverConnectedToItself) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(child());
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 3) GTEST_SKIP() << "no network namespace here (needs root)";
  EXPECT_NE(WEXITSTATUS(status), 1) << "connectTo returned a socket connected to itself";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "connectTo should have timed out: nothing listens";
}

// An IPv6 link-local rendezvous is refused when it is read, naming why: its scope id was dropped,
// rank 0 failed to bind it and the others waited out their timeout. IPv4 link-local and global
// IPv6 addresses are taken.
TEST(Connect, AnIpv6LinkLocalAddressIsRefusedWhenItIsRead) {
  try {
    NetAddr::parse("[fe80::1%lo]:29500");
    ADD_FAILURE() << "taken";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("IPv6 link-local"), std::string::npos) << e.what();
  } catch (const Error& e) {
    // A resolver that rejects the scope itself says so in its own words: also refused.
    EXPECT_EQ(e.code(), lockstepInvalidArgument) << e.what();
  }
  EXPECT_THROW(NetAddr::parse("[fe80::1]:29500"), InvalidArgument);
  EXPECT_NO_THROW(NetAddr::parse("169.254.1.2:29500"));
  EXPECT_NO_THROW(NetAddr::parse("[fd00::1]:29500"));
}

}  // namespace
}  // namespace lockstep
