// What the TCP bootstrap says when a rank is misconfigured or a peer dies during setup: the
// cause, and the rank that caused it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/handshake.h"
#include "bootstrap/launch.h"
#include "bootstrap/reach_check.h"
#include "bootstrap/root_service.h"
#include "bootstrap/tcp_bootstrap.h"
#include "src/core/config.h"
#include "src/core/errors.h"
#include "src/net/socket.h"
#include "transport/socket/mesh.h"

namespace lockstep {
namespace {

constexpr auto kTimeout = std::chrono::seconds(20);

// A Config read from these variables alone (as if they were the whole environment), with the
// tests' timeout.
Config configOf(const std::map<std::string, std::string>& env) {
  Config c = Config::fromVariables([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
  c.timeout = kTimeout;
  return c;
}

// A second process started with an existing rank's number (or a different world size) is told
// why by the rendezvous, and the ranks that were right still form their communicator.
TEST(BootstrapErrors, TheRendezvousTellsAMisconfiguredRankWhy) {
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, kTimeout);
  UniqueIdInfo info{root.address(), secret};
  const uint64_t commId = commIdFromSecret(secret);
  std::unique_ptr<TcpBootstrap> first;
  std::thread t([&] { first = std::make_unique<TcpBootstrap>(info, commId, 0, 2, NetAddr::loopback(), kTimeout); });
  for (int i = 0; i < 2000 && root.registered() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(root.registered(), 1) << "rank 0 never reached the rendezvous";

  auto refusal = [&](int rank, int nranks) -> std::string {
    try {
      TcpBootstrap wrong(info, commId, rank, nranks, NetAddr::loopback(), kTimeout);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), lockstepInvalidUsage) << e.what();
      return e.what();
    }
    return "no error";
  };
  const std::string twice = refusal(0, 2);
  EXPECT_NE(twice.find("rank 0 registered twice"), std::string::npos) << twice;
  // A rank of another size is held until a communicator forms, then told which size won.
  std::string size;
  std::thread w([&] { size = refusal(1, 3); });
  for (int i = 0; i < 2000 && root.registered() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));

  TcpBootstrap second(info, commId, 1, 2, NetAddr::loopback(), kTimeout);
  t.join();
  w.join();
  EXPECT_NE(size.find("communicator size 3, expected 2"), std::string::npos) << size;
  ASSERT_TRUE(first);
  int blocks[2] = {0, 1};
  std::thread g([&] { first->allGather(blocks, sizeof(int)); });
  int mine[2] = {0, 1};
  second.allGather(mine, sizeof(int));
  g.join();
}

// n bootstraps of one rendezvous, each made on a thread of its own (the constructor is collective).
std::vector<std::unique_ptr<TcpBootstrap>> bootstraps(const UniqueIdInfo& info, int n,
                                                      std::chrono::milliseconds timeout = kTimeout) {
  std::vector<std::unique_ptr<TcpBootstrap>> boots(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      boots[r] =
          std::make_unique<TcpBootstrap>(info, commIdFromSecret(info.secret), r, n, NetAddr::loopback(), timeout);
    });
  }
  for (auto& t : threads) t.join();
  return boots;
}

// A rendezvous and n bootstraps of it, each checked made (the service outlives them).
struct Rendezvous {
  explicit Rendezvous(int n, std::chrono::milliseconds timeout = kTimeout)
      : boots(bootstraps(UniqueIdInfo{root.address(), secret}, n, timeout)) {
    for (auto& b : boots) EXPECT_TRUE(b);
  }
  Secret secret = randomSecret();
  RootService root{NetAddr::loopback(), secret, kTimeout};
  std::vector<std::unique_ptr<TcpBootstrap>> boots;
};

// A silent TCP connection to `to` (a stranger's: no hello, no secret).
Fd silentConnection(const NetAddr& to) {
  Fd fd(::socket(to.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  const socklen_t len = to.toSockaddr(&ss);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), 0) << std::strerror(errno);
  return fd;
}

// Strangers' silent connections, accepted while a rank served its listener during setup, held
// a descriptor each (up to 256) for the communicator's life: nothing served the listener after
// setup to drop them (helper-77). endSetup() drops them, and keeps a peer's message in flight.
TEST(BootstrapHostile, SilentStrangersAreDroppedAtTheEndOfSetup) {
  Rendezvous rv(2);
  std::vector<Fd> strangers;
  for (int i = 0; i < 40; ++i) strangers.push_back(silentConnection(rv.boots[0]->listenAddress()));
  int32_t value = 7, got = 0;
  std::thread sender([&] { rv.boots[1]->send(0, 5, &value, sizeof(value)); });
  rv.boots[0]->recv(1, 5, &got, sizeof(got));  // serves the listener: accepts the strangers too
  sender.join();
  EXPECT_EQ(got, 7);
  EXPECT_GE(rv.boots[0]->pendingConnections(), 40u);
  rv.boots[1]->send(0, 6, &value, sizeof(value));  // in flight at the end of setup: kept
  rv.boots[0]->endSetup();
  EXPECT_EQ(rv.boots[0]->pendingConnections(), 0u);
  rv.boots[0]->recv(1, 6, &got, sizeof(got));
  EXPECT_EQ(got, 7);
  char byte;
  for (Fd& s : strangers) {  // closed: end of stream at once (never a wait: an open one says EAGAIN)
    EXPECT_EQ(::recv(s.get(), &byte, 1, MSG_DONTWAIT), 0) << "a stranger's connection is still open";
  }
}

// A peer (it holds the secret) sending messages nobody receives grew a rank's memory without
// bound (about 4 GB in 10 s): what the listener buffers is capped at kMaxBufferedBytes.
TEST(BootstrapHostile, UnclaimedMessagesAreBounded) {
  Rendezvous rv(2, std::chrono::seconds(1));  // each wait for the message that never comes: 1 s
  std::vector<char> mib(TcpBootstrap::kMaxMessageBytes, 'x');
  std::atomic<bool> done{false};
  std::thread sender([&] {
    for (int i = 0; i < 40; ++i) {
      try {
        rv.boots[1]->send(0, 9, mib.data(), mib.size());  // tag 9: nobody receives it
      } catch (const Error&) {
        // dropped by the receiver: the connection closed under the send
      }
    }
    done = true;
  });
  while (!done) {
    try {
      int32_t unused;
      rv.boots[0]->recv(1, 10, &unused, sizeof(unused));  // never comes: serves meanwhile
    } catch (const Error&) {
    }
    EXPECT_LE(rv.boots[0]->bufferedBytes(), TcpBootstrap::kMaxBufferedBytes);
  }
  sender.join();
  EXPECT_LE(rv.boots[0]->bufferedBytes(), TcpBootstrap::kMaxBufferedBytes);
  EXPECT_GE(rv.boots[0]->bufferedBytes(), TcpBootstrap::kMaxBufferedBytes / 2);  // it did take some
}

