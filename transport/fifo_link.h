// A Link made of two FIFOs in shared memory: the one the peer created for us to write into, and
// the one we created for the peer. Used by shm (between processes) and inproc (between threads).
#pragma once

#include <memory>
#include <string>

#include "src/net/socket.h"
#include "transport/fifo.h"
#include "transport/transport.h"

namespace lockstep {

class FifoLink : public Link {
 public:
  // Both FIFOs have `slots` slots of `slotBytes`. `keepAlive` owns their memory. `peerPidFd`
  // (may be invalid) becomes readable when the peer process exits.
  FifoLink(FifoHeader* out, FifoHeader* in, int slots, size_t slotBytes, std::shared_ptr<void> keepAlive, Fd peerPidFd,
           std::string peerName, int peerRank)
      : out_(out, slots, slotBytes),
        in_(in, slots, slotBytes),
        keepAlive_(std::move(keepAlive)),
        pidFd_(std::move(peerPidFd)),
        peerName_(std::move(peerName)),
        peerRank_(peerRank) {}

  void* trySendSlot() override { return out_.trySlot(); }
  void postSend(size_t bytes, const MessageTag& tag) override { out_.post(bytes, tag); }
  Message tryRecv() override {
    Message m;
    m.data = in_.tryRecv(&m.bytes, &m.tag);
    if (!m.data) return Message{};
    if (m.bytes > in_.slotBytes()) oversized(m.bytes);
    return m;
  }
  void releaseRecv() override { in_.release(); }
  bool progress() override { return true; }
  bool peerGone() override;
  void wait(bool forMessage, long ns) override;

 private:
  [[noreturn]] void oversized(size_t bytes) const;  // out of line: the poll stays short

  FifoSender out_;
  FifoReceiver in_;
  std::shared_ptr<void> keepAlive_;
  Fd pidFd_;
  std::string peerName_;
  int peerRank_;
};

// A descriptor that polls readable once process `pid` has exited (pidfd_open); invalid if the
// kernel lacks pidfds.
Fd openPidFd(int64_t pid);

}  // namespace lockstep
