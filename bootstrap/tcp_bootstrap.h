// The TCP bootstrap: rendezvous at the root, then a ring of persistent connections for allGather,
// plus short-lived authenticated connections for point-to-point messages.
#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/handshake.h"
#include "bootstrap/unique_id.h"
#include "src/core/logging.h"
#include "src/net/socket.h"

namespace lockstep {

class TcpBootstrap : public Bootstrap {
 public:
  // Collective: returns once this rank is connected into the ring and knows every rank's address.
  // `local` is the address (port ignored) this rank listens on for its peers. `interrupt` is
  // setInterrupt's, from the start: called every 100 ms of its waits, it ends them by throwing
  // (a split's parent that knows a member died).
  TcpBootstrap(const UniqueIdInfo& id, uint64_t commId, int rank, int nranks, const NetAddr& local,
               std::chrono::milliseconds timeout, std::function<void()> interrupt = nullptr);

  int rank() const override { return rank_; }
  int size() const override { return nranks_; }
  void allGather(void* data, size_t bytes) override;
  void send(int peer, int tag, const void* data, size_t bytes) override;
  void recv(int peer, int tag, void* data, size_t bytes) override;
  void barrier() override;
  void setInterrupt(std::function<void()> check) override { interrupt_ = std::move(check); }
  // Connects to the peer's listener, which is up from before the rendezvous until its
  // communicator is gone: refused means gone. A connection made is a probe message, which the
  // peer drops unread.
  bool peerListening(int peer) override;
  [[noreturn]] void failSetup(std::exception_ptr error, bool heard) override;
  Deadline stepDeadline(std::chrono::milliseconds) const override { return deadline(); }
  // Ends the setup deadline, and drops the listener's connections that have not proved the
  // secret: strangers' silent connections, queued during setup, held a descriptor each (up to
  // kMaxIncoming) for the communicator's life, since nothing serves the listener after setup
  // until a split or a report (helper-77).
  void endSetup() override;
  // How often waits of setup probe the peer they wait for.
  static constexpr std::chrono::milliseconds kProbeEvery{250};

  NetAddr listenAddress() const { return peers_[rank_]; }
  // For tests: connections this rank's listener accepted (the ring predecessor, and one per
  // point-to-point message), so the cost of setup can be counted.
  int64_t acceptedConnections() const { return accepted_; }
  // For tests: connections the listener holds, not yet finished with; bytes of unclaimed messages.
  size_t pendingConnections() const { return incoming_.size(); }
  size_t bufferedBytes() const;
  // Largest point-to-point message: an unexpected message is buffered, so its size is capped.
  static constexpr size_t kMaxMessageBytes = 1 << 20;
  // What unclaimed messages (stashed, and announced by connections still arriving) may hold in
  // all, and how many may be stashed: a peer sending messages nobody receives grew a rank's
  // memory without bound (helper-77). Setup's own messages are a few hundred bytes per peer.
  static constexpr size_t kMaxBufferedBytes = 16 << 20;
  size_t maxStashed() const { return 1024 + 16 * static_cast<size_t>(nranks_); }