// Setup has one deadline, LOCKSTEP_TIMEOUT after the rendezvous: each stage took a whole
// timeout of its own, so a peer finishing each just in time kept init going for six of them
// (helper-77). After endSetup() a wait has its whole timeout again.
TEST(BootstrapHostile, SetupHasOneDeadline) {
  using namespace std::chrono;
  Rendezvous rv(2, seconds(2));
  std::this_thread::sleep_for(milliseconds(1500));
  int32_t unused = 0;
  auto waited = [&] {
    const auto t0 = steady_clock::now();
    EXPECT_THROW(rv.boots[0]->recv(1, 11, &unused, sizeof(unused)), Error);  // rank 1 sends nothing
    return duration_cast<milliseconds>(steady_clock::now() - t0).count();
  };
  EXPECT_LT(waited(), 1200) << "a wait in setup took its own whole timeout";
  rv.boots[0]->endSetup();
  EXPECT_GE(waited(), 1900) << "after setup a wait takes its whole timeout";
}

// Three ranks; rank 2 goes away. Rank 1, whose successor it was, fails sending to it, while it
// still waits for rank 0's block: the error names rank 2, the one that left, not rank 0.
TEST(BootstrapErrors, AnAllGatherBlamesTheSuccessorThatLeft) {
  const int n = 3;
  Rendezvous rv(n);
  auto& boots = rv.boots;
  ASSERT_FALSE(::testing::Test::HasFailure());
  boots[2].reset();  // its connections close, as at a process's exit

  // Rank 0 never sends: rank 1 is left waiting for it when its own send to rank 2 fails. (A
  // large block, so the send cannot all fit the dead connection's buffer before the reset.)
  std::vector<char> block(size_t{8} << 20);
  int culprit = -2;
  std::string what;
  try {
    boots[1]->allGather(block.data(), block.size() / n);
  } catch (const RemoteError& e) {
    culprit = e.rank;
    what = e.what();
  } catch (const Error& e) {
    what = e.what();
  }
  EXPECT_EQ(culprit, 2) << what;
  EXPECT_NE(what.find("rank 2"), std::string::npos) << what;
}

