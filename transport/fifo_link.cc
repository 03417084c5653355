#include "transport/fifo_link.h"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace lockstep {

Message FifoLink::tryRecv() {
  size_t bytes = 0;
  MessageTag tag;
  const void* p = in_.tryRecv(&bytes, &tag);
  if (p && bytes > in_.slotBytes()) {
    throw RemoteError(peerRank_, peerName_ + " posted a " + std::to_string(bytes) + "-byte message into a " +
                                     std::to_string(in_.slotBytes()) + "-byte slot");
  }
  return Message{p, p ? bytes : 0, tag};
}

bool FifoLink::peerGone() {
  if (!pidFd_.valid()) return false;
  pollfd p{pidFd_.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

Fd openPidFd(int64_t pid) {
#ifdef SYS_pidfd_open
  long fd = ::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0);
  if (fd >= 0) return Fd(static_cast<int>(fd));
#endif
  (void)pid;
  return Fd();
}

}  // namespace lockstep
