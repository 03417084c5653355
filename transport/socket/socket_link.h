// A Link over one or more TCP connections to the same peer (LOCKSTEP_SOCKET_NSTREAMS). Each message
// travels as a frame {magic, sequence, length, tag} followed by the payload; the receiver checks the
// header before trusting a byte, and reads the payload straight into one of its own pre-allocated
// slots, so a peer can never make it allocate.
//
// With K streams, frame f travels on stream f % K. Each stream moves its own frames independently
// (a slow or full connection does not hold the others back), and both ends know which stream
// carries which frame, so order is restored without any extra header: frame f lands in slot
// f % slots and is delivered when every earlier frame has arrived.
//
// Sends may be by reference (sendsByReference): the payload then goes to the kernel straight from
// the executor's buffer, which saves a copy of every byte into the slot (the kernel copies it
// anyway). The frame still takes its slot, which holds its copy if the executor must overwrite
// the buffer before the frame has left (settleRef with detach).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "transport/fifo.h"
#include "transport/transport.h"

namespace lockstep {

class SocketLink : public Link {
 public:
  SocketLink(std::vector<Fd> streams, int peerRank, std::string peerName, int slots, size_t slotBytes);
  SocketLink(Fd fd, int peerRank, std::string peerName, int slots, size_t slotBytes);

  void* trySendSlot() override;
  void postSend(size_t bytes, const MessageTag& tag) override;
  Message tryRecv() override;
  void releaseRecv() override { ++recvReleased_; }
  bool progress() override;
  // Gone for what this rank still needs: the stream that carries the next frame it receives has
  // ended, or the peer is closing with frames of ours not yet handed over. A peer that exits
  // after its last op closes its streams one by one, and one with nothing left on it may end
  // while another still delivers that op's last frames.
  bool peerGone() override {
    return streams_[recvComplete_ % streams_.size()].closed || (closed_ && sendDone_ < sendPosted_);
  }
  void wait(bool forMessage, long ns) override;
  std::string stallNote() const override;
  bool sendsByReference() const override { return true; }
  bool deliveredWhenPosted() const override { return false; }  // bytes may still be in flight
  uint64_t postSendRef(const void* data, size_t bytes, const MessageTag& tag) override;
  bool settleRef(uint64_t ticket, bool detach) override;

 private:
  struct Frame {
    uint32_t magic;
    uint32_t seq;
    uint64_t bytes;
    MessageTag tag;
  };
  // One connection's progress through its share of the frames (f, f + K, f + 2K, ...).
  struct Stream {
    Fd fd;
    uint64_t sendFrame, recvFrame;          // the next frame this stream sends / receives
    size_t sendOffset = 0, recvOffset = 0;  // bytes of that frame (header + payload) moved so far
    Frame sendHeader{}, recvHeader{};
    bool closed = false;  // the peer closed this connection (its frames before that still count)
    bool reset = false;   // ... by a reset, not an orderly close
  };
  void progressSend();
  void progressRecv();
  // True when the stream's current frame went out whole.
  bool sendOn(Stream& s);
  // True when the stream's current frame came in whole.
  bool recvOn(Stream& s);
  [[noreturn]] void peerFailed(const std::string& what);
  static std::string networkFailure(int err, const char* doing);

  std::vector<Stream> streams_;
  int peer_;
  std::string peerName_;
  uint64_t slots_, slotBytes_;
  // slots x slotBytes each, left unwritten: a page costs memory from the first frame that uses
  // it. A rank of a large job has a link to every peer, and the algorithms use a few of them
  // (the ring two): pre-faulted, these were 4 MiB per socket peer, 4 GiB at 1024 ranks
  // (helper-99). The steady state still faults nothing: its frames reuse the slots' pages.
  std::unique_ptr<char[]> sendBuf_, recvBuf_;

  // Frames are numbered 0, 1, ... in posting order; slot = frame % slots. sentFrame_ and
  // recvdFrame_ hold frame + 1 of the last frame done in each slot, so the in-order prefix can
  // advance over frames that finished out of order on different streams.
  uint64_t sendPosted_ = 0, sendDone_ = 0;  // frames posted / fully handed to the kernel, in order
  size_t sendSizes_[kMaxSlots] = {};
  MessageTag sendTags_[kMaxSlots];
  const char* sendRefs_[kMaxSlots] = {};  // a by-reference frame's payload (nullptr: in the slot)
  uint64_t sentFrame_[kMaxSlots] = {};

  uint64_t recvComplete_ = 0, recvReleased_ = 0;  // frames received in order / given back
  size_t recvSizes_[kMaxSlots] = {};
  MessageTag recvTags_[kMaxSlots];
  uint64_t recvdFrame_[kMaxSlots] = {};
  bool closed_ = false;
};

}  // namespace lockstep