// Eight ranks; rank 1 goes away without a word, as a killed process does. Its neighbours find
// their ring connections closed and blame it; the others find theirs closed by ranks that only
// failed after it, and once blamed those (every survivor a different culprit, forwards from
// rank 2 and backwards from rank 0). Each failing rank now tells both neighbours what it found,
// passed on as found, and closes its ring connections at once: one grace (300 ms) in all, not
// one per hop (a first version took 1.5-1.8 s on 8 ranks, 18 s on 64).
TEST(BootstrapErrors, ARankThatLeavesDuringAnAllGatherIsNamedAllAroundTheRing) {
  const int n = 8;
  Rendezvous rv(n);
  auto& boots = rv.boots;
  ASSERT_FALSE(::testing::Test::HasFailure());
  boots[1].reset();
  std::vector<int> culprit(n, -2);
  std::vector<std::string> what(n);
  std::vector<double> ms(n);
  std::vector<std::thread> threads;
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < n; ++r) {
    if (r == 1) continue;
    threads.emplace_back([&, r] {
      try {
        boots[r]->barrier();
      } catch (const RemoteError& e) {
        culprit[r] = e.rank;
        what[r] = e.what();
      } catch (const Error& e) {
        what[r] = e.what();
      }
      ms[r] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      boots[r].reset();  // closes, as the failing process would
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < n; ++r) {
    if (r == 1) continue;
    EXPECT_EQ(culprit[r], 1) << "rank " << r << ": " << what[r];
    EXPECT_NE(what[r].find("rank 1 (127.0.0.1:"), std::string::npos) << "rank " << r << ": " << what[r];
    EXPECT_LT(ms[r], 1200) << "rank " << r << ": " << what[r];
  }
  EXPECT_NE(what[3].find("rank 2 (127.0.0.1:"), std::string::npos) << "relayed from its finder: " << what[3];
  EXPECT_NE(what[3].find(" reports: rank 1 "), std::string::npos) << what[3];
  EXPECT_NE(what[5].find(" reports: rank 1 "), std::string::npos) << "a relay keeps the finder's words: " << what[5];
  // Rank 2, a finder, heard no report from rank 1: rank 1 did not fail because of another rank.
  EXPECT_NE(what[2].find("it reported no earlier failure"), std::string::npos) << what[2];
}

// Runs `step` and records how it failed: the culprit a RemoteError names (else -2 stays) and the
// message ("no error" if it did not).
template <typename Step>
void recordFailure(Step&& step, int* culprit, std::string* what) {
  try {
    step();
    *what = "no error";
  } catch (const RemoteError& e) {
    *culprit = e.rank;
    *what = e.what();
  } catch (const Error& e) {
    *what = e.what();
  }
}

// A rank's bootstrap whose all-gathers are followed by a pause, and then, if `leave`, by its
// leaving, as a process killed there would: its listener closes, and the caller's setup unwinds.
// What the mesh asks of a bootstrap besides (probes, failure reports) goes to the real one.
class AfterAllGather : public Bootstrap {
 public:
  AfterAllGather(std::unique_ptr<TcpBootstrap> inner, std::chrono::milliseconds pause, bool leave)
      : inner_(std::move(inner)), pause_(pause), leave_(leave) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allGather(void* data, size_t bytes) override {
    inner_->allGather(data, bytes);
    std::this_thread::sleep_for(pause_);
    if (!leave_) return;
    inner_.reset();
    throw InternalError("left after the all-gather (the test's kill)");
  }
  void send(int, int, const void*, size_t) override { throw InternalError("unused"); }
  void recv(int, int, void*, size_t) override { throw InternalError("unused"); }
  void barrier() override { throw InternalError("unused"); }
  bool peerListening(int peer) override { return inner_->peerListening(peer); }
  [[noreturn]] void failSetup(std::exception_ptr error, bool heard) override {
    if (!inner_) std::rethrow_exception(error);
    inner_->failSetup(error, heard);
    std::abort();  // failSetup never returns: it throws
  }

 private:
  std::unique_ptr<TcpBootstrap> inner_;
  std::chrono::milliseconds pause_;
  bool leave_;
  int rank_ = inner_->rank(), size_ = inner_->size();
};

// Each rank of `boots` that has one builds a control-connection mesh with all the others, in a
// thread of its own, then closes its bootstrap as the failing process would. Returns how each
// failed (recordFailure): culprits (-2: none) and messages.
struct MeshOutcome {
  std::vector<int> culprit;
  std::vector<std::string> what;
};
MeshOutcome connectMeshes(std::vector<std::unique_ptr<Bootstrap>> boots, const Secret& secret) {
  const int n = static_cast<int>(boots.size());
  const Config config = configOf({});
  std::vector<PeerInfo> peers(n);
  for (int r = 0; r < n; ++r) peers[r].rank = r;
  MeshOutcome out{std::vector<int>(n, -2), std::vector<std::string>(n)};
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    if (!boots[r]) continue;
    threads.emplace_back([&, r] {
      TransportContext ctx{config, *boots[r], peers, r, commIdFromSecret(secret), secret, NetAddr::loopback()};
      std::vector<int> others;
      for (int p = 0; p < n; ++p) {
        if (p != r) others.push_back(p);
      }
      recordFailure([&] { connectMesh(ctx, others, Purpose::kControl, "control connections"); }, &out.culprit[r],
                    &out.what[r]);
      boots[r].reset();
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

// Three ranks build a connection mesh; rank 1 leaves right after its address all-gather. Rank 0,
// 100 ms later, fails connecting to it and leaves; rank 2, 200 ms later, waits for ranks 0 and 1
// to connect, found rank 0 gone first and blamed it. A rank that fails in a mesh now tells every
// rank why before it leaves, and rank 2 follows rank 0's report to rank 1. (Without the pauses,
// rank 0 could reach rank 1's listener before it closed, and rank 2 then never blamed rank 0.)
TEST(MeshErrors, ARankThatFailedBecauseOfAnotherIsNotBlamed) {
  const int n = 3;
  Rendezvous rv(n);
  ASSERT_FALSE(::testing::Test::HasFailure());
  std::vector<std::unique_ptr<Bootstrap>> boots(n);
  const int pauseMs[n] = {100, 0, 200};
  for (int r = 0; r < n; ++r)
    boots[r] = std::make_unique<AfterAllGather>(std::move(rv.boots[r]), std::chrono::milliseconds(pauseMs[r]), r == 1);
  const MeshOutcome got = connectMeshes(std::move(boots), rv.secret);
  EXPECT_EQ(got.culprit[0], 1) << got.what[0];
  EXPECT_EQ(got.culprit[2], 1) << got.what[2];
  EXPECT_NE(got.what[2].find("rank 1 ("), std::string::npos) << got.what[2];
}

// Five ranks; rank 1 never enters the all-gather (stopped); rank 0 enters 500 ms before the
// others. It times out first, waiting for rank 1's part through rank 4, which is healthy but
// waiting too, and the others take its report: it once said only "no answer from rank 4", and
// every rank named rank 4.
TEST(BootstrapErrors, AnAllGatherTimeoutNamesThePartThatNeverCame) {
  const int n = 5;
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, kTimeout);
  auto boots = bootstraps(UniqueIdInfo{root.address(), secret}, n, std::chrono::milliseconds(1000));
  for (auto& b : boots) ASSERT_TRUE(b);
  std::vector<std::string> what(n);
  std::vector<std::thread> threads;
  for (int r : {2, 3, 4, 0}) {
    threads.emplace_back([&, r] {
      if (r != 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
      try {
        boots[r]->barrier();
      } catch (const Error& e) {
        what[r] = e.what();
      }
      boots[r].reset();
    });
  }
  for (auto& t : threads) t.join();
  for (int r : {2, 3, 4, 0}) {
    EXPECT_TRUE(what[r].find("waiting for rank 1's part") != std::string::npos ||
                what[r].find("no answer from rank 1 ") != std::string::npos)
        << "rank " << r << ": " << what[r];
  }
}

// A rank out of descriptors cannot tell whether a peer is still there: its probe says so, as its
// own shortage (it once counted the peer as there, so a rank at its limit never found a failed
// peer gone and waited out its timeout blaming the peers for not connecting).
TEST(BootstrapErrors, AProbeOutOfDescriptorsIsThisRanksOwnShortage) {
  Rendezvous rv(2);
  auto& boots = rv.boots;
  ASSERT_FALSE(::testing::Test::HasFailure());
  EXPECT_TRUE(boots[0]->peerListening(1));
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &before), 0);
  const int lowest = dup(0);  // descriptors are taken lowest first: none fits under this limit
  close(lowest);
  rlimit none = before;
  none.rlim_cur = static_cast<rlim_t>(lowest);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &none), 0);
  std::string what;
  int err = 0;
  try {
    boots[0]->peerListening(1);
  } catch (const SystemError& e) {
    err = e.err;
    what = e.what();
  }
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &before), 0);
  EXPECT_EQ(err, EMFILE) << what;
  EXPECT_NE(what.find("ulimit -n"), std::string::npos) << what;
  EXPECT_NE(what.find("rank 0 checking whether rank 1"), std::string::npos) << what;
  EXPECT_TRUE(boots[0]->peerListening(1));
}

