// An attacker inside the process watches for every TCP port the communicators listen on (the
// rendezvous, the bootstrap listeners, the socket transport and control-connection listeners
// while they are up) and hits each with garbage, wrong secrets, truncated hellos, oversized
// lengths, slow drips and silent connections, while four ranks initialise, run every collective
// (checked), and split. Nothing may crash, hang or compute a wrong result.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "bootstrap/handshake.h"
#include "kernels/dtype.h"
#include "perf/collectives.h"
#include "tests/common/thread_comms.h"

namespace lockstep {
namespace {

// Listening TCP sockets of this process: (ip, port) from /proc/net/tcp, owned if their inode is
// one of our descriptors.
std::set<std::pair<uint32_t, uint16_t>> ownListeners() {
  std::set<std::string> inodes;
  for (int fd = 0; fd < 4096; ++fd) {
    char link[64], target[128];
    std::snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = 0;
    if (std::strncmp(target, "socket:[", 8) == 0) inodes.insert(std::string(target + 8, n - 9));
  }
  std::set<std::pair<uint32_t, uint16_t>> out;
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::getline(tcp, line);
  while (std::getline(tcp, line)) {
    std::istringstream ss(line);
    std::string sl, local, remote, st, q, tr, retr, uid, timeout, inode;
    ss >> sl >> local >> remote >> st >> q >> tr >> retr >> uid >> timeout >> inode;
    if (st != "0A" || !inodes.count(inode)) continue;
    uint32_t ip = static_cast<uint32_t>(std::stoul(local.substr(0, 8), nullptr, 16));  // network order as read
    uint16_t port = static_cast<uint16_t>(std::stoul(local.substr(9), nullptr, 16));
    out.insert({ip ? ip : htonl(INADDR_LOOPBACK), port});
  }
  return out;
}

int connectTo(uint32_t ip, uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = ip;
  a.sin_port = htons(port);
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

class Attacker {
 public:
  Attacker() : thread_([this] { run(); }) {}
  ~Attacker() {
    stop_ = true;
    thread_.join();
    for (auto& t : drips_) t.join();
    for (int fd : held_) close(fd);
  }
  int connections() const { return connections_; }
  int ports() const { return ports_; }

 private:
  void run() {
    std::mt19937 rng(7);
    while (!stop_) {
      for (auto target : ownListeners()) {
        if (!seen_.insert(target).second) continue;
        ++ports_;
        for (int kind = 0; kind < 6; ++kind) attack(target.first, target.second, kind, rng);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  void attack(uint32_t ip, uint16_t port, int kind, std::mt19937& rng) {
    int fd = connectTo(ip, port);
    if (fd < 0) return;
    ++connections_;
    Secret wrong;
    for (auto& b : wrong) b = static_cast<uint8_t>(rng());
    Hello h = makeHello(wrong, rng(), 0, 4, static_cast<Purpose>(1 + rng() % 5));
    char garbage[512];
    for (auto& c : garbage) c = static_cast<char>(rng());
    switch (kind) {
      case 0:  // garbage
        send(fd, garbage, sizeof(garbage), MSG_NOSIGNAL);
        break;
      case 1:  // a well-formed hello with the wrong secret, then more bytes
        send(fd, &h, sizeof(h), MSG_NOSIGNAL);
        send(fd, garbage, 64, MSG_NOSIGNAL);
        break;
      case 2:  // a truncated hello
        send(fd, &h, 20, MSG_NOSIGNAL);
        break;
      case 3: {  // a hello then a frame header announcing an absurd length
        struct {
          Hello h;
          int32_t tag;
          uint32_t pad;
          uint64_t bytes;
        } m{h, 1, 0, 1ull << 40};
        send(fd, &m, sizeof(m), MSG_NOSIGNAL);
        break;
      }
      case 4:  // a slow drip: one byte every 50 ms for 2 s
        drips_.emplace_back([fd, this] {
          for (int i = 0; i < 40 && !stop_; ++i) {
            char b = static_cast<char>(i);
            if (send(fd, &b, 1, MSG_NOSIGNAL) != 1) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          }
          close(fd);
        });
        return;
      default:  // connect and say nothing, until the end
        held_.push_back(fd);
        return;
    }
    close(fd);
  }

  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0}, ports_{0};
  std::set<std::pair<uint32_t, uint16_t>> seen_;
  std::vector<std::thread> drips_;
  std::vector<int> held_;
  std::thread thread_;
};

TEST(Attack, EveryListeningPortUnderFireWhileTheCommunicatorWorks) {
  const int n = 4;
  setenv("LOCKSTEP_TRANSPORTS", "socket", 1);  // data and control listeners to attack
  setenv("LOCKSTEP_TIMEOUT", "60", 1);
  setenv("LOCKSTEP_DEBUG", "NONE", 1);  // the rejections are expected
  std::vector<lockstepComm_t> comms;
  int connections = 0, ports = 0;
  {
    Attacker attacker;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    comms = testing::initThreadComms(n);
    std::vector<std::string> failures(n);
    testing::onThreads(n, [&](int r) {
      std::vector<char> a, b;
      for (int round = 0; round < 3; ++round) {
        for (perf::Coll c : perf::kAllColls) {
          Pattern pat(lockstepFloat32, lockstepSum, n);
          const size_t count = 20011;
          size_t bytes = std::max(perf::sendElems(c, count, n), perf::recvElems(c, count, n)) * 4;
          a.assign(bytes, 0);
          b.assign(bytes, 0);
          perf::fillInput(c, pat, a.data(), count, r, n, 1);
          lockstepResult_t rc =
              perf::runColl(c, a.data(), b.data(), count, lockstepFloat32, lockstepSum, 1, comms[r], nullptr);
          if (rc != lockstepSuccess || perf::countWrong(c, pat, b.data(), count, r, n, 1) != 0) {
            failures[r] = std::string(perf::collName(c)) + ": " + lockstepGetLastError(nullptr);
            return;
          }
        }
        // A split brings up a new rendezvous and new listeners: attacked too.
        lockstepComm_t half;
        if (lockstepCommSplit(comms[r], r % 2, r, &half) != lockstepSuccess) {
          failures[r] = std::string("split: ") + lockstepGetLastError(nullptr);
          return;
        }
        int64_t v = r, sum = 0;
        if (lockstepAllReduce(&v, &sum, 1, lockstepInt64, lockstepSum, half, nullptr) != lockstepSuccess ||
            sum != (r % 2 ? 1 + 3 : 0 + 2)) {
          failures[r] = "all-reduce on the split communicator";
        }
        lockstepCommDestroy(half);
      }
    });
    for (int r = 0; r < n; ++r) EXPECT_EQ(failures[r], "") << "rank " << r;
    connections = attacker.connections();
    ports = attacker.ports();
  }
  testing::destroyAll(comms);
  unsetenv("LOCKSTEP_TRANSPORTS");
  unsetenv("LOCKSTEP_TIMEOUT");
  unsetenv("LOCKSTEP_DEBUG");
  std::printf("attack: %d hostile connections to %d listening ports\n", connections, ports);
  EXPECT_GT(ports, 4) << "the attacker found too few listeners to mean anything";
}

}  // namespace
}  // namespace lockstep
