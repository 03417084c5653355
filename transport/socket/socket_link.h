// A Link over one TCP connection. Each message travels as a frame {magic, sequence, length}
// followed by the payload; the receiver checks all three before trusting a byte, and reads the
// payload straight into one of its own pre-allocated slots, so a peer can never make it allocate.
#pragma once

#include <string>
#include <vector>

#include "transport/fifo.h"
#include "transport/transport.h"

namespace lockstep {

class SocketLink : public Link {
 public:
  SocketLink(Fd fd, int peerRank, std::string peerName, int slots, size_t slotBytes);

  void* trySendSlot() override;
  void postSend(size_t bytes, const MessageTag& tag) override;
  Message tryRecv() override;
  void releaseRecv() override { ++recvReleased_; }
  bool progress() override;
  bool peerGone() override { return closed_; }
  void wait(bool forMessage, long ns) override;

 private:
  struct Frame {
    uint32_t magic;
    uint32_t seq;
    uint64_t bytes;
    MessageTag tag;
  };
  void progressSend();
  void progressRecv();
  [[noreturn]] void peerFailed(const std::string& what);

  Fd fd_;
  int peer_;
  std::string peerName_;
  uint64_t slots_, slotBytes_;
  std::vector<char> sendBuf_, recvBuf_;  // slots x slotBytes each, pre-faulted

  uint64_t sendPosted_ = 0, sendDone_ = 0;  // frames posted / fully handed to the kernel
  size_t sendSizes_[kMaxSlots] = {};
  MessageTag sendTags_[kMaxSlots];
  Frame sendFrame_{};
  size_t sendOffset_ = 0;  // bytes of the current frame (header + payload) written

  uint64_t recvComplete_ = 0, recvReleased_ = 0;
  size_t recvSizes_[kMaxSlots] = {};
  MessageTag recvTags_[kMaxSlots];
  Frame recvFrame_{};
  size_t recvOffset_ = 0;  // bytes of the current frame read
  bool closed_ = false;
};

}  // namespace lockstep