// LOCKSTEP_ROOT mode without LOCKSTEP_SECRET: a rank given another world size reaches the root
// and is told so, even when it comes first. (The size was once part of the derived secret, which made such a rank a
// stranger that the root dropped without a word: "the root closed the connection".)
TEST(BootstrapErrors, ARankWithAnotherWorldSizeIsToldSoUnderLockstepRoot) {
  Fd probe = listenOn(NetAddr::loopback());
  const std::string root = "127.0.0.1:" + std::to_string(localAddress(probe.get()).port);
  probe.reset();
  auto plan = [&](int rank, int size) {
    const std::map<std::string, std::string> env{{"LOCKSTEP_ROOT", root},
                                                 {"LOCKSTEP_RANK", std::to_string(rank)},
                                                 {"LOCKSTEP_WORLD_SIZE", std::to_string(size)}};
    Config c = configOf(env);
    return planLaunch(c);
  };
  // The misconfigured rank comes first: the size it announces must not lock the others out.
  LaunchPlan zero = plan(0, 2), wrong = plan(1, 3), right = plan(1, 2);
  std::string why = "no error";
  std::thread w([&] {
    try {
      TcpBootstrap b(wrong.id, commIdFromSecret(wrong.id.secret), 1, 3, NetAddr::loopback(), kTimeout);
    } catch (const Error& e) {
      why = e.what();
    }
  });
  RootService& service = *zero.rootService;
  for (int i = 0; i < 2000 && service.registered() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::unique_ptr<TcpBootstrap> first;
  std::thread t([&] {
    first =
        std::make_unique<TcpBootstrap>(zero.id, commIdFromSecret(zero.id.secret), 0, 2, NetAddr::loopback(), kTimeout);
  });
  TcpBootstrap second(right.id, commIdFromSecret(right.id.secret), 1, 2, NetAddr::loopback(), kTimeout);
  t.join();
  w.join();
  EXPECT_TRUE(first) << "the ranks that were right form their communicator";
  EXPECT_NE(why.find("communicator size 3, expected 2"), std::string::npos) << why;
}

// Registers `rank` of `nranks` at the root as a rank's bootstrap does (its hello and address, then
// the root's answer) and hands back the connection: closing it is the rank leaving.
Fd registerAtRoot(const RootService& root, const Secret& secret, int rank, int nranks,
                  const NetAddr& addr = NetAddr::loopback()) {
  Fd fd = connectTo(root.address(), Deadline::after(kTimeout));
  char hello[kRootHelloBytes];
  const Hello h = makeHello(secret, commIdFromSecret(secret), rank, nranks, Purpose::kRoot);
  std::memcpy(hello, &h, sizeof(h));
  std::memcpy(hello + sizeof(h), &addr, sizeof(addr));
  sendAll(fd.get(), hello, sizeof(hello), Deadline::after(kTimeout));
  Hello answer;
  recvAll(fd.get(), &answer, sizeof(answer), Deadline::after(kTimeout));
  return fd;
}

// Eight ranks enter a mesh; rank 1 has left before its address all-gather. Each survivor's
// all-gather fails and relays around the ring (failRelayed), then the mesh tells every rank
// (failSetup). That told each rank's error as a new report of its own, which the next rank, still
// in its grace, preferred: "rank 5 reports: rank 4 reports: rank 3 reports: ...", a level per hop,
// healthy relays named first (helper-55). The report goes on as heard: one level at most.
TEST(MeshErrors, AReportRelayedAroundTheRingIsNotWrappedAgainByEachRank) {
  const int n = 8;
  Rendezvous rv(n);
  ASSERT_FALSE(::testing::Test::HasFailure());
  rv.boots[1].reset();
  std::vector<std::unique_ptr<Bootstrap>> boots(n);
  for (int r = 0; r < n; ++r) boots[r] = std::move(rv.boots[r]);
  const MeshOutcome got = connectMeshes(std::move(boots), rv.secret);
  for (int r = 0; r < n; ++r) {
    if (r == 1) continue;
    EXPECT_EQ(got.culprit[r], 1) << "rank " << r << ": " << got.what[r];
    const size_t first = got.what[r].find(" reports: ");
    EXPECT_TRUE(first == std::string::npos || got.what[r].find(" reports: ", first + 1) == std::string::npos)
        << "rank " << r << ": " << got.what[r];
  }
}

// Four ranks; rank 3 registers at the rendezvous with an address where nothing listens (as if
// killed right after), and never builds the ring. Rank 2 fails connecting to it; rank 1, whose
// ring successor rank 2 is, found rank 2's connection closed (or refused) and blamed it. Rank 2
// now reports to its neighbours before it closes, as in the all-gather.
TEST(BootstrapErrors, ARankThatFailsBuildingTheRingBecauseOfAnotherIsNotBlamed) {
  const int n = 4;
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, kTimeout);
  const UniqueIdInfo info{root.address(), secret};
  const uint64_t commId = commIdFromSecret(secret);
  NetAddr dead;
  {
    Fd closed = listenOn(NetAddr::loopback());
    dead = localAddress(closed.get());
  }
  // Held open until the others are done: a rank that closes it before the reply frees its number.
  Fd rank3 = registerAtRoot(root, secret, 3, n, dead);
  std::vector<int> culprit(n, -2);
  std::vector<std::string> what(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      recordFailure([&] { TcpBootstrap boot(info, commId, r, n, NetAddr::loopback(), kTimeout); }, &culprit[r],
                    &what[r]);
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < 3; ++r) EXPECT_EQ(culprit[r], 3) << "rank " << r << ": " << what[r];
}

// A ring predecessor on this host whose listener takes connections but which never dials (a
// stopped process: the kernel still completes connections to its listener) is called stopped or
// stuck; this rank is not asked whether its address can be reached, as it is where the
// predecessor is on another host (tests/netns, "decoy").
TEST(BootstrapErrors, APredecessorOnThisHostThatAnswersButNeverConnectsIsCalledStoppedOrStuck) {
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, kTimeout);
  Fd stopped = listenOn(NetAddr::loopback());  // rank 0's listener; nothing ever accepts or dials
  Fd zero = registerAtRoot(root, secret, 0, 2, localAddress(stopped.get()));
  std::string what;
  try {
    TcpBootstrap one(UniqueIdInfo{root.address(), secret}, commIdFromSecret(secret), 1, 2, NetAddr::loopback(),
                     std::chrono::seconds(2));
  } catch (const Timeout& e) {
    what = e.what();
  }
  EXPECT_NE(what.find("waiting for its ring predecessor, rank 0 (" + localAddress(stopped.get()).str() +
                      "), to connect: it answered (this rank reached it) but never connected to this rank at"),
            std::string::npos)
      << what;
  EXPECT_NE(what.find(": is it stopped or stuck?"), std::string::npos) << what;
  EXPECT_EQ(what.find("can its host reach"), std::string::npos) << what;
}