 private:
  struct Stashed {
    int peer;
    int tag;
    std::vector<char> data;
  };
  // What a probe of a peer's listener found: it took the probe, it refused it (gone), or neither
  // (slow, reset: not known to be gone).
  enum class Probe { kAnswered, kGone, kUnknown };
  Probe probe(int peer);
  // A whole timeout for a wait, but no later than the end of setup: LOCKSTEP_TIMEOUT after the
  // rendezvous (which itself waits up to LOCKSTEP_TIMEOUT for every rank to arrive), until
  // endSetup(). Each stage's own timeout let a slow peer stretch setup to six of them.
  Deadline deadline() const {
    const Deadline own = Deadline::after(timeout_);
    return setupUntil_ ? own.earlier(*setupUntil_) : own;
  }
  void rendezvous(const UniqueIdInfo& id, Deadline deadline);
  // Serves the listener until done() holds: the ring predecessor's connection, or point-to-point
  // messages (stashed). Connections are served concurrently; bad ones are logged and dropped.
  void serveUntil(Deadline deadline, const std::function<bool()>& done);
  // One pass: waits up to timeoutMs for something to happen, then moves every connection on.
  void serveOnce(int timeoutMs);
  // Until fd is readable or the deadline passes (the read that follows then times out), asking
  // interrupt_ every 100 ms.
  void awaitReadable(int fd, Deadline deadline);
  // The tag of peerListening()'s message (no user of send() has a negative tag).
  static constexpr int32_t kProbeTag = -1;
  // The tag of a failure report: a rank whose allGather failed tells its ring neighbours why
  // before it closes, so a neighbour, finding the ring connection closed, names the rank that
  // failed first instead of the one that only followed it.
  static constexpr int32_t kReportTag = -2;
  // How long a rank that blames a ring neighbour waits for that neighbour's reports.
  static constexpr std::chrono::milliseconds kReportGrace{300};
  // How long one report may take to leave (a connection and a few hundred bytes); a neighbour
  // that did not take one in time is sent no more (noReports_).
  static constexpr std::chrono::milliseconds kReportSendLimit{100};
  struct Report {
    int32_t code;       // the finder's lockstepResult_t
    int32_t culprit;    // the rank it blamed
    int32_t finder;     // the rank that found it
    std::string words;  // the finder's message
  };
  // Best effort, to every rank of `to` at once, within kReportSendLimit: a rank may be gone or
  // failing too. Ranks a report could not reach are sent no more (noReports_). Out of
  // descriptors, it gives up reserve_ and sends on the connections it can open, one freeing
  // the next.
  void sendReport(const Report& r, const std::vector<int>& to);
  // This rank's own failure, if a SystemError (out of descriptors, threads, memory), told once
  // (toldAll_) to every rank whose address it knows, as their culprit, before it unwinds: told
  // nothing, they found its listener gone and blamed it as a rank that had exited (at 64 ranks
  // under a limit of 100 descriptors, 37 of them: helper-99).
  void tellOwnShortage(const Error& e);
  // The reports heard in kReportGrace from the rank `from` (-1: from any), in order, each passed
  // on to the rank `onward` (-1: to none) as it comes.
  std::vector<Report> awaitReports(int from, int onward);
  // The root one of `heard`: a report whose culprit reported nothing itself (see the .cc).
  static std::optional<Report> rootReport(const std::vector<Report>& heard);
  // What `r` says, as the error to throw: "<prefix>rank F (address) reports: <its words>".
  [[noreturn]] void throwReported(const Report& r, const std::string& prefix) const;
  // fail(), then: tells both neighbours, closes the ring, and where the neighbour `peer` it
  // blames reported, says what it reported (a relay keeps the finder's words, not a chain of
  // "reports:").
  [[noreturn]] void failRelayed(const std::exception& e, int peer, const std::string& doing);
  struct P2PHeader {
    int32_t tag;
    uint32_t reserved;
    uint64_t bytes;
  };
  // A point-to-point message as the listener reads it: hello, header, payload.
  std::vector<char> p2pMessage(int32_t tag, const void* data, size_t bytes) const;
  struct Incoming {
    Fd fd;
    Clock::time_point since;
    size_t got = 0;  // bytes of hello + header + payload received
    Hello hello{};
    P2PHeader header{};
    std::vector<char> payload;
  };
  // Reads what has arrived; false once the connection is finished with (done, bad or closed).
  bool advance(Incoming& c);
  [[noreturn]] void fail(const std::exception& e, int peer, const std::string& doing);
  // The error for a peer that peerListening() found gone while this rank waited `waitedFor`.
  RemoteError goneError(int peer, const std::string& waitedFor) const;

  Secret secret_;
  uint64_t commId_;
  int rank_, nranks_;
  std::chrono::milliseconds timeout_;
  Fd listen_, next_, prev_;
  std::vector<NetAddr> peers_;
  std::vector<Stashed> stash_;
  std::set<int> noReports_;  // ranks a report could not reach
  // A descriptor held for a report of this rank's own shortage of them (sendReport): without it
  // a rank out of descriptors in setup could open no connection to say so, and its peers blamed
  // it as one that had gone (helper-99).
  Fd reserve_;
  bool toldAll_ = false;              // a report to every rank went out (once per bootstrap)
  std::optional<Report> failedWith_;  // what failRelayed last failed with, as a report
  std::list<Incoming> incoming_;
  std::optional<Deadline> setupUntil_;  // deadline(), until endSetup()
  std::function<void()> interrupt_;     // setInterrupt
  WarnLimiter strangers_;               // anyone may connect to the listener: its warnings are rate-limited
  int64_t accepted_ = 0;
};

}  // namespace lockstep
