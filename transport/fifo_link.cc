#include "transport/fifo_link.h"

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>

namespace lockstep {

void FifoLink::oversized(size_t bytes) const {
  throw RemoteError(peerRank_, peerName_ + " posted a " + std::to_string(bytes) + "-byte message into a " +
                                   std::to_string(in_.slotBytes()) + "-byte slot");
}

bool FifoLink::peerGone() {
  if (!pidFd_.valid()) return false;
  pollfd p{pidFd_.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

namespace {
long membarrier(int cmd) {
#ifdef SYS_membarrier
  return ::syscall(SYS_membarrier, cmd, 0, 0);
#else
  (void)cmd;
  errno = ENOSYS;
  return -1;
#endif
}

// The commands this kernel offers, asked once.
bool membarrierOffers(int cmd) {
  static const long cmds = membarrier(MEMBARRIER_CMD_QUERY);
  return cmds > 0 && (cmds & cmd);
}

bool registerForSleeperFences() {
  return membarrierOffers(MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
         membarrierOffers(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) &&
         membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
}
}  // namespace

bool fifoLightPublish() {
  // The kernel keeps the registration with the address space, as this static is kept: a fork
  // inherits both and an exec clears both.
  static const bool registered = registerForSleeperFences();
  return registered;
}

bool fifoSleeperFence() {
  // GLOBAL_EXPEDITED needs no registration of the caller, only of the processes it must reach.
  return membarrierOffers(MEMBARRIER_CMD_GLOBAL_EXPEDITED) && membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
}

void futexWait(std::atomic<uint32_t>* word, uint32_t expected, long ns) {
  // Not FUTEX_PRIVATE: the word may live in memory shared with another process.
  timespec ts{ns / 1'000'000'000, ns % 1'000'000'000};
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futexWakeAll(std::atomic<uint32_t>* word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

void FifoLink::wait(bool forMessage, long ns) {
  if (forMessage)
    in_.sleep(ns);
  else
    out_.sleep(ns);
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