// A rank that registers and dies before the rendezvous completes (a crash, a launcher's restart)
// frees its number: its restarted replacement is not refused as "registered twice".
TEST(BootstrapErrors, ARankThatLeftTheRendezvousCanBeReplaced) {
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, kTimeout);
  UniqueIdInfo info{root.address(), secret};
  const uint64_t commId = commIdFromSecret(secret);
  {
    // Rank 1's first process: its hello and address, the root's answer, then gone.
    Fd fd = registerAtRoot(root, secret, 1, 2);
    for (int i = 0; i < 2000 && root.registered() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_EQ(root.registered(), 1);
  }
  for (int i = 0; i < 2000 && root.registered() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(root.registered(), 0) << "the root kept the registration of a rank that left";
  std::unique_ptr<TcpBootstrap> first;
  std::thread t([&] { first = std::make_unique<TcpBootstrap>(info, commId, 0, 2, NetAddr::loopback(), kTimeout); });
  TcpBootstrap replacement(info, commId, 1, 2, NetAddr::loopback(), kTimeout);
  t.join();
  EXPECT_TRUE(first);
}

// An id serves one rendezvous. A second init with it (a program that calls
// lockstepCommInitFromEnv twice under lockstep-run) is told so at once, where it once retried the
// refused connection for its whole timeout and then blamed "no answer from the root".
TEST(BootstrapErrors, ASecondRendezvousWithAUsedIdFailsAtOnce) {
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, kTimeout);
  UniqueIdInfo info{root.address(), secret, /*rootListens=*/true};
  const uint64_t commId = commIdFromSecret(secret);
  {
    std::unique_ptr<TcpBootstrap> first;
    std::thread t([&] { first = std::make_unique<TcpBootstrap>(info, commId, 0, 2, NetAddr::loopback(), kTimeout); });
    TcpBootstrap second(info, commId, 1, 2, NetAddr::loopback(), kTimeout);
    t.join();
  }
  for (int i = 0; i < 500 && !root.finished(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(root.finished());
  const auto t0 = std::chrono::steady_clock::now();
  try {
    TcpBootstrap again(info, commId, 0, 2, NetAddr::loopback(), kTimeout);
    ADD_FAILURE() << "a used id made a second rendezvous";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), lockstepInvalidUsage) << e.what();
    EXPECT_NE(std::string(e.what()).find("this process made a communicator from this id already"), std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

// A rank that comes after the rendezvous timed out is not told it reused the id (helper-83): it
// did nothing wrong but be late, and the message says the rendezvous may have timed out.
TEST(BootstrapErrors, ARankThatComesAfterTheRendezvousTimedOutIsToldSo) {
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, std::chrono::milliseconds(300));
  UniqueIdInfo info{root.address(), secret, /*rootListens=*/true};
  const uint64_t commId = commIdFromSecret(secret);
  std::thread early([&] {
    EXPECT_THROW(TcpBootstrap(info, commId, 0, 2, NetAddr::loopback(), std::chrono::milliseconds(300)), Error);
  });
  early.join();
  for (int i = 0; i < 500 && !root.finished(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(root.finished());
  try {
    TcpBootstrap late(info, commId, 1, 2, NetAddr::loopback(), kTimeout);
    ADD_FAILURE() << "a rendezvous that timed out took a rank";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), lockstepRemoteError) << e.what();
    EXPECT_NE(std::string(e.what()).find("timed out before this rank came"), std::string::npos) << e.what();
  }
}

// A rank the root has taken waits a little past its own timeout for the root's verdict, which
// names the rank that is missing, rather than reporting "no answer from the root" (the root, whose
// clock started at the first arrival, is waiting for someone else).
TEST(BootstrapErrors, ARankTheRootTookHearsWhoIsMissing) {
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, std::chrono::milliseconds(1500));
  UniqueIdInfo info{root.address(), secret, /*rootListens=*/true};
  std::string why = "no error";
  try {
    TcpBootstrap early(info, commIdFromSecret(secret), 2, 3, NetAddr::loopback(), std::chrono::milliseconds(1000));
  } catch (const Error& e) {
    why = e.what();
  }
  EXPECT_NE(why.find("rank(s) 0,1 never connected"), std::string::npos) << why;
  // With the root's own limit, which is not this rank's (helper-83: a rank that set a longer
  // LOCKSTEP_TIMEOUT than lockstep-run's was cut off at the launcher's, and not told so).
  EXPECT_NE(why.find("timed out after 1500 ms from the first rank's arrival"), std::string::npos) << why;
}

// A rank that registered and then left (its process exited) is told from one that never came:
// both were reported as "never connected".
TEST(BootstrapErrors, TheRendezvousVerdictTellsARankThatLeftFromOneThatNeverCame) {
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, std::chrono::milliseconds(1500));
  UniqueIdInfo info{root.address(), secret, /*rootListens=*/true};
  const uint64_t commId = commIdFromSecret(secret);
  registerAtRoot(root, secret, 1, 3);  // rank 1 registers; its connection closes: it leaves
  for (int i = 0; i < 2000 && root.registered() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::string why = "no error";
  try {
    TcpBootstrap waiting(info, commId, 2, 3, NetAddr::loopback(), std::chrono::milliseconds(1000));
  } catch (const Error& e) {
    why = e.what();
  }
  EXPECT_NE(why.find("rank(s) 0 never connected; rank(s) 1 connected, then closed the connection"), std::string::npos)
      << why;
}

// An IPv4 address of this host other than loopback ("" if it has none).
std::string addressOtherThanLoopback() {
  std::string other;
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0) return other;
  for (ifaddrs* i = ifs; i && other.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof(text));
    if (std::string(text).rfind("127.", 0) != 0) other = text;
  }
  freeifaddrs(ifs);
  return other;
}

// LOCKSTEP_ROOT=<this host's name>:port where the name resolves to loopback here (Debian maps
// its hostname to 127.0.1.1): rank 0's root must still be reachable from other hosts, so it
// listens on every address, not on loopback only ("connection refused" from everywhere else).
TEST(BootstrapErrors, ARootNamedByAHostnameThatResolvesToLoopbackListensEverywhere) {
  char name[256] = {0};
  ASSERT_EQ(gethostname(name, sizeof(name) - 1), 0);
  Fd probe = listenOn(NetAddr::loopback());
  const uint16_t port = localAddress(probe.get()).port;
  probe.reset();
  const std::string root = std::string(name) + ":" + std::to_string(port);
  NetAddr resolved;
  try {
    resolved = NetAddr::parse(root);
  } catch (const Error&) {
    GTEST_SKIP() << "this host's name does not resolve";
  }
  if (!resolved.isLoopback()) GTEST_SKIP() << name << " does not resolve to loopback here";
  // An address of this host other than loopback, to reach the root as another host would.
  const std::string other = addressOtherThanLoopback();
  if (other.empty()) GTEST_SKIP() << "no address but loopback";
  const std::map<std::string, std::string> env{
      {"LOCKSTEP_ROOT", root}, {"LOCKSTEP_RANK", "0"}, {"LOCKSTEP_WORLD_SIZE", "2"}};
  Config c = configOf(env);
  LaunchPlan zero = planLaunch(c);
  ASSERT_TRUE(zero.rootService);
  EXPECT_NO_THROW(connectTo(NetAddr::parse(other + ":" + std::to_string(port)),
                            Deadline::after(std::chrono::seconds(2)),
                            /*retryRefused=*/false))
      << "the root is not reachable at " << other;
}

