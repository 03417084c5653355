// Wire formats: the unique id, its hex form, the handshake, and interface selection.
#include <gtest/gtest.h>

#include <cstring>

#include "bootstrap/handshake.h"
#include "bootstrap/unique_id.h"
#include "src/topo/interfaces.h"

namespace lockstep {
namespace {

TEST(UniqueId, RoundTripsThroughBytesAndHex) {
  UniqueIdInfo info;
  info.root = NetAddr::parse("127.0.0.1:29500");
  info.secret = randomSecret();
  lockstepUniqueId id = encodeUniqueId(info);
  std::string hex = toHex(id.internal, sizeof(id.internal));
  EXPECT_EQ(hex.size(), 256u);
  lockstepUniqueId back;
  fromHex(hex, back.internal, sizeof(back.internal), "id");
  UniqueIdInfo decoded = decodeUniqueId(back);
  EXPECT_EQ(decoded.root.str(), "127.0.0.1:29500");
  EXPECT_EQ(decoded.secret, info.secret);
}

TEST(UniqueId, RejectsForeignBytes) {
  lockstepUniqueId id;
  std::memset(&id, 0x41, sizeof(id));
  EXPECT_THROW(decodeUniqueId(id), InvalidArgument);
  char buf[4];
  EXPECT_THROW(fromHex("abc", buf, 4, "x"), InvalidArgument);
  EXPECT_THROW(fromHex("zzzzzzzz", buf, 4, "x"), InvalidArgument);
}

TEST(UniqueId, SecretsAreRandom) { EXPECT_NE(randomSecret(), randomSecret()); }

TEST(NetAddr, ParsesAndPrints) {
  EXPECT_EQ(NetAddr::parse("[::1]:80").str(), "[::1]:80");
  EXPECT_TRUE(NetAddr::parse("127.0.0.5:1").isLoopback());
  EXPECT_TRUE(NetAddr::parse("169.254.3.4:9").isLinkLocal());
  EXPECT_THROW(NetAddr::parse("127.0.0.1"), InvalidArgument);
  EXPECT_THROW(NetAddr::parse("127.0.0.1:70000"), InvalidArgument);
}

TEST(NetAddr, AnIpv4MappedAddressIsItsIpv4Address) {
  // What a dual-stack listener reports for an IPv4 peer.
  const NetAddr mapped = NetAddr::parse("[::ffff:127.0.0.1]:7");
  EXPECT_EQ(mapped.str(), "127.0.0.1:7");
  EXPECT_TRUE(mapped.isLoopback());
  EXPECT_TRUE(mapped.sameHost(NetAddr::parse("127.0.0.1:9")));
  EXPECT_TRUE(NetAddr::parse("[::ffff:169.254.1.2]:7").isLinkLocal());
  EXPECT_FALSE(NetAddr::parse("[::ffff:10.0.0.1]:7").isLoopback());
  EXPECT_EQ(NetAddr::parse("[fd00::ffff:7f00:1]:7").family, AF_INET6);  // not mapped: kept
}

TEST(Handshake, AcceptsTheRightPeerOnly) {
  Secret s = randomSecret();
  Hello h = makeHello(s, 42, 3, 8, Purpose::kData);
  EXPECT_EQ(checkHello(h, s, 42, Purpose::kData, 8), "");
  Secret wrong = s;
  wrong[15] ^= 1;
  EXPECT_EQ(checkHello(h, wrong, 42, Purpose::kData, 8), "wrong secret");
  EXPECT_NE(checkHello(h, s, 43, Purpose::kData, 8), "");
  EXPECT_NE(checkHello(h, s, 42, Purpose::kRing, 8), "");
  EXPECT_NE(checkHello(h, s, 42, Purpose::kData, 9), "");
  Hello bad = h;
  bad.magic ^= 1;
  EXPECT_NE(checkHello(bad, s, 42, Purpose::kData, 8), "");
  bad = h;
  bad.version = 99;
  EXPECT_NE(checkHello(bad, s, 42, Purpose::kData, 8), "");
  bad = h;
  bad.rank = 8;
  EXPECT_NE(checkHello(bad, s, 42, Purpose::kData, 8), "");
  bad.rank = -1;
  EXPECT_NE(checkHello(bad, s, 42, Purpose::kData, 8), "");
}

TEST(Interfaces, NcclStyleSpecs) {
  EXPECT_TRUE(ifnameMatches("eth", "eth0"));
  EXPECT_TRUE(ifnameMatches("ib,eth", "eth1"));
  EXPECT_FALSE(ifnameMatches("ib", "eth0"));
  EXPECT_FALSE(ifnameMatches("^docker,lo", "docker0"));
  EXPECT_TRUE(ifnameMatches("^docker,lo", "eth0"));
  EXPECT_TRUE(ifnameMatches("=eth0", "eth0"));
  EXPECT_FALSE(ifnameMatches("=eth0", "eth01"));
  EXPECT_FALSE(ifnameMatches("^=eth0", "eth0"));
  EXPECT_TRUE(ifnameMatches("^=eth0", "eth01"));
}

TEST(Interfaces, DefaultNeverPicksLinkLocal) {
  NetAddr a = pickLocalAddress("");
  EXPECT_TRUE(a.valid());
  EXPECT_FALSE(a.isLinkLocal());
  EXPECT_EQ(pickLocalAddress("lo").isLoopback(), true);
  EXPECT_THROW(pickLocalAddress("=no-such-interface0"), InvalidArgument);
}

}  // namespace
}  // namespace lockstep
