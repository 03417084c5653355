// The transport interface: one Transport per kind (inproc, shm, socket), one Link per peer.
//
// A Link moves whole messages of at most slotBytes in order, in both directions, with credit-based
// flow control: a sender gets a slot only when the receiver has released one, so nothing is ever
// written where the receiver is still reading. Sends hand out the slot itself so the executor can
// reduce straight into it, and receives hand out the peer's slot so it can reduce straight out of
// it (for shm, the peer's memory; no extra copy).
//
// Everything is non-blocking: try, and come back later. The executor owns waiting (backoff and
// deadlines), so no transport can hang the library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/unique_id.h"
#include "src/core/config.h"
#include "src/net/socket.h"
#include "src/topo/peer_info.h"

namespace lockstep {

// 24 opaque bytes that travel with every message. The transport only carries them; the executor
// puts the op's fingerprint there so that a receiver can tell when ranks disagree about the op.
struct MessageTag {
  uint64_t words[3] = {0, 0, 0};
  bool operator==(const MessageTag& o) const {
    return words[0] == o.words[0] && words[1] == o.words[1] && words[2] == o.words[2];
  }
};

struct Message {
  const void* data = nullptr;  // nullptr: nothing has arrived yet
  size_t bytes = 0;            // checked by the caller against what the schedule expects
  MessageTag tag;              // the sender's word, checked by the caller
};

class Link {
 public:
  virtual ~Link() = default;
  // A writable slot of at least slotBytes, or nullptr while the receiver holds every slot.
  virtual void* trySendSlot() = 0;
  // Posts the slot returned by the last trySendSlot() carrying `bytes` bytes and `tag`.
  virtual void postSend(size_t bytes, const MessageTag& tag) = 0;
  // The next message from the peer, in order, or data == nullptr.
  virtual Message tryRecv() = 0;
  // Gives the message returned by tryRecv() back to the sender.
  virtual void releaseRecv() = 0;
  // Moves bytes for transports that need it (sockets). True when every posted send has left
  // this process. Throws RemoteError if the peer is gone or sends malformed data.
  virtual bool progress() = 0;
  // True once the peer process is known to have exited. Messages it posted before that may still
  // be waiting in tryRecv(): a dead peer is only an error for what it can no longer deliver.
  virtual bool peerGone() = 0;
  // True if whatever the peer posted is within this end's reach once posted (shared memory, a
  // thread's FIFO): a peer that left the communicator then has nothing more on the way, and its
  // goodbye (the watchdog's, on another connection) ends the wait. False for streams (sockets),
  // whose bytes may still be in flight, retransmitted, after the goodbye has arrived; their end
  // shows in peerGone() once the last byte is read.
  virtual bool deliveredWhenPosted() const { return true; }
  // Sending by reference, for links whose bytes the kernel copies anyway (sockets): the message
  // is read from the caller's memory when it leaves, not copied into the slot first. The
  // executor still takes a slot (the credit) with trySendSlot() before postSendRef().
  virtual bool sendsByReference() const { return false; }
  // Posts `bytes` at `data` with `tag`; returns a ticket for settleRef().
  virtual uint64_t postSendRef(const void* data, size_t bytes, const MessageTag& tag);
  // True once message `ticket` no longer reads the caller's memory: it has left, or `detach` was
  // set and what had not left was copied into its slot (before the caller overwrites the memory).
  virtual bool settleRef(uint64_t ticket, bool detach);
  // Blocks for at most `ns` nanoseconds, returning early when the peer may have posted a message
  // (forMessage) or freed a slot / taken bytes (otherwise): how the executor sleeps when nothing
  // can move. Spurious returns are fine; the caller checks again.
  virtual void wait(bool forMessage, long ns);
  // Why this link may be what holds a timed-out call up, as far as this end can see (a socket
  // whose sent bytes the network keeps dropping), or "": added to the timeout's message.
  virtual std::string stallNote() const { return ""; }
};

// Everything a transport may use while connecting.
struct TransportContext {
  const Config& config;
  Bootstrap& bootstrap;
  const std::vector<PeerInfo>& peers;  // indexed by rank
  int rank;
  uint64_t commId;
  Secret secret;
  NetAddr localAddr;  // where socket listeners bind (port chosen by the kernel)
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;
  virtual bool canConnect(const PeerInfo& self, const PeerInfo& peer) const = 0;
  // Collective: every rank calls it, in the same transport order, with the peers it picked this
  // transport for (possibly none). Returns one Link per peer, in the same order.
  virtual std::vector<std::unique_ptr<Link>> connect(const std::vector<int>& peers) = 0;
};

std::unique_ptr<Transport> makeInprocTransport(const TransportContext& ctx);
// FIFOs inproc setups have registered and not yet handed over, process-wide (0 between setups).
size_t inprocFifosRegistered();
std::unique_ptr<Transport> makeShmTransport(const TransportContext& ctx);
std::unique_ptr<Transport> makeSocketTransport(const TransportContext& ctx);

}  // namespace lockstep