// A name with addresses of both families is taken as its IPv4 one on every host, whatever order
// the host's resolver gave them in (glibc sorts them by the host's own addresses: a host with
// IPv6 got the IPv6 one first, the others the IPv4 one, and the job never formed).
TEST(RootAddress, ANameWithBothFamiliesIsItsIPv4AddressWhateverTheOrder) {
  sockaddr_in v4addr{};
  v4addr.sin_family = AF_INET;
  sockaddr_in6 v6addr{};
  v6addr.sin6_family = AF_INET6;
  addrinfo v4info{}, v6info{};
  v4info.ai_family = AF_INET;
  v4info.ai_addr = reinterpret_cast<sockaddr*>(&v4addr);
  v6info.ai_family = AF_INET6;
  v6info.ai_addr = reinterpret_cast<sockaddr*>(&v6addr);
  v6info.ai_next = &v4info;  // IPv6 first, as on a host with an IPv6 address
  EXPECT_EQ(preferredAddress(&v6info), &v4info);
  v6info.ai_next = nullptr;
  v4info.ai_next = &v6info;
  EXPECT_EQ(preferredAddress(&v4info), &v4info);
  v4info.ai_next = nullptr;
  EXPECT_EQ(preferredAddress(&v6info), &v6info);  // IPv6 only: that one
}

// An address without a port ("10.0.0.1", "[::1]"): parse wants one.
NetAddr v4(const char* text) {
  NetAddr a = NetAddr::parse(std::string(text) + ":1");
  a.port = 0;
  return a;
}

RankContact contact(const char* listens, const char* from) {
  RankContact c;
  c.listens = v4(listens);
  if (from) c.from = v4(from);
  c.fromRootHost = from == nullptr;
  return c;
}

// Ranks dealt round-robin over two hosts, rank 3 told to use lo: the ring's first dial (rank 2
// to rank 3's 127.0.0.1) once failed with "refused", and rank 3 blamed rank 2 for never
// connecting. The rendezvous sees every address first and names rank 3.
TEST(ReachCheck, ALoopbackListenerWithRanksOnAnotherHostIsNamed) {
  std::vector<RankContact> ranks = {contact("10.0.0.1", nullptr), contact("10.0.0.2", "10.0.0.2"),
                                    contact("10.0.0.1", nullptr), contact("127.0.0.1", "10.0.0.2")};
  const std::string why = unreachableListener(ranks);
  EXPECT_NE(why.find("rank 3 listens on loopback 127.0.0.1 on the host at 10.0.0.2; rank 0, on the rendezvous's "
                     "host, cannot reach it: set LOCKSTEP_SOCKET_IFNAME on rank 3's host"),
            std::string::npos)
      << why;
  EXPECT_LT(why.size(), sizeof(RootReply::message)) << why;
  // On the rendezvous's host, with another host in the job: named the same way.
  ranks[3].listens = v4("10.0.0.2");
  ranks[2].listens = v4("127.0.0.1");
  EXPECT_NE(unreachableListener(ranks).find("rank 2 listens on loopback 127.0.0.1 on the rendezvous's host; rank 1, "
                                            "on the host at 10.0.0.2, cannot reach it"),
            std::string::npos)
      << unreachableListener(ranks);
  ranks[2].listens = v4("169.254.7.7");
  EXPECT_NE(unreachableListener(ranks).find("rank 2 listens on link-local 169.254.7.7"), std::string::npos);
}

// Two hosts that each publish docker0's 172.17.0.1 (LOCKSTEP_SOCKET_IFNAME=docker0): each rank
// dialled its own host, and both failed with "refused", blaming a healthy peer (helper-73).
TEST(ReachCheck, OneAddressPublishedFromTwoHostsIsNamed) {
  std::vector<RankContact> ranks = {contact("172.17.0.1", nullptr), contact("172.17.0.1", nullptr),
                                    contact("172.17.0.1", "10.0.0.2")};
  const std::string why = unreachableListener(ranks);
  EXPECT_NE(why.find("rank 0 on the rendezvous's host and rank 2 on the host at 10.0.0.2 both listen on 172.17.0.1, "
                     "an address private to each host: set LOCKSTEP_SOCKET_IFNAME"),
            std::string::npos)
      << why;
  EXPECT_LT(why.size(), sizeof(RootReply::message)) << why;
  // Ranks of one host share its address; ranks of two hosts publish two.
  ranks[2].listens = v4("10.0.0.2");
  EXPECT_EQ(unreachableListener(ranks), "");
  EXPECT_EQ(unreachableListener({contact("10.0.0.5", "10.0.0.5"), contact("10.0.0.5", "10.0.0.5")}), "");
}

