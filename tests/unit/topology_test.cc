// Topology discovery, interface choice, what PeerInfo carries, and the checks made on it.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "src/core/config.h"
#include "src/core/errors.h"
#include "src/exec/backoff.h"
#include "src/topo/interfaces.h"
#include "src/topo/peer_info.h"
#include "src/topo/topology.h"
#include "src/topo/topology_sources.h"

namespace lockstep {
namespace {

NetAddr ipv4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  NetAddr x;
  x.family = AF_INET;
  x.addr[0] = a, x.addr[1] = b, x.addr[2] = c, x.addr[3] = d;
  return x;
}

TEST(Topology, SeesThisMachine) {
  const Topology& t = localTopology();
  EXPECT_FALSE(t.source.empty());
#ifdef LOCKSTEP_TEST_EXPECT_HWLOC
  EXPECT_EQ(t.source.rfind("hwloc", 0), 0u) << "built with hwloc, but: " << t.source;
#endif
  EXPECT_GE(t.pus, 1);
  EXPECT_GE(t.cores, 1);
  EXPECT_LE(t.cores, t.pus);
  EXPECT_GE(t.packages, 1);
  EXPECT_FALSE(t.boundCpus.empty());
  if (t.numa.size() == 1) EXPECT_EQ(t.boundNuma, t.numa[0].os) << "one NUMA node: every process is on it";
  std::string d = t.describe();
  EXPECT_NE(d.find("NUMA"), std::string::npos) << d;
  EXPECT_EQ(&t, &localTopology()) << "discovered once";
}

// A hidden /sys/devices/system/node (present, empty) made hwloc assert and end the process.
TEST(Topology, AnEmptyNumaDirectoryIsToldApart) {
  char dir[] = "/tmp/lockstep-numa-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string d = dir;
  EXPECT_TRUE(numaDirectoryEmpty(d));
  ASSERT_EQ(::mkdir((d + "/possible").c_str(), 0700), 0);  // files beside the nodes are not nodes
  EXPECT_TRUE(numaDirectoryEmpty(d));
  ASSERT_EQ(::mkdir((d + "/node0").c_str(), 0700), 0);
  EXPECT_FALSE(numaDirectoryEmpty(d));
  EXPECT_FALSE(numaDirectoryEmpty(d + "/absent"));
  ::rmdir((d + "/node0").c_str());
  ::rmdir((d + "/possible").c_str());
  ::rmdir(d.c_str());
}

// An IPv6 address in duplicate address detection cannot be bound for a second or two (at boot, at
// a container's start): ranks failed at once with "Cannot assign requested address" instead of
// waiting for it as for an address not given yet (helper-73).
TEST(Interfaces, TentativeAndDadFailedIpv6AddressesAreUnusable) {
  const std::string text =
      "00000000000000000000000000000001 01 80 10 80       lo\n"
      "fd730000000000000000000000000001 02 40 00 40     eth0\n"  // tentative
      "fd730000000000000000000000000002 02 40 00 08     eth0\n"  // DAD failed
      "fd730000000000000000000000000003 02 40 00 04     eth0\n"  // optimistic: usable
      "fe80000000000000a8c3f0fffe0a0b0c 02 40 20 c0     eth0\n"  // permanent + tentative
      "garbage\n";
  const std::vector<NetAddr> u = unusableIpv6(text);
  ASSERT_EQ(u.size(), 3u);
  EXPECT_EQ(u[0].hostStr(), "fd73::1");
  EXPECT_EQ(u[1].hostStr(), "fd73::2");
  EXPECT_EQ(u[2].hostStr(), "fe80::a8c3:f0ff:fe0a:b0c");
  // This machine's own list never holds one the kernel flags so.
  std::ifstream f("/proc/net/if_inet6");
  std::stringstream own;
  own << f.rdbuf();
  for (const NetAddr& bad : unusableIpv6(own.str())) {
    for (const InterfaceAddr& a : upInterfaces()) EXPECT_FALSE(a.addr.sameHost(bad)) << a.name << " " << bad.hostStr();
  }
}

TEST(Interfaces, SubnetArithmetic) {
  NetAddr mask = ipv4(255, 255, 255, 0);
  EXPECT_TRUE(sameSubnet(ipv4(10, 78, 0, 10), ipv4(10, 78, 0, 200), mask));
  EXPECT_FALSE(sameSubnet(ipv4(10, 78, 0, 10), ipv4(10, 78, 1, 10), mask));
  EXPECT_TRUE(sameSubnet(ipv4(10, 78, 0, 10), ipv4(10, 79, 1, 10), ipv4(255, 0, 0, 0)));
  NetAddr v6;
  v6.family = AF_INET6;
  EXPECT_FALSE(sameSubnet(ipv4(10, 0, 0, 1), v6, mask)) << "families differ";
}

TEST(Interfaces, ChoiceFollowsTheRootsSubnetAndSaysWhy) {
  // Whatever interfaces this machine has: the root on the default interface's own address picks
  // that interface, and says it matched the subnet.
  InterfaceChoice first = chooseInterface("");
  EXPECT_FALSE(first.why.empty());
  if (first.addr.isLoopback()) GTEST_SKIP() << "no non-loopback interface here";
  InterfaceChoice withRoot = chooseInterface("", &first.addr);
  EXPECT_EQ(withRoot.name, first.name);
  EXPECT_NE(withRoot.why.find("subnet"), std::string::npos) << withRoot.why;
  // A root on loopback (one host) changes nothing.
  NetAddr lo = NetAddr::loopback(1234);
  EXPECT_EQ(chooseInterface("", &lo).name, first.name);
  // An explicit spec wins and is named.
  InterfaceChoice loChoice = chooseInterface("=lo", &first.addr);
  EXPECT_TRUE(loChoice.addr.isLoopback());
  EXPECT_NE(loChoice.why.find("LOCKSTEP_SOCKET_IFNAME"), std::string::npos) << loChoice.why;
  // Exclusion: everything but the chosen interface (and loopback) never yields it.
  InterfaceChoice others = [&] {
    try {
      return chooseInterface("^=" + first.name + ",lo");
    } catch (const InvalidArgument&) {
      return InterfaceChoice{};
    }
  }();
  EXPECT_NE(others.name, first.name);
}

TEST(PeerInfoTest, CarriesNumaAndAddresses) {
  Config config;
  InterfaceChoice nic = chooseInterface("");
  PeerInfo p = localPeerInfo(3, config, nic.addr);
  EXPECT_EQ(p.rank, 3);
  EXPECT_EQ(p.numaNode, localTopology().boundNuma);
  EXPECT_EQ(p.ifnameStr(), nic.name);
  EXPECT_EQ(p.addr.port, 0);
  EXPECT_GE(p.nicCount, 1);
  EXPECT_LE(p.nicCount, kMaxPeerNics);
  EXPECT_EQ(p.nics[0].addr.isLoopback(), nic.addr.isLoopback()) << "non-loopback interfaces come first";
}

// A peer's strings are printed in errors and logs: terminated, and with control characters
// (which forged log lines, or coloured a terminal) made '?' (helper-77).
TEST(PeerInfoTest, APeersStringsArePrintable) {
  PeerInfo p{};
  std::memset(p.hostname, 'h', sizeof(p.hostname));
  std::memcpy(p.ifname, "eth\n\x1b[31m", 10);
  p.nicCount = 1000;
  terminateStrings(&p);
  EXPECT_EQ(std::string(p.hostname), std::string(sizeof(p.hostname) - 1, 'h'));
  EXPECT_EQ(std::string(p.ifname), "eth??[31m");
  EXPECT_EQ(p.nicCount, 0);
  EXPECT_EQ(printable("line\nforged: lockstep WARN \x07"), "line?forged: lockstep WARN ?");
}

TEST(PeerInfoTest, HostIdOverrideMakesDistinctHosts) {
  EXPECT_NE(hostHash("hostA"), hostHash("hostB"));
  EXPECT_EQ(hostHash("hostA"), hostHash("hostA"));
  EXPECT_NE(hostHash(""), hostHash("hostA"));
}

TEST(PeerInfoTest, CrossHostLoopbackFailsOnEveryRankNamingIt) {
  Config config;
  std::vector<PeerInfo> peers = {localPeerInfo(0, config, ipv4(10, 0, 0, 1)),
                                 localPeerInfo(1, config, NetAddr::loopback())};
  EXPECT_NO_THROW(checkCrossHostAddresses(peers)) << "one host: loopback is fine";
  peers[1].hostHash ^= 1;  // rank 1 on another host
  try {
    checkCrossHostAddresses(peers);
    ADD_FAILURE() << "loopback across hosts accepted";
  } catch (const InvalidUsage& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("rank 1"), std::string::npos) << m;
    EXPECT_NE(m.find("loopback"), std::string::npos) << m;
    EXPECT_NE(m.find("LOCKSTEP_SOCKET_IFNAME"), std::string::npos) << m;
    // One host name, two host ids: LOCKSTEP_HOST_ID set on one rank only, most likely.
    EXPECT_NE(m.find("same LOCKSTEP_HOST_ID"), std::string::npos) << m;
  }
  std::snprintf(peers[1].hostname, sizeof(peers[1].hostname), "elsewhere");
  try {
    checkCrossHostAddresses(peers);
    ADD_FAILURE() << "loopback across hosts accepted";
  } catch (const InvalidUsage& e) {
    EXPECT_EQ(std::string(e.what()).find("LOCKSTEP_HOST_ID"), std::string::npos) << "two host names" << e.what();
  }
  peers[1].addr = ipv4(169, 254, 3, 4);
  EXPECT_THROW(checkCrossHostAddresses(peers), InvalidUsage) << "link-local across hosts";
  peers[1].addr = ipv4(10, 0, 0, 2);
  EXPECT_NO_THROW(checkCrossHostAddresses(peers));
}

