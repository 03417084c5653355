// libFuzzer: the bootstrap listener, fed over a real TCP connection. A one-rank bootstrap is
// built once; every input is a stranger's connection; the listener must drop it (or stash a
// bounded message) and keep serving.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "bootstrap/root_service.h"
#include "bootstrap/tcp_bootstrap.h"

namespace {

lockstep::TcpBootstrap& bootstrap() {
  static lockstep::Secret secret = lockstep::randomSecret();
  static lockstep::RootService root(lockstep::NetAddr::loopback(), secret, std::chrono::seconds(30));
  static lockstep::TcpBootstrap boot(lockstep::UniqueIdInfo{root.address(), secret}, lockstep::commIdFromSecret(secret),
                                     0, 1, lockstep::NetAddr::loopback(), std::chrono::milliseconds(5));
  return boot;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lockstep::TcpBootstrap& boot = bootstrap();
  try {
    lockstep::Fd fd = lockstep::connectTo(boot.listenAddress(), lockstep::Deadline::after(std::chrono::seconds(1)));
    lockstep::sendAll(fd.get(), data, size, lockstep::Deadline::after(std::chrono::milliseconds(50)));
  } catch (const lockstep::Error&) {
  }
  char buf[8];
  try {
    boot.recv(0, 0x7fff0000, buf, sizeof(buf));  // serves the listener until its short deadline
  } catch (const lockstep::Error&) {
  }
  return 0;
}