TEST(ReachCheck, LoopbackListenersOnOneHostAreFine) {
  // Every rank on the rendezvous's host, whichever address it dialled and listens on.
  EXPECT_EQ(unreachableListener({contact("127.0.0.1", nullptr), contact("10.0.0.1", nullptr)}), "");
  // Every rank on one other host (an id made elsewhere): they reach each other's loopback.
  EXPECT_EQ(unreachableListener({contact("127.0.0.1", "10.0.0.2"), contact("127.0.0.1", "10.0.0.2")}), "");
  // No loopback anywhere: reachability across hosts is the network's to decide.
  EXPECT_EQ(unreachableListener({contact("10.0.0.1", nullptr), contact("10.0.0.2", "10.0.0.2")}), "");
  // A rank whose connection could not tell where it came from raises no alarm.
  RankContact unknown = contact("10.0.0.3", "10.0.0.3");
  unknown.from = NetAddr{};
  EXPECT_EQ(unreachableListener({contact("127.0.0.1", nullptr), unknown}), "");
  // The longest addresses still fit the reply.
  RankContact six;
  six.listens = v4("[::1]");
  six.from = v4("[fd12:3456:789a:bcde:f012:3456:789a:bcde]");
  RankContact other = six;
  other.from = v4("[fd12:3456:789a:bcde:f012:3456:789a:bcdf]");
  other.listens = other.from;
  const std::string why = unreachableListener({six, other});
  EXPECT_NE(why.find("rank 0 listens on loopback ::1"), std::string::npos) << why;
  EXPECT_LT(why.size(), sizeof(RootReply::message)) << why;
  // With four-digit ranks (ranks 1000 and 2000 of a large job): the short form.
  std::vector<RankContact> many(2001, other);
  many[1000] = six;
  many[1000].listens = v4("[fd80:3456:789a:bcde:f012:3456:789a:bcde]");
  many[1000].listens.addr[0] = 0xfe;  // link-local (fe80::/10), which NetAddr::parse refuses
  many[2000].from = v4("[fd12:3456:789a:bcde:f012:3456:789a:bcd0]");
  const std::string longest = unreachableListener(many);
  EXPECT_LE(longest.size(), kReachMessageMax) << longest;
  EXPECT_NE(longest.find("rank 1000 listens on link-local fe80:3456:789a:bcde:f012:3456:789a:bcde, which rank 0 on "
                         "another host cannot reach: set LOCKSTEP_SOCKET_IFNAME on rank 1000's host"),
            std::string::npos)
      << longest;
}

// Real ranks of one host, one listening on loopback and dialling the rendezvous there, the other
// dialling this host's own address: the second's connection comes from that address, not from
// loopback, and must still count as the rendezvous's host.
TEST(ReachCheck, ARankDiallingThisHostsOwnAddressIsOnTheRendezvousHost) {
  const std::string other = addressOtherThanLoopback();
  if (other.empty()) GTEST_SKIP() << "no address but loopback";
  Secret secret = randomSecret();
  NetAddr everywhere;
  everywhere.family = AF_INET;
  const auto timeout = std::chrono::seconds(5);  // a failure here is one rank waiting for the other
  RootService root(everywhere, secret, timeout);
  const uint64_t commId = commIdFromSecret(secret);
  const UniqueIdInfo viaLoopback{NetAddr::loopback(root.address().port), secret};
  const UniqueIdInfo viaHost{NetAddr::parse(other + ":" + std::to_string(root.address().port)), secret};
  std::unique_ptr<TcpBootstrap> zero;
  std::string zeroError;
  std::thread t([&] {
    try {
      zero = std::make_unique<TcpBootstrap>(viaLoopback, commId, 0, 2, NetAddr::loopback(), timeout);
    } catch (const std::exception& e) {
      zeroError = e.what();
    }
  });
  std::unique_ptr<TcpBootstrap> one;
  std::string oneError;
  try {
    one = std::make_unique<TcpBootstrap>(viaHost, commId, 1, 2, v4(other.c_str()), timeout);
  } catch (const std::exception& e) {
    oneError = e.what();
  }
  t.join();
  EXPECT_EQ(zeroError, "");
  EXPECT_EQ(oneError, "");
}

// Under LOCKSTEP_ROOT rank 0 serves the rendezvous itself, so a second rank 0 cannot get to the
// rendezvous's "registered twice": it meets the port taken, and is told who may hold it (it once
// read only "bind failed: Address already in use").
TEST(BootstrapErrors, ASecondRankZeroUnderLockstepRootIsToldItsPortIsTaken) {
  Fd probe = listenOn(NetAddr::loopback());
  const uint16_t port = localAddress(probe.get()).port;
  probe.reset();
  const std::string root = "127.0.0.1:" + std::to_string(port);
  // Under LOCKSTEP_ROOT, and under torchrun's variables, which name MASTER_PORT, not the port
  // taken (MASTER_PORT + 1): the message must say which variables gave it.
  const std::vector<std::pair<std::map<std::string, std::string>, std::string>> cases{
      {{{"LOCKSTEP_ROOT", root}, {"LOCKSTEP_RANK", "0"}, {"LOCKSTEP_WORLD_SIZE", "2"}},
       "rendezvous at LOCKSTEP_ROOT=" + root + " on " + root + ": its port is taken, by another process given rank 0"},
      {{{"MASTER_ADDR", "127.0.0.1"},
        {"MASTER_PORT", std::to_string(port - 1)},
        {"RANK", "0"},
        {"WORLD_SIZE", "2"},
        {"LOCAL_RANK", "0"}},
       "rendezvous at MASTER_ADDR/MASTER_PORT (" + root + ", MASTER_PORT + 1) on " + root + ": its port is taken"},
  };
  for (const auto& [env, want] : cases) {
    Config c = configOf(env);
    LaunchPlan first = planLaunch(c);
    ASSERT_TRUE(first.rootService);
    try {
      LaunchPlan second = planLaunch(c);
      ADD_FAILURE() << "a second rank 0 served the same port";
    } catch (const SystemError& e) {
      EXPECT_EQ(e.err, EADDRINUSE);
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  }
  // An address this host does not own (NAT): rank 0 listens on all of its addresses instead,
  // and meets the port taken there.
  NetAddr everywhere;
  everywhere.family = AF_INET;
  everywhere.port = port;
  Fd taken = listenOn(everywhere);
  const std::string elsewhere = "192.0.2.1:" + std::to_string(port);
  const std::map<std::string, std::string> nat{
      {"LOCKSTEP_ROOT", elsewhere}, {"LOCKSTEP_RANK", "0"}, {"LOCKSTEP_WORLD_SIZE", "2"}};
  Config c = configOf(nat);
  try {
    LaunchPlan plan = planLaunch(c);
    ADD_FAILURE() << "rank 0 served a port that was taken";
  } catch (const SystemError& e) {
    EXPECT_NE(std::string(e.what()).find("rendezvous at LOCKSTEP_ROOT=" + elsewhere +
                                         " on 0.0.0.0:" + std::to_string(port) + ": its port is taken"),
              std::string::npos)
        << e.what();
  }
}

// The root's clock starts with the first rank, not when the id was made:
// under a launcher ranks may work longer than the timeout (loading data) before their init.
TEST(BootstrapErrors, TheRendezvousWaitsForItsFirstRankWithoutATimeLimit) {
  const auto timeout = std::chrono::milliseconds(1000);  // the second rank has this long after the first
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, timeout);
  std::this_thread::sleep_for(2 * timeout);
  UniqueIdInfo info{root.address(), secret};
  std::unique_ptr<TcpBootstrap> first;
  std::thread t([&] {
    first = std::make_unique<TcpBootstrap>(info, commIdFromSecret(secret), 0, 2, NetAddr::loopback(), kTimeout);
  });
  TcpBootstrap second(info, commIdFromSecret(secret), 1, 2, NetAddr::loopback(), kTimeout);
  t.join();
  EXPECT_TRUE(first);
}

