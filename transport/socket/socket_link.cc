#include "transport/socket/socket_link.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

namespace lockstep {

constexpr uint32_t kFrameMagic = 0x4644534cu;  // "LSDF"

SocketLink::SocketLink(Fd fd, int peerRank, std::string peerName, int slots, size_t slotBytes)
    : fd_(std::move(fd)),
      peer_(peerRank),
      peerName_(std::move(peerName)),
      slots_(slots),
      slotBytes_(slotBytes),
      sendBuf_(slots * slotBytes),
      recvBuf_(slots * slotBytes) {}

[[noreturn]] void SocketLink::peerFailed(const std::string& what) {
  throw RemoteError(peer_, "socket link to " + peerName_ + ": " + what);
}

void* SocketLink::trySendSlot() {
  if (sendPosted_ - sendDone_ >= slots_) progressSend();
  if (sendPosted_ - sendDone_ >= slots_) return nullptr;
  return sendBuf_.data() + (sendPosted_ % slots_) * slotBytes_;
}

void SocketLink::postSend(size_t bytes, const MessageTag& tag) {
  sendSizes_[sendPosted_ % slots_] = bytes;
  sendTags_[sendPosted_ % slots_] = tag;
  ++sendPosted_;
  progressSend();  // eager: small messages leave at once
}

Message SocketLink::tryRecv() {
  if (recvComplete_ == recvReleased_) progressRecv();
  if (recvComplete_ == recvReleased_) {
    if (closed_) peerFailed("connection closed by the peer (did it exit?)");
    return Message{};
  }
  uint64_t slot = recvReleased_ % slots_;
  return Message{recvBuf_.data() + slot * slotBytes_, recvSizes_[slot], recvTags_[slot]};
}

void SocketLink::wait(bool forMessage, long ns) {
  // Readable: bytes of the next frame arrived. Writable: the kernel took some of ours.
  pollfd p{fd_.get(), static_cast<short>(forMessage ? POLLIN : POLLOUT), 0};
  timespec ts{ns / 1'000'000'000, ns % 1'000'000'000};
  ::ppoll(&p, 1, &ts, nullptr);
}

bool SocketLink::progress() {
  progressSend();
  progressRecv();
  return sendDone_ == sendPosted_;
}

void SocketLink::progressSend() {
  while (sendDone_ < sendPosted_) {
    uint64_t slot = sendDone_ % slots_;
    if (sendOffset_ == 0)
      sendFrame_ = Frame{kFrameMagic, static_cast<uint32_t>(sendDone_), sendSizes_[slot], sendTags_[slot]};
    const size_t total = sizeof(Frame) + sendFrame_.bytes;
    iovec iov[2];
    int n = 0;
    if (sendOffset_ < sizeof(Frame)) {
      iov[n++] = {reinterpret_cast<char*>(&sendFrame_) + sendOffset_, sizeof(Frame) - sendOffset_};
      iov[n++] = {sendBuf_.data() + slot * slotBytes_, sendFrame_.bytes};
    } else {
      iov[n++] = {sendBuf_.data() + slot * slotBytes_ + (sendOffset_ - sizeof(Frame)), total - sendOffset_};
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    ssize_t rc = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (rc < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      if (errno == EPIPE || errno == ECONNRESET) peerFailed("connection lost while sending (did the peer exit?)");
      throw SystemError("sendmsg", errno, "sending to " + peerName_);
    }
    sendOffset_ += static_cast<size_t>(rc);
    if (sendOffset_ < total) return;
    sendOffset_ = 0;
    ++sendDone_;
  }
}

void SocketLink::progressRecv() {
  while (!closed_ && recvComplete_ - recvReleased_ < slots_) {
    uint64_t slot = recvComplete_ % slots_;
    char* dst;
    size_t want;
    if (recvOffset_ < sizeof(Frame)) {
      dst = reinterpret_cast<char*>(&recvFrame_) + recvOffset_;
      want = sizeof(Frame) - recvOffset_;
    } else {
      dst = recvBuf_.data() + slot * slotBytes_ + (recvOffset_ - sizeof(Frame));
      want = sizeof(Frame) + recvFrame_.bytes - recvOffset_;
    }
    ssize_t rc = want ? ::recv(fd_.get(), dst, want, MSG_DONTWAIT) : 0;
    if (want && rc == 0) {
      closed_ = true;  // reported when someone waits for this peer's data
      return;
    }
    if (rc < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      if (errno == ECONNRESET) {
        closed_ = true;
        return;
      }
      throw SystemError("recv", errno, "receiving from " + peerName_);
    }
    bool hadHeader = recvOffset_ >= sizeof(Frame);
    recvOffset_ += static_cast<size_t>(rc);
    if (!hadHeader && recvOffset_ == sizeof(Frame)) {
      // The header is the peer's word: check it before reading the payload it announces.
      if (recvFrame_.magic != kFrameMagic) peerFailed("malformed frame (bad magic)");
      if (recvFrame_.seq != static_cast<uint32_t>(recvComplete_)) peerFailed("frame out of sequence");
      if (recvFrame_.bytes > slotBytes_) {
        peerFailed("frame of " + std::to_string(recvFrame_.bytes) + " bytes exceeds the " + std::to_string(slotBytes_) +
                   "-byte slot");
      }
    }
    if (recvOffset_ >= sizeof(Frame) && recvOffset_ == sizeof(Frame) + recvFrame_.bytes) {
      recvSizes_[slot] = recvFrame_.bytes;
      recvTags_[slot] = recvFrame_.tag;
      ++recvComplete_;
      recvOffset_ = 0;
    }
  }
}

}  // namespace lockstep