// checkPeersAgree's Mismatch message for `peers` ("" and a failure if they are accepted).
std::string mismatchOf(const std::vector<PeerInfo>& peers) {
  try {
    checkPeersAgree(peers);
  } catch (const Mismatch& e) {
    return e.what();
  }
  ADD_FAILURE() << "config mismatch accepted";
  return "";
}

TEST(PeerInfoTest, VersionAndConfigMismatchShowTheDifference) {
  Config a, b;
  b.slots = 4;
  std::vector<PeerInfo> peers = {localPeerInfo(0, a, NetAddr::loopback()), localPeerInfo(1, b, NetAddr::loopback())};
  std::string m = mismatchOf(peers);
  EXPECT_NE(m.find("{slots=8}"), std::string::npos) << m;
  EXPECT_NE(m.find("{slots=4}"), std::string::npos) << m;
  EXPECT_EQ(m.find("slotBytes"), std::string::npos) << "only what differs: " << m;
  // Summaries longer than PeerInfo holds (a long LOCKSTEP_ALGO) are cut: what differs before the
  // cut is still shown, and the algorithm list, which comes last, is the only field cut.
  setenv("LOCKSTEP_ALGO",
         "allreduce=recursive_doubling,reducescatter=ordered,allgather=ring,broadcast=chain,reduce=ordered,"
         "barrier=recursive_doubling,alltoall=direct,send=direct,recv=direct",
         1);
  Config longA = Config::fromEnvironment(), longB = Config::fromEnvironment();
  unsetenv("LOCKSTEP_ALGO");
  longA.linkGBps = 10.25;
  longB.linkGBps = 11.5;
  longA.slotBytes = longB.slotBytes = 131072;
  longA.socketStreams = longB.socketStreams = 4;
  longA.linkLatencyUs = longB.linkLatencyUs = 12.345678901234567;
  longA.transports = longB.transports = {"shm", "socket"};
  peers = {localPeerInfo(0, longA, NetAddr::loopback()), localPeerInfo(1, longB, NetAddr::loopback())};
  ASSERT_GE(longA.wireSummary().size(), sizeof(PeerInfo::configSummary)) << longA.wireSummary();
  m = mismatchOf(peers);
  EXPECT_NE(m.find("{gbps=10.25}"), std::string::npos) << m;
  EXPECT_NE(m.find("{gbps=11.5}"), std::string::npos) << m;
  // A difference in what was cut is named as the algorithm list's.
  longB.linkGBps = longA.linkGBps;
  longB.algo = longA.algo;
  longB.algo.replace(longB.algo.find("barrier=recursive_doubling"), 26, "barrier=tree");
  peers[1] = localPeerInfo(1, longB, NetAddr::loopback());
  m = mismatchOf(peers);
  EXPECT_NE(m.find("compare LOCKSTEP_ALGO"), std::string::npos) << m;
  peers[1] = localPeerInfo(1, a, NetAddr::loopback());
  peers[1].version += 1;
  EXPECT_THROW(checkPeersAgree(peers), Mismatch);
}

