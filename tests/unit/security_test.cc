// Hostile connections against the rendezvous and a rank's bootstrap listener while a real
// communicator forms and works: wrong secrets, garbage, truncated hellos and a silent client are
// rejected, and the communicator finishes its job.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "bootstrap/handshake.h"
#include "bootstrap/root_service.h"
#include "bootstrap/tcp_bootstrap.h"
#include "lockstep/lockstep.h"
#include "src/core/errors.h"

namespace lockstep {
namespace {

// Connects and sends `bytes`; keeps the connection open until the object dies.
struct Rogue {
  Rogue(const NetAddr& target, const void* bytes, size_t n) {
    fd = connectTo(target, Deadline::after(std::chrono::seconds(5)));
    if (n) sendAll(fd.get(), bytes, n, Deadline::after(std::chrono::seconds(5)));
  }
  Fd fd;
};

TEST(Security, RendezvousRejectsStrangersAndStillCompletes) {
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, std::chrono::seconds(60));
  Secret wrong = randomSecret();
  Hello badSecret = makeHello(wrong, commIdFromSecret(wrong), 0, 3, Purpose::kRoot);
  char garbage[kRootHelloBytes];
  std::memset(garbage, 0xab, sizeof(garbage));
  char wrongSecretMsg[kRootHelloBytes];
  const NetAddr someAddr = NetAddr::loopback(1);
  std::memcpy(wrongSecretMsg, &badSecret, sizeof(badSecret));
  std::memcpy(wrongSecretMsg + sizeof(badSecret), &someAddr, sizeof(someAddr));
  std::vector<std::unique_ptr<Rogue>> rogues;
  rogues.push_back(std::make_unique<Rogue>(root.address(), wrongSecretMsg, sizeof(wrongSecretMsg)));
  rogues.push_back(std::make_unique<Rogue>(root.address(), garbage, sizeof(garbage)));
  rogues.push_back(std::make_unique<Rogue>(root.address(), garbage, 7));  // truncated, then silence
  rogues.push_back(std::make_unique<Rogue>(root.address(), nullptr, 0));  // connects, never speaks

  UniqueIdInfo info{root.address(), secret};
  lockstepUniqueId id = encodeUniqueId(info);
  const int n = 3;
  std::vector<lockstepComm_t> comms(n);
  std::vector<std::thread> threads;
  std::vector<lockstepResult_t> rc(n);
  for (int r = 0; r < n; ++r) threads.emplace_back([&, r] { rc[r] = lockstepCommInitRank(&comms[r], n, id, r); });
  for (auto& t : threads) t.join();
  threads.clear();
  for (int r = 0; r < n; ++r) ASSERT_EQ(rc[r], lockstepSuccess);
  EXPECT_GE(root.rejected(), 2) << "the wrong secret and the garbage were rejected";
  EXPECT_EQ(root.registered(), n);
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      float v = 1;
      rc[r] = lockstepAllReduce(&v, &v, 1, lockstepFloat32, lockstepSum, comms[r], nullptr);
      if (v != n) rc[r] = lockstepInternalError;
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < n; ++r) EXPECT_EQ(rc[r], lockstepSuccess);
  for (auto c : comms) lockstepCommDestroy(c);
}

// A flood of rejected connections is reported in a few lines, not one each: stderr may be a pipe
// nobody drains until exit, and a blocked write there stalls the rendezvous (it once stopped
// after about 600 lines, and every rank timed out).
TEST(Security, AFloodOfStrangersTakesAFewLogLinesNotOneEach) {
  std::fflush(stderr);
  char path[] = "/tmp/lockstep-flood-log-XXXXXX";
  int logFd = mkstemp(path);
  ASSERT_GE(logFd, 0);
  const int savedStderr = dup(2);
  dup2(logFd, 2);
  int rejected = 0;
  {
    Secret secret = randomSecret();
    RootService root(NetAddr::loopback(), secret, std::chrono::seconds(60));
    char garbage[kRootHelloBytes];
    std::memset(garbage, 0xab, sizeof(garbage));
    for (int i = 0; i < 300; ++i) Rogue(root.address(), garbage, sizeof(garbage));  // each closes at once
    for (int i = 0; i < 500 && root.rejected() < 300; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    rejected = root.rejected();
  }
  std::fflush(stderr);
  dup2(savedStderr, 2);
  close(savedStderr);
  close(logFd);
  std::ifstream in(path);
  int lines = 0;
  for (std::string line; std::getline(in, line);) lines += line.find("rejected a connection") != std::string::npos;
  std::remove(path);
  EXPECT_EQ(rejected, 300);
  EXPECT_GT(lines, 0) << "the rejections are still reported";
  EXPECT_LE(lines, 20) << "one line per rejected connection";
}

TEST(Security, BootstrapListenerDropsWrongSecretsAndKeepsWorking) {
  Secret secret = randomSecret();
  RootService root(NetAddr::loopback(), secret, std::chrono::seconds(60));
  UniqueIdInfo info{root.address(), secret};
  const int n = 2;
  std::vector<std::unique_ptr<TcpBootstrap>> boots(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      boots[r] = std::make_unique<TcpBootstrap>(info, commIdFromSecret(secret), r, n, NetAddr::loopback(),
                                                std::chrono::seconds(30));
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(boots[0] && boots[1]);

  // A stranger posing as rank 1 with the wrong secret, then junk, then a legitimate message.
  Secret wrong = randomSecret();
  Hello fake = makeHello(wrong, commIdFromSecret(secret), 1, n, Purpose::kP2P);
  Rogue a(boots[0]->listenAddress(), &fake, sizeof(fake));
  Rogue b(boots[0]->listenAddress(), "GET / HTTP/1.0\r\n\r\n", 18);
  uint64_t payload = 0x1234, got = 0;
  threads.clear();
  threads.emplace_back([&] { boots[1]->send(0, 5, &payload, sizeof(payload)); });
  boots[0]->recv(1, 5, &got, sizeof(got));
  threads[0].join();
  EXPECT_EQ(got, payload);
  // The ring still works too.
  threads.clear();
  std::vector<int> blocks[2] = {{7, 0}, {0, 9}};
  for (int r = 0; r < n; ++r) threads.emplace_back([&, r] { boots[r]->allGather(blocks[r].data(), sizeof(int)); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(blocks[0][1], 9);
  EXPECT_EQ(blocks[1][0], 7);
}

// A failure code from a peer (a control message, a bootstrap report, the root's reply) is taken
// only if it is an error: lockstepInProgress, adopted as a failure, was then returned by every
// call on the rank, so a caller polling until a call is no longer in progress spun for ever
// (helper-94).
TEST(Security, APeersCodeIsAFailureOnlyIfItIsAnError) {
  EXPECT_FALSE(isFailureCode(lockstepSuccess));
  EXPECT_FALSE(isFailureCode(lockstepInProgress));
  EXPECT_FALSE(isFailureCode(lockstepNumResults));
  EXPECT_FALSE(isFailureCode(-1));
  for (int c = lockstepSuccess + 1; c < lockstepNumResults; ++c) {
    if (c != lockstepInProgress)
      EXPECT_TRUE(isFailureCode(c)) << lockstepGetErrorString(static_cast<lockstepResult_t>(c));
  }
}

}  // namespace
}  // namespace lockstep
