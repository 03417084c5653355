// libFuzzer: the bootstrap listener, fed over a real TCP connection. A one-rank bootstrap is
// built once; every input is a connection; the listener must drop it (or stash a bounded
// message) and keep serving.
//
// The secret is fixed, and an input whose first byte is odd has its hello's magic, version,
// secret and communicator id made valid: a random secret is a 128-bit guess the fuzzer never
// makes, and stopped every input at the secret check (helper-94). The rest of the hello (rank,
// size, purpose) and whatever follows it (a message header, its payload) stay the fuzzer's.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "bootstrap/handshake.h"
#include "bootstrap/root_service.h"
#include "bootstrap/tcp_bootstrap.h"

namespace {

const lockstep::Secret kSecret = [] {
  lockstep::Secret s{};
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<uint8_t>(0x5a ^ i);
  return s;
}();

lockstep::TcpBootstrap& bootstrap() {
  static lockstep::RootService root(lockstep::NetAddr::loopback(), kSecret, std::chrono::seconds(30));
  static lockstep::TcpBootstrap boot(lockstep::UniqueIdInfo{root.address(), kSecret},
                                     lockstep::commIdFromSecret(kSecret), 0, 1, lockstep::NetAddr::loopback(),
                                     std::chrono::milliseconds(5));
  static const bool ended = (boot.endSetup(), true);  // else every wait ends at setup's 5 ms
  (void)ended;
  return boot;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lockstep::TcpBootstrap& boot = bootstrap();
  std::vector<uint8_t> bytes(data, data + size);
  if (size > sizeof(lockstep::Hello) && (data[0] & 1)) {
    lockstep::Hello h;
    std::memcpy(&h, data + 1, sizeof(h));
    const lockstep::Hello valid =
        lockstep::makeHello(kSecret, lockstep::commIdFromSecret(kSecret), 0, 1, lockstep::Purpose::kP2P);
    h.magic = valid.magic;
    h.version = valid.version;
    std::memcpy(h.secret, valid.secret, sizeof(h.secret));
    h.commId = valid.commId;
    bytes.assign(data + 1, data + size);
    std::memcpy(bytes.data(), &h, sizeof(h));
  }
  try {
    lockstep::Fd fd = lockstep::connectTo(boot.listenAddress(), lockstep::Deadline::after(std::chrono::seconds(1)));
    lockstep::sendAll(fd.get(), bytes.data(), bytes.size(), lockstep::Deadline::after(std::chrono::milliseconds(50)));
  } catch (const lockstep::Error&) {
  }
  char buf[8];
  try {
    boot.recv(0, 0x7fff0000, buf, sizeof(buf));  // serves the listener until its short deadline
  } catch (const lockstep::Error&) {
  }
  return 0;
}