// A rank the root turned away (another secret: LOCKSTEP_ROOT spelled differently, another
// LOCKSTEP_SECRET) is missing; the timeout says it came and why it was turned away, not only
// that it "never connected".
TEST(BootstrapErrors, TheRendezvousTimeoutSaysWhomItTurnedAway) {
  const auto timeout = std::chrono::milliseconds(1500);
  Secret secret = randomSecret(), other = randomSecret();
  RootService root(NetAddr::loopback(), secret, timeout);
  UniqueIdInfo info{root.address(), secret}, stranger{root.address(), other};
  std::string waited, turnedAway;
  std::thread t([&] {
    try {
      TcpBootstrap first(info, commIdFromSecret(secret), 0, 2, NetAddr::loopback(), kTimeout);
    } catch (const Error& e) {
      waited = e.what();
    }
  });
  for (int i = 0; i < 2000 && root.registered() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  try {
    TcpBootstrap wrong(stranger, commIdFromSecret(other), 1, 2, NetAddr::loopback(), kTimeout);
  } catch (const Error& e) {
    turnedAway = e.what();
  }
  t.join();
  EXPECT_NE(waited.find("rank(s) 1 never connected (it turned away 1 connection(s), the last for: wrong secret)"),
            std::string::npos)
      << waited;
  EXPECT_NE(turnedAway.find("turn this rank away"), std::string::npos) << turnedAway;
}

// Waits of setup probe the peer they wait for (peerListening), and a peer busy elsewhere serves
// the probes later, all at once. A burst of them must not push a message that came before them
// out of its pending connections (it keeps 256): each connection whose bytes are in is taken
// when accepted.
TEST(BootstrapErrors, ABurstOfProbesDoesNotPushOutAMessageBeforeThem) {
  Rendezvous rv(2);
  auto& boots = rv.boots;
  ASSERT_FALSE(::testing::Test::HasFailure());
  const int sent = 42;
  boots[0]->send(1, 7, &sent, sizeof(sent));
  for (int i = 0; i < 400; ++i) EXPECT_TRUE(boots[0]->peerListening(1));
  int got = 0;
  boots[1]->recv(0, 7, &got, sizeof(got));
  EXPECT_EQ(got, sent);
}

// Without LOCKSTEP_SECRET, the secret of a LOCKSTEP_ROOT job comes from the root's address and
// the launcher's job identity: two jobs on one port at once (a late rank of one, a rank of the
// other) no longer share a secret, so neither can join the other's communicator. One job's
// ranks still agree, and without a job identity the address alone decides, as before.
TEST(LaunchSecret, TheLaunchersJobIdentityTellsTwoJobsOnOneRootApart) {
  auto secret = [](std::map<std::string, std::string> env) {
    env["LOCKSTEP_ROOT"] = "127.0.0.1:29512";
    Config c = configOf(env);
    return planLaunch(c).id.secret;  // rank 1: no rendezvous served here
  };
  auto slurm = [](const char* job, const char* step) {
    return std::map<std::string, std::string>{
        {"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "4"}, {"SLURM_JOB_ID", job}, {"SLURM_STEP_ID", step}};
  };
  EXPECT_EQ(secret(slurm("77", "0")), secret(slurm("77", "0")));
  EXPECT_NE(secret(slurm("77", "0")), secret(slurm("78", "0")));
  EXPECT_EQ(secret(slurm("77", "0")), secret(slurm("77", "1"))) << "one job's ranks may come from several steps";
  auto torchrun = [](const char* run) {
    return std::map<std::string, std::string>{{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"TORCHELASTIC_RUN_ID", run}};
  };
  EXPECT_NE(secret(torchrun("a")), secret(torchrun("b")));
  // PMIx gives no size: its ranks take it from LOCKSTEP_WORLD_SIZE, and their namespace still
  // tells two jobs apart (it did not, while only a launcher that gave both counted).
  auto pmix = [](const char* ns) {
    return std::map<std::string, std::string>{{"PMIX_RANK", "1"}, {"LOCKSTEP_WORLD_SIZE", "4"}, {"PMIX_NAMESPACE", ns}};
  };
  EXPECT_EQ(secret(pmix("jobA")), secret(pmix("jobA")));
  EXPECT_NE(secret(pmix("jobA")), secret(pmix("jobB")));
  const std::map<std::string, std::string> plain{{"LOCKSTEP_RANK", "1"}, {"LOCKSTEP_WORLD_SIZE", "4"}};
  EXPECT_EQ(secret(plain), secret(plain));
  // A rank placed by hand inside an allocation keeps the plain secret, as ranks placed outside.
  auto byHandInSlurm = slurm("77", "0");
  byHandInSlurm["LOCKSTEP_RANK"] = "1";
  byHandInSlurm["LOCKSTEP_WORLD_SIZE"] = "4";
  EXPECT_EQ(secret(byHandInSlurm), secret(plain));
  auto withSecret = plain;
  withSecret["LOCKSTEP_SECRET"] = "00112233445566778899aabbccddeeff";
  EXPECT_NE(secret(plain), secret(withSecret));
}

// A bad rendezvous address names the variable it came from (helper-83: "cannot resolve host"
// alone did not say that torchrun's MASTER_ADDR held it).
TEST(LaunchSecret, ABadRendezvousAddressNamesItsVariable) {
  auto message = [](const std::map<std::string, std::string>& env) {
    try {
      planLaunch(configOf(env));
    } catch (const InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_EQ(message({{"LOCKSTEP_RANK", "1"}, {"LOCKSTEP_WORLD_SIZE", "2"}, {"LOCKSTEP_ROOT", "127.0.0.1"}})
                .rfind("LOCKSTEP_ROOT: address \"127.0.0.1\" is not host:port", 0),
            0u);
  const std::string torch =
      message({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "[::1"}, {"MASTER_PORT", "29500"}});
  EXPECT_EQ(torch.rfind("MASTER_ADDR/MASTER_PORT: address \"[::1:29501\"", 0), 0u) << torch;
}

}  // namespace
}  // namespace lockstep
