#include "transport/socket/socket_link.h"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

namespace lockstep {

constexpr uint32_t kFrameMagic = 0x4644534cu;  // "LSDF"
constexpr size_t kMaxStreams = 16;

SocketLink::SocketLink(std::vector<Fd> streams, int peerRank, std::string peerName, int slots, size_t slotBytes)
    : peer_(peerRank),
      peerName_(std::move(peerName)),
      slots_(slots),
      slotBytes_(slotBytes),
      sendBuf_(std::make_unique_for_overwrite<char[]>(slots * slotBytes)),
      recvBuf_(std::make_unique_for_overwrite<char[]>(slots * slotBytes)) {
  if (streams.empty() || streams.size() > kMaxStreams) {
    throw InvalidArgument("a socket link needs 1 to " + std::to_string(kMaxStreams) + " streams");
  }
  for (size_t i = 0; i < streams.size(); ++i) streams_.push_back(Stream{std::move(streams[i]), i, i});
}

SocketLink::SocketLink(Fd fd, int peerRank, std::string peerName, int slots, size_t slotBytes)
    : SocketLink(
          [&] {
            std::vector<Fd> v;
            v.push_back(std::move(fd));
            return v;
          }(),
          peerRank, std::move(peerName), slots, slotBytes) {}

// A remote error, not a system error naming no one: the communicator then listens a moment for
// a root cause, and the message names the peer (src/core/errors.h, isNetworkFailure).
std::string SocketLink::networkFailure(int err, const char* doing) {
  return "the connection failed while " + std::string(doing) + ": " + std::strerror(err) + " (errno " +
         std::to_string(err) + "): " + kNetworkFailed;
}

// A connection whose sent bytes sit unacknowledged while TCP retransmits them: the network drops
// what this rank sends the peer (a cut or lossy path; an MTU black hole, where small packets such
// as the heartbeats pass and full-sized ones do not). The peer, waiting for those bytes, can only
// say it is waiting: this end is where the stall shows.
std::string SocketLink::stallNote() const {
  // This host's own link down: the cause, whatever the connection shows. The ranks of a host
  // whose link was cut said only that the others were silent, or that the network dropped what
  // they sent (helper-91).
  for (const Stream& s : streams_) {
    if (!s.fd.valid()) continue;
    if (std::string down = localInterfaceDown(s.fd.get()); !down.empty())
      return down + ": nothing this rank sends leaves it";  // the same for every peer: said once
    break;                                                  // the streams of a pair leave from one address
  }
  for (const Stream& s : streams_) {
    tcp_info info{};
    socklen_t len = sizeof(info);
    int queued = 0;
    if (!s.fd.valid() || ::getsockopt(s.fd.get(), IPPROTO_TCP, TCP_INFO, &info, &len) != 0 ||
        ::ioctl(s.fd.get(), SIOCOUTQ, &queued) != 0) {
      continue;
    }
    // Two timeouts in a row without progress, at least: one can pass on a working, lossy path.
    if (queued <= 0 || info.tcpi_retransmits < 2) continue;
    // Timeouts that never sent a retransmission: the bytes cannot leave this host at all (its
    // interface went down, or its route to the peer went away). Said as the network dropping
    // them, the ranks of the host whose link was cut blamed the healthy one (helper-91).
    if (info.tcpi_total_retrans == 0) {
      return "the connection to " + peerName_ + " has " + std::to_string(queued) + " bytes unacknowledged, and TCP's " +
             std::to_string(info.tcpi_retransmits) +
             " attempt(s) to resend them since the last progress sent nothing: they cannot leave this host (is its "
             "interface towards " +
             peerName_ + " down, or its route there gone?)";
    }
    return "the connection to " + peerName_ + " has " + std::to_string(queued) +
           " bytes unacknowledged, and TCP has retransmitted them " + std::to_string(info.tcpi_retransmits) +
           " time(s) since the last progress (" + std::to_string(info.tcpi_total_retrans) +
           " retransmissions in all): the network drops what this rank sends " + peerName_ +
           " (a broken path, or one that drops full-sized packets: an MTU mismatch?)";
  }
  return "";
}

[[noreturn]] void SocketLink::peerFailed(const std::string& what) {
  throw RemoteError(peer_, "socket link to " + peerName_ + ": " + what);
}

void* SocketLink::trySendSlot() {
  if (sendPosted_ - sendDone_ >= slots_) progressSend();
  if (sendPosted_ - sendDone_ >= slots_) return nullptr;
  return sendBuf_.get() + (sendPosted_ % slots_) * slotBytes_;
}

void SocketLink::postSend(size_t bytes, const MessageTag& tag) {
  sendSizes_[sendPosted_ % slots_] = bytes;
  sendTags_[sendPosted_ % slots_] = tag;
  sendRefs_[sendPosted_ % slots_] = nullptr;
  ++sendPosted_;
  progressSend();  // eager: small messages leave at once
}

uint64_t SocketLink::postSendRef(const void* data, size_t bytes, const MessageTag& tag) {
  const uint64_t frame = sendPosted_;
  sendSizes_[frame % slots_] = bytes;
  sendTags_[frame % slots_] = tag;
  sendRefs_[frame % slots_] = static_cast<const char*>(data);
  ++sendPosted_;
  progressSend();
  return frame;
}

bool SocketLink::settleRef(uint64_t frame, bool detach) {
  const uint64_t slot = frame % slots_;
  // Gone whole: in the in-order prefix, or finished early on its own stream (its slot is not
  // reused before the prefix passes it).
  if (frame < sendDone_ || sentFrame_[slot] == frame + 1) return true;
  if (!detach) return false;
  // Not yet (wholly) in the kernel: what is left leaves from the slot. Bytes already sent are
  // the same bytes, so a partly sent frame carries on at its offset.
  if (sendRefs_[slot]) std::memcpy(sendBuf_.get() + slot * slotBytes_, sendRefs_[slot], sendSizes_[slot]);
  sendRefs_[slot] = nullptr;
  return true;
}

Message SocketLink::tryRecv() {
  if (recvComplete_ == recvReleased_) progressRecv();
  if (recvComplete_ == recvReleased_) {
    // Only the stream that carries the next frame matters: the others may have closed after
    // delivering everything they had.
    const Stream& next = streams_[recvComplete_ % streams_.size()];
    if (next.closed) {
      // A reset is not a close: a live peer's connection can be reset by something between the
      // hosts (a firewall's idle timeout, a middlebox, `ss -K`), and "did it exit?" misled there.
      peerFailed(next.reset ? "connection reset (the peer's process ended abruptly, or something between the hosts "
                              "reset the connection: a firewall or middlebox?)"
                            : "connection closed by the peer (did it exit?)");
    }
    return Message{};
  }
  uint64_t slot = recvReleased_ % slots_;
  return Message{recvBuf_.get() + slot * slotBytes_, recvSizes_[slot], recvTags_[slot]};
}

bool SocketLink::progress() {
  progressSend();
  progressRecv();
  return sendDone_ == sendPosted_;
}

void SocketLink::wait(bool forMessage, long ns) {
  // Wakes for whatever lets this link move, in either direction, not only the one the caller
  // needs: bytes arrived that fit a free slot (POLLIN), or the kernel took some of ours (POLLOUT).
  // Waiting for a send slot while not reading would let both ends of a full connection sleep on
  // POLLOUT until their timeouts: that stalled loopback runs at a third of their speed.
  (void)forMessage;
  pollfd p[kMaxStreams];
  nfds_t n = 0;
  for (const Stream& s : streams_) {
    short events = 0;
    if (!s.closed && s.recvFrame - recvReleased_ < slots_) events |= POLLIN;
    if (s.sendFrame < sendPosted_) events |= POLLOUT;
    if (events) p[n++] = pollfd{s.fd.get(), events, 0};
  }
  timespec ts{ns / 1'000'000'000, ns % 1'000'000'000};
  ::ppoll(n ? p : nullptr, n, &ts, nullptr);
}

bool SocketLink::sendOn(Stream& s) {
  const uint64_t slot = s.sendFrame % slots_;
  if (s.sendOffset == 0)
    s.sendHeader = Frame{kFrameMagic, static_cast<uint32_t>(s.sendFrame), sendSizes_[slot], sendTags_[slot]};
  const size_t total = sizeof(Frame) + s.sendHeader.bytes;
  char* payload = sendRefs_[slot] ? const_cast<char*>(sendRefs_[slot]) : sendBuf_.get() + slot * slotBytes_;
  while (s.sendOffset < total) {
    iovec iov[2];
    int n = 0;
    if (s.sendOffset < sizeof(Frame)) {
      iov[n++] = {reinterpret_cast<char*>(&s.sendHeader) + s.sendOffset, sizeof(Frame) - s.sendOffset};
      iov[n++] = {payload, s.sendHeader.bytes};
    } else {
      iov[n++] = {payload + (s.sendOffset - sizeof(Frame)), total - s.sendOffset};
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    ssize_t rc = ::sendmsg(s.fd.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (rc < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
      if (errno == EPIPE || errno == ECONNRESET) peerFailed("connection lost while sending (did the peer exit?)");
      if (isNetworkFailure(errno)) peerFailed(networkFailure(errno, "sending"));
      throw SystemError("sendmsg", errno, "sending to " + peerName_);
    }
    s.sendOffset += static_cast<size_t>(rc);
  }
  s.sendOffset = 0;
  return true;
}

void SocketLink::progressSend() {
  const uint64_t k = streams_.size();
  for (Stream& s : streams_) {
    while (s.sendFrame < sendPosted_ && sendOn(s)) {
      sentFrame_[s.sendFrame % slots_] = s.sendFrame + 1;
      s.sendFrame += k;
    }
  }
  while (sendDone_ < sendPosted_ && sentFrame_[sendDone_ % slots_] == sendDone_ + 1) ++sendDone_;
}

bool SocketLink::recvOn(Stream& s) {
  const uint64_t slot = s.recvFrame % slots_;
  for (;;) {
    char* dst;
    size_t want;
    if (s.recvOffset < sizeof(Frame)) {
      dst = reinterpret_cast<char*>(&s.recvHeader) + s.recvOffset;
      want = sizeof(Frame) - s.recvOffset;
    } else {
      dst = recvBuf_.get() + slot * slotBytes_ + (s.recvOffset - sizeof(Frame));
      want = sizeof(Frame) + s.recvHeader.bytes - s.recvOffset;
    }
    if (want == 0) break;  // an empty payload: the header was the whole frame
    ssize_t rc = ::recv(s.fd.get(), dst, want, MSG_DONTWAIT);
    if (rc == 0) {
      s.closed = closed_ = true;  // reported when someone waits for this stream's frames
      return false;
    }
    if (rc < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
      if (errno == ECONNRESET) {
        s.closed = closed_ = s.reset = true;
        return false;
      }
      if (isNetworkFailure(errno)) peerFailed(networkFailure(errno, "receiving"));
      throw SystemError("recv", errno, "receiving from " + peerName_);
    }
    const bool hadHeader = s.recvOffset >= sizeof(Frame);
    s.recvOffset += static_cast<size_t>(rc);
    if (!hadHeader && s.recvOffset == sizeof(Frame)) {
      // The header is the peer's word: check it before reading the payload it announces.
      if (s.recvHeader.magic != kFrameMagic) peerFailed("malformed frame (bad magic)");
      if (s.recvHeader.seq != static_cast<uint32_t>(s.recvFrame)) peerFailed("frame out of sequence");
      if (s.recvHeader.bytes > slotBytes_) {
        peerFailed("frame of " + std::to_string(s.recvHeader.bytes) + " bytes exceeds the " +
                   std::to_string(slotBytes_) + "-byte slot");
      }
    }
    if (s.recvOffset >= sizeof(Frame) && s.recvOffset == sizeof(Frame) + s.recvHeader.bytes) break;
  }
  recvSizes_[slot] = s.recvHeader.bytes;
  recvTags_[slot] = s.recvHeader.tag;
  s.recvOffset = 0;
  return true;
}

void SocketLink::progressRecv() {
  const uint64_t k = streams_.size();
  for (Stream& s : streams_) {
    // A frame may only land in a slot the executor has given back.
    while (!s.closed && s.recvFrame - recvReleased_ < slots_ && recvOn(s)) {
      recvdFrame_[s.recvFrame % slots_] = s.recvFrame + 1;
      s.recvFrame += k;
    }
  }
  while (recvdFrame_[recvComplete_ % slots_] == recvComplete_ + 1) ++recvComplete_;
}

}  // namespace lockstep
