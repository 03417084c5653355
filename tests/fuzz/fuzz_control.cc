// libFuzzer: the watchdog's control messages as a peer's connection delivers them (heartbeats,
// failure reports and their kText continuations, goodbyes, split reports), read by the real
// Health::readFrom from a socket, and what the watchdog then says of its peers (evaluate,
// laggards, departed, check). A control connection is authenticated: these are the bytes of a
// rank with the secret that is broken or hostile. Every message must be taken or the peer
// dropped ("malformed"), and every report bounded.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bootstrap/inproc_bootstrap.h"
#include "src/core/config.h"
#include "src/core/errors.h"
#include "src/core/health.h"
#include "src/topo/peer_info.h"

namespace lockstep {

struct HealthFuzz {
  struct Input {
    const uint8_t* data;
    size_t size, at = 0;
    uint8_t byte() { return at < size ? data[at++] : 0; }
    size_t take(size_t n) {
      n = std::min(n, size - at);
      at += n;
      return n;
    }
  };

  static void run(const uint8_t* data, size_t size) {
    static const Config config = [] {
      Config c;
      c.timeout = std::chrono::seconds(2);
      c.logLevel = LogLevel::kNone;
      return c;
    }();
    static const std::vector<PeerInfo> infos(1);
    Input in{data, size};
    const int npeers = 1 + in.byte() % 3;
    auto world = std::make_shared<InprocWorld>(1);
    InprocBootstrap boot(world, 0, std::chrono::seconds(2));
    // One rank: no mesh and no watchdog thread; the peers are socket pairs this input writes to.
    Health h(TransportContext{config, boot, infos, 0, 1, {}, NetAddr::loopback()});
    std::vector<Fd> theirs;
    for (int r = 1; r <= npeers; ++r) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return;
      Health::Peer p;
      p.rank = r;
      p.fd = Fd(sv[0]);
      p.name = "rank " + std::to_string(r) + " (fuzzed)";
      p.lastHeard = Clock::now();
      h.peers_.push_back(std::move(p));
      theirs.emplace_back(sv[1]);
    }
    uint64_t seq = 0;
    while (in.at < in.size) {
      switch (in.byte() % 5) {
        case 0: {  // this rank enters an op
          Fingerprint fp;
          fp.seq = ++seq;
          fp.count = in.byte();
          fp.kind = in.byte() % 8;
          fp.dtype = in.byte() % 10;
          fp.op = in.byte() % 5;
          fp.root = static_cast<int8_t>(in.byte());
          fp.algorithm = in.byte() % 7;
          h.entered(fp);
          break;
        }
        case 1:
          h.completed(seq);
          break;
        case 2: {  // a peer's bytes arrive, up to 2 KiB at a time, and are read
          const int who = in.byte() % npeers;
          const uint8_t how = in.byte();
          const size_t want = how & 1 ? in.byte() * 8u + 7u : 2048;
          const uint8_t* from = in.data + in.at;
          std::vector<uint8_t> bytes(from, from + in.take(want));
          // Mostly whole messages with the right magic, so the fuzzer explores what they say
          // rather than the magic; otherwise raw bytes, cut anywhere.
          if (how & 1) {
            const uint32_t magic = Health::controlMagic();
            // 0-400: a full field (384), and past it, which the reader must refuse.
            const uint32_t text = how & 2 ? 0 : (in.byte() | in.byte() << 8u) % 401u;
            bytes.resize(Health::controlHeaderBytes() + text);
            std::memcpy(bytes.data(), &magic, sizeof(magic));
            std::memcpy(bytes.data() + Health::controlTextBytesAt(), &text, sizeof(text));
          }
          if (!bytes.empty() && ::send(theirs[who].get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            break;
          Health::Peer& p = h.peers_[who];
          if (p.fd.valid() && p.state == Health::PeerState::kAlive) h.readFrom(p);
          break;
        }
        case 3: {
          h.evaluate();
          const std::string late = h.laggards(in.byte(), in.byte() % 4 - 1);
          if (late.size() > 64 * 1024) __builtin_trap();  // bounded, whatever the peers said
          (void)h.departed(in.byte() % 4);
          break;
        }
        case 4: {
          lockstepResult_t code;
          std::string text;
          (void)h.splitFailure(in.byte(), in.byte() % 4, &code, &text);
          break;
        }
      }
    }
    try {
      h.check();
    } catch (const Error& e) {
      if (std::string(e.what()).size() > 64 * 1024) __builtin_trap();
    }
    (void)h.failedBy(1);
    const int all[] = {1, 2, 3};
    (void)h.lostAmong(all);
    h.peers_.clear();
  }
};

}  // namespace lockstep

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lockstep::HealthFuzz::run(data, size);
  return 0;
}