// A rank spins while its peer has a CPU of its own; with more ranks than CPUs, or its own work
// beside a background op, it yields at once.
TEST(PeerInfoTest, WaitProfileFollowsRanksAgainstCpus) {
  auto same = [](WaitProfile a, WaitProfile b) { return a.spins == b.spins && a.yields == b.yields; };
  EXPECT_TRUE(same(waitProfileFor(2, 8, false), WaitProfile{}));
  EXPECT_TRUE(same(waitProfileFor(2, 8, true), WaitProfile{})) << "spare CPUs for the caller's work";
  EXPECT_TRUE(same(waitProfileFor(2, 2, false), kFullHostWait));
  EXPECT_TRUE(same(waitProfileFor(2, 2, true), kOversubscribedWait)) << "the caller computes meanwhile";
  EXPECT_TRUE(same(waitProfileFor(4, 2, false), kOversubscribedWait));
  // The executor times its choice of slot stores below 8 MiB only where peers have CPUs of their own.
  EXPECT_TRUE(waitProfileFor(4, 2, false).oversubscribed);
  EXPECT_TRUE(waitProfileFor(2, 2, true).oversubscribed);
  EXPECT_FALSE(waitProfileFor(2, 2, false).oversubscribed);
  EXPECT_GE(kFullHostWait.spins, WaitProfile{}.spins) << "a full host spins as long as an idle one";
  EXPECT_GT(kFullHostWait.yields, WaitProfile{}.yields) << "then yields longer: no spare CPU for helper threads";
  EXPECT_LT(kOversubscribedWait.spins, kFullHostWait.spins);
  // A background op yields only while a caller waits (helper-80), where the rank's CPUs are its
  // own; with more ranks than CPUs its yields serve the other ranks. An inline op is the caller.
  for (int cpus : {2, 8}) {
    EXPECT_TRUE(waitProfileFor(2, cpus, true).yieldOnlyWhileCallerWaits) << cpus;
    EXPECT_FALSE(waitProfileFor(2, cpus, false).yieldOnlyWhileCallerWaits) << cpus;
  }
  EXPECT_FALSE(waitProfileFor(4, 2, true).yieldOnlyWhileCallerWaits);
  EXPECT_FALSE(waitProfileFor(2, 1, true).yieldOnlyWhileCallerWaits);
}

