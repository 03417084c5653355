// The watchdog's control messages as a peer's bytes deliver them, crafted one by one: what the
// fuzzer (tests/fuzz/fuzz_control.cc) explores at random, with the outcome checked. The header's
// layout is restated here and checked against the library's size.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <vector>

#include "bootstrap/inproc_bootstrap.h"
#include "src/core/config.h"
#include "src/core/errors.h"
#include "src/core/health.h"
#include "src/topo/peer_info.h"

namespace lockstep {

struct ControlWireTest {
  struct Header {
    uint32_t magic, type;
    uint64_t entered, completed;
    MessageTag fp, prevFp;
    int32_t code, culprit, origin;
    uint32_t flags, p2p, textBytes;
  };
  static constexpr uint32_t kStatus = 1, kFailure = 2;

  static Fingerprint op(uint64_t seq, uint64_t count = 10) {
    Fingerprint f;
    f.seq = seq;
    f.count = count;
    f.dtype = lockstepFloat32;
    return f;
  }
  // A message of `type`: the header, then `payload`, announced as `announced` bytes (its own
  // size where negative).
  static std::string message(uint32_t type, uint64_t entered, const std::string& payload, long announced = -1) {
    EXPECT_EQ(sizeof(Header), Health::controlHeaderBytes());
    Header h{};
    h.magic = Health::controlMagic();
    h.type = type;
    h.entered = h.completed = entered;
    h.fp = op(entered).tag();
    h.prevFp = op(entered - 1).tag();
    h.code = lockstepRemoteError;
    h.culprit = h.origin = 1;
    h.textBytes = announced < 0 ? static_cast<uint32_t>(payload.size()) : static_cast<uint32_t>(announced);
    return std::string(reinterpret_cast<const char*>(&h), sizeof(h)) + payload;
  }
  static size_t headerBytes() { return Health::controlHeaderBytes(); }
  static std::string tags(const std::vector<Fingerprint>& ops) {
    std::string out;
    for (const Fingerprint& f : ops) {
      const MessageTag t = f.tag();
      out.append(reinterpret_cast<const char*>(&t), sizeof(t));
    }
    return out;
  }

  // One rank that has made ops 1..20, its peer rank 1 a socket pair whose other end the test writes.
  struct Rank {
    Config config = [] {
      Config c;
      c.timeout = std::chrono::seconds(2);
      c.logLevel = LogLevel::kNone;
      return c;
    }();
    std::vector<PeerInfo> infos = std::vector<PeerInfo>(1);
    std::shared_ptr<InprocWorld> world = std::make_shared<InprocWorld>(1);
    InprocBootstrap boot{world, 0, std::chrono::seconds(2)};
    Health health{TransportContext{config, boot, infos, 0, 1, {}, NetAddr::loopback()}};
    Fd peerEnd;

    Rank() {
      int sv[2];
      EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
      Health::Peer p;
      p.rank = 1;
      p.fd = Fd(sv[0]);
      p.name = "rank 1 (crafted)";
      p.lastHeard = Clock::now();
      health.peers_.push_back(std::move(p));
      peerEnd = Fd(sv[1]);
      for (uint64_t s = 1; s <= 20; ++s) {
        health.entered(op(s));
        health.completed(s);
      }
    }
    ~Rank() { health.peers_.clear(); }
    // The peer's bytes arrive and are read; what the watchdog then concludes.
    std::string deliver(const std::string& bytes) {
      EXPECT_EQ(::send(peerEnd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
      health.readFrom(health.peers_[0]);
      health.evaluate();
      try {
        health.check();
      } catch (const Error& e) {
        return e.what();
      }
      return "";
    }
    bool peerLost() const { return health.peers_[0].state == Health::PeerState::kLost; }
  };
};

namespace {

using W = ControlWireTest;

// A heartbeat names the ops since the last one: the peer's op #8, three back from its newest and
// never its current or previous one, is compared with this rank's #8.
TEST(ControlWire, EveryOpAHeartbeatNamesIsCompared) {
  W::Rank rank;
  std::vector<Fingerprint> ops;
  for (uint64_t s = 5; s <= 20; ++s) ops.push_back(W::op(s));
  EXPECT_EQ(rank.deliver(W::message(W::kStatus, 20, W::tags(ops))), "") << "the same ops";
  ops[3] = W::op(8, 11);
  const std::string failure = rank.deliver(W::message(W::kStatus, 20, W::tags(ops)));
  EXPECT_NE(failure.find("allreduce #8"), std::string::npos) << failure;
  EXPECT_NE(failure.find("first difference: count"), std::string::npos) << failure;
}

// Ops far from what the header says the peer entered are a broken peer's: not compared.
TEST(ControlWire, OpsFarFromThePeersOwnAreIgnored) {
  W::Rank rank;
  EXPECT_EQ(rank.deliver(W::message(W::kStatus, 20, W::tags({W::op(2, 77), W::op(1000, 77)}))), "");
  EXPECT_FALSE(rank.peerLost());
}

// The header announces at most its field: more is refused, and the peer dropped.
TEST(ControlWire, AMessageAnnouncingMoreThanItsFieldDropsThePeer) {
  W::Rank rank;
  (void)rank.deliver(W::message(W::kStatus, 20, std::string(385, 'x')));
  EXPECT_TRUE(rank.peerLost());
  W::Rank exact;
  (void)exact.deliver(W::message(W::kStatus, 20, std::string(384, '\0')));
  EXPECT_FALSE(exact.peerLost()) << "a full field is a message";
}

// A report split anywhere across reads is taken once whole, and only then.
TEST(ControlWire, AReportSplitAcrossReadsIsTakenWhole) {
  for (size_t cut : {size_t{10}, W::headerBytes(), W::headerBytes() + 5}) {
    W::Rank rank;
    const std::string report = W::message(W::kFailure, 20, "the disk is on fire");
    EXPECT_EQ(rank.deliver(report.substr(0, cut)), "") << "cut at " << cut;
    const std::string failure = rank.deliver(report.substr(cut));
    EXPECT_NE(failure.find("the disk is on fire"), std::string::npos) << "cut at " << cut << ": " << failure;
    EXPECT_FALSE(rank.peerLost());
  }
}

}  // namespace
}  // namespace lockstep
