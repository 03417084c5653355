// libFuzzer: the socket transport's frame decoder. The input arrives on a real socket, as a
// broken or hostile peer would send it; the link must reject it or deliver bounded messages.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "transport/socket/socket_link.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) return 0;
  lockstep::SocketLink link(lockstep::Fd(sv[0]), 1, "fuzzed peer", 2, 4096);
  size_t off = 0;
  while (off < size) {
    ssize_t n = send(sv[1], data + off, size - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
    try {
      for (lockstep::Message m; (m = link.tryRecv()).data;) {
        if (m.bytes > 4096) __builtin_trap();  // a message larger than its slot must never get out
        link.releaseRecv();
      }
    } catch (const lockstep::Error&) {
      break;
    }
  }
  close(sv[1]);
  try {
    for (lockstep::Message m; (m = link.tryRecv()).data;) link.releaseRecv();
  } catch (const lockstep::Error&) {
  }
  return 0;
}