// A background op's wait goes from spinning straight to sleeping on its link while no caller
// waits (its yields gave the caller's compute a time slice each: helper-80), and yields as
// before while one does.
TEST(PeerInfoTest, ABackgroundWaitYieldsOnlyWhileACallerWaits) {
  const WaitProfile background = waitProfileFor(2, 2, true);
  auto pollsBeforeSleeping = [&] {
    Backoff b(background);
    int polls = 0, slept = 0;
    while (!slept) {
      b.pause([&](long) { ++slept; });
      ++polls;
    }
    EXPECT_TRUE(b.sleeping());
    return polls;
  };
  ASSERT_EQ(callersWaiting().load(), 0);
  EXPECT_EQ(pollsBeforeSleeping(), static_cast<int>(background.spins) + 1);
  {
    const CallerWaits waiting;
    EXPECT_EQ(pollsBeforeSleeping(), static_cast<int>(background.spins + background.yields) + 1);
  }
  EXPECT_EQ(callersWaiting().load(), 0);
  {
    // A caller that comes to wait while the op sleeps brings the yields back.
    Backoff b(background);
    int slept = 0;
    while (!slept) b.pause([&](long) { ++slept; });
    const CallerWaits waiting;
    b.pause([&](long) { ++slept; });
    EXPECT_EQ(slept, 1) << "yielded, not slept";
    EXPECT_FALSE(b.sleeping());
  }
  Backoff inlineWait(waitProfileFor(2, 2, false));  // the caller itself: yields whoever waits
  int polls = 0;
  for (int slept = 0; !slept; ++polls) inlineWait.pause([&](long) { ++slept; });
  EXPECT_EQ(polls, static_cast<int>(kFullHostWait.spins + kFullHostWait.yields) + 1);
}

// Ranks bound to one core each (lockstep-run, mpirun --bind-to core) see one CPU apiece, yet
// two of them on two cores are not oversubscribed: what counts is the CPUs they have together.
TEST(PeerInfoTest, HostCpusCountsTheUnionOfTheRanksCpus) {
  auto rank = [](uint64_t host, std::initializer_list<int> cpus) {
    PeerInfo p{};
    p.hostHash = host;
    for (int c : cpus) p.cpuMask[c / 64] |= uint64_t{1} << (c % 64), ++p.cpus;
    return p;
  };
  EXPECT_EQ(hostCpus({rank(1, {0}), rank(1, {1})}, 1), 2);
  EXPECT_EQ(hostCpus({rank(1, {0}), rank(1, {0})}, 1), 1) << "two ranks pinned to one core";
  EXPECT_EQ(hostCpus({rank(1, {0, 1}), rank(1, {0, 1}), rank(1, {0, 1}), rank(1, {0, 1})}, 1), 2);
  EXPECT_EQ(hostCpus({rank(1, {0}), rank(2, {1}), rank(2, {700})}, 2), 2) << "only that host's ranks";
  PeerInfo wide = rank(1, {3});
  wide.cpus = 2000;  // most of its CPUs are past the mask
  EXPECT_GT(hostCpus({wide, rank(1, {3})}, 1), 1000);
  // This process's own entry carries its affinity.
  Config c;
  PeerInfo me = localPeerInfo(0, c, NetAddr{});
  EXPECT_EQ(hostCpus({me}, me.hostHash), me.cpus);
}

}  // namespace
}  // namespace lockstep
