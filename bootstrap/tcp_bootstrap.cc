#include "bootstrap/tcp_bootstrap.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>

#include "bootstrap/handshake.h"
#include "bootstrap/root_service.h"
#include "src/core/logging.h"

namespace lockstep {
namespace {

// How long an incoming connection may take to deliver its hello and message before it is
// dropped, and how many may wait at once (the oldest goes first).
constexpr auto kHelloTimeout = std::chrono::seconds(10);
constexpr size_t kMaxIncoming = 256;

// Why a peer closed its connection, as far as this rank can tell, and what it can tell once the
// peer sent no report of an earlier failure in the grace (failRelayed): a rank that fails
// because another did reports it before it closes.
constexpr char kClosedByPeer[] = " (did it exit, or fail because a rank it waited for did?)";
constexpr char kClosedUnreported[] = " (it exited, or failed for a reason of its own: it reported no earlier failure)";

// Settles the doubt in `text` (kClosedByPeer) as no report came: false if it holds none.
bool settleClosedByPeer(std::string* text) {
  const size_t hedge = text->find(kClosedByPeer);
  if (hedge == std::string::npos) return false;
  text->replace(hedge, sizeof(kClosedByPeer) - 1, kClosedUnreported);
  return true;
}

// How long past its own deadline a rank the root has taken waits for the root's verdict.
constexpr auto kVerdictGrace = std::chrono::seconds(2);

}  // namespace

TcpBootstrap::TcpBootstrap(const UniqueIdInfo& id, uint64_t commId, int rank, int nranks, const NetAddr& local,
                           std::chrono::milliseconds timeout, std::function<void()> interrupt)
    : secret_(id.secret),
      commId_(commId),
      rank_(rank),
      nranks_(nranks),
      timeout_(timeout),
      interrupt_(std::move(interrupt)) {
  reserve_ = Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  NetAddr bind = local;
  bind.port = 0;
  listen_ = listenOn(bind);
  peers_.resize(nranks);
  peers_[rank] = localAddress(listen_.get());
  rendezvous(id, deadline());  // sets setupUntil_ once every rank has arrived
  allGather(peers_.data(), sizeof(NetAddr));
}

void TcpBootstrap::endSetup() {
  setupUntil_.reset();
  try {
    serveOnce(0);  // what has arrived is read first: a peer's message in flight is kept
  } catch (const Error&) {
    // Out of descriptors to accept with: nothing more to take, what is pending still goes.
  }
  for (auto it = incoming_.begin(); it != incoming_.end();) {
    it = it->got < sizeof(Hello) ? incoming_.erase(it) : std::next(it);
  }
}

size_t TcpBootstrap::bufferedBytes() const {
  size_t bytes = 0;
  for (const Stashed& s : stash_) bytes += s.data.size();
  for (const Incoming& c : incoming_) bytes += c.payload.size();
  return bytes;
}

[[noreturn]] void TcpBootstrap::fail(const std::exception& e, int peer, const std::string& doing) {
  std::string who = peer < 0               ? std::string("the root")
                    : peers_[peer].valid() ? "rank " + std::to_string(peer) + " (" + peers_[peer].str() + ")"
                                           : "rank " + std::to_string(peer);
  if (dynamic_cast<const ConnectionClosed*>(&e)) {
    // The root closes on strangers without a word: a rank whose secret differs (another
    // LOCKSTEP_SECRET, or LOCKSTEP_ROOT spelled differently) cannot be told apart from one whose
    // root left.
    throw RemoteError(peer,
                      "bootstrap: " + who + " closed the connection while " + doing +
                          (peer < 0 ? " (did it exit, run out of descriptors, or turn this rank away? its log says "
                                      "why; with LOCKSTEP_ROOT every rank must "
                                      "give the same host:port text and LOCKSTEP_SECRET, and be placed alike: all "
                                      "by the launcher, whose job id counts, or all by LOCKSTEP_RANK)"
                                    : kClosedByPeer));
  }
  if (dynamic_cast<const Timeout*>(&e)) {
    // What the last try met, where it says ("Network is unreachable" is this rank's route, not
    // the peer's silence).
    const std::string what = e.what();
    const size_t reason = what.find("timed out: ");
    throw Timeout("bootstrap: rank " + std::to_string(rank_) + " timed out after " + std::to_string(timeout_.count()) +
                  " ms " + doing + ": no answer from " + who +
                  (reason == std::string::npos ? "" : " (the last try: " + what.substr(reason + 11) + ")"));
  }
  if (auto* se = dynamic_cast<const SystemError*>(&e); se && se->err == ECONNREFUSED && peer >= 0) {
    // Its listener was up when it published its address, and stays up while the communicator
    // lives: refused means the process exited or gave up (and once cost the whole timeout).
    throw RemoteError(peer, "bootstrap: " + who + " refused the connection while " + doing +
                                " (its process exited, or failed during setup; or a firewall rejects the port)");
  }
  throw;
}

namespace {

// The ids whose rendezvous this process has completed: a second init from one of them is this
// program's mistake, which a refused connection alone cannot tell from a rank that came late.
std::mutex usedIdsMu;
std::set<uint64_t> usedIds;

}  // namespace

void TcpBootstrap::rendezvous(const UniqueIdInfo& id, Deadline dl) {
  Fd root;
  RootReply reply{};
  try {
    root = connectTo(id.root, dl, /*retryRefused=*/!id.rootListens);
  } catch (const SystemError& e) {
    if (e.err != ECONNREFUSED) throw;
    const std::string over = "bootstrap: the rendezvous at " + id.root.str() + " refused the connection: ";
    bool mine;
    {
      std::lock_guard<std::mutex> lock(usedIdsMu);
      mine = usedIds.count(commId_) != 0;
    }
    if (mine) {
      throw InvalidUsage(over +
                         "this process made a communicator from this id already, and an id serves one "
                         "(its rendezvous is over): make a new id, or use lockstepCommSplit, for another");
    }
    // Not this process's own misuse: a rank that came after the deadline did nothing wrong but
    // be late (it was once told it had reused the id: helper-83).
    throw RemoteError(-1, over +
                              "its rendezvous is over. Either it timed out before this rank came (it waits "
                              "LOCKSTEP_TIMEOUT of the process that made the id, from the first rank's arrival), or "
                              "the process that made the id has exited, or another process used the id for a "
                              "communicator of its own");
  } catch (const Error& e) {
    fail(e, -1, "waiting for the rendezvous at " + id.root.str());
  }
  try {
    const Hello h = makeHello(secret_, commId_, rank_, nranks_, Purpose::kRoot);
    char hello[kRootHelloBytes];
    std::memcpy(hello, &h, sizeof(h));
    std::memcpy(hello + sizeof(h), &peers_[rank_], sizeof(NetAddr));
    sendAll(root.get(), hello, sizeof(hello), dl);
    Hello answer;
    recvAll(root.get(), &answer, sizeof(answer), dl);
    std::string why = checkHello(answer, secret_, commId_, Purpose::kRoot, -1);
    if (!why.empty()) throw RemoteError(-1, "the rendezvous at " + id.root.str() + " answered badly: " + why);
    // The root has taken this rank: its verdict (who is missing, if the rendezvous times out)
    // comes when its own timeout ends, which started with the first rank's arrival, at or after
    // this rank's start. A grace past this rank's deadline lets the verdict arrive, rather than
    // blaming a root that is waiting for someone else.
    const Deadline verdict(dl.at() + kVerdictGrace);
    awaitReadable(root.get(), verdict);
    recvAll(root.get(), &reply, sizeof(reply), verdict);
  } catch (const RemoteError&) {
    throw;
  } catch (const Error& e) {
    fail(e, -1, "waiting for the rendezvous at " + id.root.str());
  }
  reply.message[sizeof(reply.message) - 1] = '\0';
  if (reply.status != lockstepSuccess && !isFailureCode(reply.status)) {
    throw RemoteError(-1, "the rendezvous at " + id.root.str() + " sent an invalid status");
  }
  if (reply.status != lockstepSuccess) {
    throw Error(static_cast<lockstepResult_t>(reply.status), std::string("rendezvous failed: ") + reply.message);
  }
  {
    std::lock_guard<std::mutex> lock(usedIdsMu);
    usedIds.insert(commId_);
  }
  // Every rank has arrived: the rest of setup, the ring first, has LOCKSTEP_TIMEOUT from now. The
  // wait above had its own, from this rank's start, which a rank that came early had spent: it
  // timed out waiting for its ring predecessor, though every rank had come in time (helper-79).
  setupUntil_ = Deadline::after(timeout_);
  dl = deadline();

  int next = (rank_ + 1) % nranks_, prev = (rank_ + nranks_ - 1) % nranks_;
  peers_[next] = reply.next;
  peers_[prev] = reply.prev;
  // Send our hello to the successor, then serve the predecessor, then read the successor's
  // answer: the other order would have every rank waiting on its successor at once. Each stage
  // blames the rank it waits on, and reports to its neighbours as the all-gather does: a rank
  // that failed on its successor's account closes on its predecessor, which would otherwise
  // blame it.
  try {
    next_ = connectTo(reply.next, dl, /*retryRefused=*/false);  // listening since it registered
    Hello hello = makeHello(secret_, commId_, rank_, nranks_, Purpose::kRing);
    sendAll(next_.get(), &hello, sizeof(hello), dl);
  } catch (const Error& e) {
    failRelayed(e, next, "connecting to its ring successor");
  }
  // Whether the predecessor's listener ever took a probe. Then it was up, and if it never
  // connected, either its dial of this rank's address got nowhere (an interface its host has no
  // route to; its own error names the address) or it is stopped or stuck (a stopped process's
  // listener still completes connections). Only a predecessor elsewhere can fail to reach this
  // rank's address, so only then is that asked.
  bool answered = false;
  const NetAddr& mine = peers_[rank_];
  const bool elsewhere = !peers_[prev].sameHost(mine) && !(peers_[prev].isLoopback() && mine.isLoopback());
  auto neverConnected = [&] {
    return "it answered (this rank reached it) but never connected to this rank at " + mine.str() +
           (elsewhere ? ": can its host reach " + mine.hostStr() +
                            "? (its own error says what its dial met; LOCKSTEP_SOCKET_IFNAME chooses this rank's "
                            "interface)"
                      : "");
  };
  try {
    Probe seen = Probe::kUnknown;
    Deadline nextProbe = Deadline::after(kProbeEvery);
    serveUntil(dl, [&] {
      if (prev_.valid()) return true;
      // A predecessor that failed (or died) before it connected never will. Gone counts after
      // one more pass: a connection it made before it left may just be arriving.
      if (seen == Probe::kGone) {
        // One elsewhere that was up, then left without connecting, most likely gave up dialling
        // this rank (its deadline came first when it started first).
        if (answered && elsewhere) {
          throw RemoteError(prev, "bootstrap: rank " + std::to_string(prev) + " (" + peers_[prev].str() +
                                      ") is gone while rank " + std::to_string(rank_) +
                                      " waited for it to connect as its ring predecessor; " + neverConnected());
        }
        throw goneError(prev, "for it to connect as its ring predecessor");
      }
      if (nextProbe.expired()) {
        seen = probe(prev);
        answered = answered || seen == Probe::kAnswered;
        nextProbe = Deadline::after(kProbeEvery);
      }
      return false;
    });
  } catch (const Timeout& e) {
    if (answered) {
      throw Timeout("bootstrap: rank " + std::to_string(rank_) + " timed out after " +
                    std::to_string(timeout_.count()) + " ms waiting for its ring predecessor, rank " +
                    std::to_string(prev) + " (" + peers_[prev].str() + "), to connect: " + neverConnected() +
                    (elsewhere ? " Or is it stopped or stuck?" : ": is it stopped or stuck?"));
    }
    failRelayed(e, prev, "waiting for its ring predecessor to connect");
  } catch (const Error& e) {
    failRelayed(e, prev, "waiting for its ring predecessor to connect");
  }
  Hello answer;
  try {
    awaitReadable(next_.get(), dl);
    recvAll(next_.get(), &answer, sizeof(answer), dl);
  } catch (const Error& e) {
    failRelayed(e, next, "waiting for its ring successor's answer");
  }
  std::string why = checkHello(answer, secret_, commId_, Purpose::kRing, nranks_);
  if (!why.empty() || answer.rank != next) {
    throw RemoteError(next, "bootstrap ring: bad answer from successor rank " + std::to_string(next) + ": " + why);
  }
}

void TcpBootstrap::awaitReadable(int fd, Deadline dl) {
  if (!interrupt_) return;  // the read's own wait
  for (;;) {
    interrupt_();
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, dl.remainingMs(100));
    if (rc > 0 || dl.expired()) return;
    if (rc < 0 && errno != EINTR) throw SystemError("poll", errno);
  }
}

void TcpBootstrap::serveUntil(Deadline dl, const std::function<bool()>& done) {
  while (!done()) {
    if (interrupt_) interrupt_();
    if (dl.expired()) throw Timeout("no connection arrived");
    serveOnce(dl.remainingMs(100));
  }
}

void TcpBootstrap::serveOnce(int timeoutMs) {
  std::vector<pollfd> fds{{listen_.get(), POLLIN, 0}};
  for (const Incoming& c : incoming_) fds.push_back({c.fd.get(), POLLIN, 0});
  int rc = ::poll(fds.data(), fds.size(), timeoutMs);
  if (rc < 0 && errno != EINTR) throw SystemError("poll", errno, "serving the bootstrap listener");
  if (fds[0].revents & POLLIN) {
    for (;;) {
      int shortage = 0;
      Fd fd = acceptReady(listen_.get(), &shortage);
      if (shortage && incoming_.empty()) {
        throw SystemError("accept4", shortage, "rank " + std::to_string(rank_) + " taking a bootstrap connection");
      }
      // Room is made only for a connection there is: out of descriptors, or one more taken.
      if (shortage || (fd.valid() && incoming_.size() >= kMaxIncoming)) {
        LS_WARN_LIMITED(strangers_, rank_, "bootstrap: too many pending connections; dropped the oldest");
        incoming_.pop_front();
      }
      if (!fd.valid()) break;
      ++accepted_;
      incoming_.emplace_back();
      incoming_.back().fd = std::move(fd);
      incoming_.back().since = Clock::now();
      // One whose bytes are all in (a peer's probe, a small message) is done with at once: a
      // burst of them must not push out a slower one still arriving.
      if (!advance(incoming_.back())) incoming_.pop_back();
    }
  }
  // Every pending connection moves on as far as its bytes allow: a slow or silent client holds
  // nothing up, and is dropped after kHelloTimeout.
  auto now = Clock::now();
  for (auto it = incoming_.begin(); it != incoming_.end();) {
    bool keep = advance(*it);
    if (keep && now - it->since > kHelloTimeout) {
      LS_WARN_LIMITED(strangers_, rank_, "bootstrap: dropped a connection that did not finish its message in time");
      keep = false;
    }
    it = keep ? std::next(it) : incoming_.erase(it);
  }
}

bool TcpBootstrap::advance(Incoming& c) {
  for (;;) {
    char* dst;
    size_t want;
    if (c.got < sizeof(Hello)) {
      dst = reinterpret_cast<char*>(&c.hello) + c.got, want = sizeof(Hello) - c.got;
    } else if (c.got < sizeof(Hello) + sizeof(P2PHeader)) {
      size_t off = c.got - sizeof(Hello);
      dst = reinterpret_cast<char*>(&c.header) + off, want = sizeof(P2PHeader) - off;
    } else {
      size_t off = c.got - sizeof(Hello) - sizeof(P2PHeader);
      dst = c.payload.data() + off, want = c.payload.size() - off;
    }
    ssize_t n = want ? ::recv(c.fd.get(), dst, want, MSG_DONTWAIT) : 0;
    if (want && n == 0) return false;  // closed early
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    const size_t before = c.got;
    c.got += static_cast<size_t>(n);
    if (before < sizeof(Hello) && c.got == sizeof(Hello)) {
      // The hello is the peer's word: check it before reading anything it announces.
      Purpose purpose = c.hello.purpose == static_cast<uint32_t>(Purpose::kRing) ? Purpose::kRing : Purpose::kP2P;
      std::string why = checkHello(c.hello, secret_, commId_, purpose, nranks_);
      int prev = (rank_ + nranks_ - 1) % nranks_;
      if (why.empty() && purpose == Purpose::kRing && (c.hello.rank != prev || prev_.valid())) {
        why = "unexpected ring peer";
      }
      if (!why.empty()) {
        LS_WARN_LIMITED(strangers_, rank_, "bootstrap: rejected a connection: " << why);
        return false;
      }
      if (purpose == Purpose::kRing) {
        Hello answer = makeHello(secret_, commId_, rank_, nranks_, Purpose::kRing);
        try {
          sendAll(c.fd.get(), &answer, sizeof(answer), Deadline::after(kHelloTimeout));
        } catch (const Error& e) {
          LS_WARN(rank_, "bootstrap: lost the ring predecessor while answering it: " << e.what());
          return false;
        }
        prev_ = std::move(c.fd);
        return false;  // done with it here: it is the ring connection now
      }
    } else if (before < sizeof(Hello) + sizeof(P2PHeader) && c.got == sizeof(Hello) + sizeof(P2PHeader)) {
      if (c.header.bytes > kMaxMessageBytes) {
        LS_WARN(rank_,
                "bootstrap: rank " << c.hello.rank << " announced a " << c.header.bytes << "-byte message; dropped");
        return false;
      }
      if (c.header.tag != kProbeTag &&
          (stash_.size() >= maxStashed() || bufferedBytes() + c.header.bytes > kMaxBufferedBytes)) {
        LS_WARN_LIMITED(strangers_, rank_,
                        "bootstrap: rank " << c.hello.rank << " sent more messages than anyone received ("
                                           << stash_.size() << " waiting, " << bufferedBytes()
                                           << " bytes); dropped its message with tag " << c.header.tag);
        return false;
      }
      c.payload.resize(c.header.bytes);  // bounded, and only after the sender proved the secret
    }
    if (c.got >= sizeof(Hello) + sizeof(P2PHeader) && c.got == sizeof(Hello) + sizeof(P2PHeader) + c.payload.size()) {
      if (c.header.tag != kProbeTag) stash_.push_back(Stashed{c.hello.rank, c.header.tag, std::move(c.payload)});
      return false;
    }
  }
}

void TcpBootstrap::allGather(void* data, size_t bytes) {
  auto* base = static_cast<char*>(data);
  int next = (rank_ + 1) % nranks_, prev = (rank_ + nranks_ - 1) % nranks_;
  Deadline dl = deadline();
  // Ring: at step s, pass on block (rank - s) and receive block (rank - s - 1). Both directions
  // progress together so large blocks cannot deadlock on full socket buffers.
  for (int s = 0; s < nranks_ - 1; ++s) {
    const char* out = base + bytes * ((rank_ - s + nranks_) % nranks_);
    char* in = base + bytes * ((rank_ - s - 1 + nranks_) % nranks_);
    size_t sent = 0, got = 0;
    bool sendFailed = false;  // else a failure is the predecessor's while its block is incomplete
    try {
      while (sent < bytes || got < bytes) {
        // A direction that is done is left out: poll reports a broken connection's POLLHUP
        // whatever it is asked, which would spin this loop, and the break is no concern of this
        // step (the next one, or the peer's own error, reports it).
        pollfd fds[2] = {{sent < bytes ? next_.get() : -1, POLLOUT, 0}, {got < bytes ? prev_.get() : -1, POLLIN, 0}};
        if (interrupt_) interrupt_();
        int rc = ::poll(fds, 2, dl.remainingMs(100));
        if (rc < 0 && errno != EINTR) throw SystemError("poll", errno);
        if (rc == 0 && dl.expired()) throw Timeout("allGather");
        if (fds[0].revents & (POLLOUT | POLLERR | POLLHUP)) {
          ssize_t n = ::send(next_.get(), out + sent, bytes - sent, MSG_NOSIGNAL);
          if (n > 0) {
            sent += static_cast<size_t>(n);
          } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            sendFailed = true;
            throw ConnectionClosed("send to successor failed");
          }
        }
        if (fds[1].revents & (POLLIN | POLLERR | POLLHUP)) {
          ssize_t n = ::recv(prev_.get(), in + got, bytes - got, 0);
          if (n > 0)
            got += static_cast<size_t>(n);
          else if (n == 0 || (errno != EAGAIN && errno != EINTR))
            throw ConnectionClosed("predecessor closed");
        }
      }
    } catch (const Error& e) {
      // The block it waited for says more than the neighbour: in a ring, rank k's block stops at
      // the first rank that never passed it on, so every rank after a stopped one waits for the
      // same block, whoever its predecessor is.
      const int origin = (rank_ - s - 1 + nranks_) % nranks_;
      const bool fromPrev = !sendFailed && got < bytes;
      failRelayed(e, fromPrev ? prev : next,
                  fromPrev && origin != prev ? "in a bootstrap allGather, waiting for rank " + std::to_string(origin) +
                                                   "'s part (through rank " + std::to_string(prev) + ")"
                                             : std::string("in a bootstrap allGather"));
    }
  }
}

void TcpBootstrap::sendReport(const Report& r, const std::vector<int>& to) {
  const int32_t head[3] = {r.code, r.culprit, r.finder};
  std::string payload(reinterpret_cast<const char*>(head), sizeof(head));
  payload.append(r.words, 0, 2048);
  const std::vector<char> msg = p2pMessage(kReportTag, payload.data(), payload.size());
  // One connection per rank, all at once: a rank whose host does not answer holds the report
  // for the whole limit, and one rank after another such waits held a rank for seconds.
  struct Out {
    int rank;
    Fd fd;
    size_t sent = 0;
  };
  std::vector<Out> outs;
  std::vector<int> waiting;  // no descriptor for these yet: tried as connections finish
  // Opens a connection to `p`; false if this process is out of descriptors.
  auto open = [&](int p) {
    sockaddr_storage ss;
    const socklen_t len = peers_[p].toSockaddr(&ss);
    Fd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid() && (errno == EMFILE || errno == ENFILE) && reserve_.valid()) {
      reserve_.reset();
      fd = Fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    }
    if (!fd.valid() && (errno == EMFILE || errno == ENFILE)) return false;
    if (!fd.valid() || (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS)) {
      noReports_.insert(p);
      return true;
    }
    outs.push_back(Out{p, std::move(fd)});
    return true;
  };
  for (int p : to) {
    if (p < 0 || p >= nranks_ || p == rank_ || !peers_[p].valid() || noReports_.count(p)) continue;
    if (!waiting.empty() || !open(p)) waiting.push_back(p);
  }
  const Deadline dl = Deadline::after(kReportSendLimit);
  while (!outs.empty() && !dl.expired()) {
    std::vector<pollfd> pfds;
    for (const Out& o : outs) pfds.push_back(pollfd{o.fd.get(), POLLOUT, 0});
    if (::poll(pfds.data(), pfds.size(), dl.remainingMs(100)) < 0 && errno != EINTR) break;
    for (size_t i = outs.size(); i-- > 0;) {
      if (!pfds[i].revents) continue;
      Out& o = outs[i];
      // Refused or reset: the send says so (a report is a few hundred bytes: it fits the buffer).
      const ssize_t n = ::send(o.fd.get(), msg.data() + o.sent, msg.size() - o.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) o.sent += static_cast<size_t>(n);
      const bool failed = n < 0 && errno != EAGAIN && errno != EINTR;
      if (failed) noReports_.insert(o.rank);
      if (failed || o.sent == msg.size()) outs.erase(outs.begin() + static_cast<std::ptrdiff_t>(i));
    }
    // Descriptors freed: the next connections. The reports are small and taken at once, so one
    // descriptor carries them to a few hundred ranks within the limit on a LAN.
    while (!waiting.empty() && open(waiting.front())) waiting.erase(waiting.begin());
  }
  for (int p : waiting) noReports_.insert(p);
  // Gone, or its host unreachable: its own error stands, and it is not tried again (a relay per
  // report heard, each waiting out the limit, held a rank for seconds).
  for (const Out& o : outs) noReports_.insert(o.rank);
}

std::vector<TcpBootstrap::Report> TcpBootstrap::awaitReports(int from, int onward) {
  // The whole grace, passing each report on as it comes. A rank's own finding goes out before
  // the earlier one it may hear later, and separate connections may land in either order: which
  // report is the answer is for rootReport() to say.
  const Deadline dl = Deadline::after(kReportGrace);
  std::vector<Report> heard;
  for (;;) {
    for (auto it = stash_.begin(); it != stash_.end();) {
      if ((from >= 0 && it->peer != from) || it->tag != kReportTag) {
        ++it;
        continue;
      }
      int32_t head[3] = {0, -2, -1};
      if (it->data.size() >= sizeof(head)) std::memcpy(head, it->data.data(), sizeof(head));
      // The peer's word: a code or rank out of range is no report, and one that blames this
      // rank is no news to it.
      if (isFailureCode(head[0]) && head[1] >= -1 && head[1] < nranks_ && head[1] != rank_ && head[2] >= 0 &&
          head[2] < nranks_ && heard.size() < static_cast<size_t>(std::max(64, nranks_))) {
        heard.push_back(
            Report{head[0], head[1], head[2], std::string(it->data.begin() + sizeof(head), it->data.end())});
        if (onward >= 0) sendReport(heard.back(), {onward});
      }
      it = stash_.erase(it);
    }
    if (dl.expired()) return heard;
    if (interrupt_) interrupt_();  // an abort ends the wait
    try {
      serveOnce(dl.remainingMs(50));
    } catch (const Error&) {
      return heard;  // this rank's own error stands where nothing came
    }
  }
}

std::optional<TcpBootstrap::Report> TcpBootstrap::rootReport(const std::vector<Report>& heard) {
  // Not the last report but the root one: a report whose culprit found something itself is
  // superseded by that finding.
  for (auto r = heard.rbegin(); r != heard.rend(); ++r) {
    // A rank's report of its own failure (culprit == finder: out of descriptors) is not
    // superseded by itself.
    if (std::none_of(heard.begin(), heard.end(), [&](const Report& o) { return &o != &*r && o.finder == r->culprit; }))
      return *r;
  }
  return heard.empty() ? std::nullopt : std::optional<Report>(heard.back());  // a cycle: the latest
}

[[noreturn]] void TcpBootstrap::throwReported(const Report& r, const std::string& prefix) const {
  const std::string finder =
      "rank " + std::to_string(r.finder) + (peers_[r.finder].valid() ? " (" + peers_[r.finder].str() + ")" : "");
  std::string words = printable(r.words);
  if (words.rfind("bootstrap: ", 0) == 0) words.erase(0, 11);
  // The root report: no report of its culprit's came around, so the finder's doubt is settled
  // as the finder's own would have been.
  settleClosedByPeer(&words);
  const std::string text = prefix + finder + " reports: " + words;
  if (r.code == lockstepTimeout) throw Timeout(text);
  // Another rank's failure, whatever its own code (a shortage of its own is a system error
  // there): here it is a peer's, and this rank's setup, which takes it for a failure of its
  // own only if it is not a RemoteError, passed it on as its own shortage under its own name
  // (helper-102).
  throw RemoteError(r.code == lockstepRemoteError ? r.culprit : r.finder, text);
}

void TcpBootstrap::tellOwnShortage(const Error& e) {
  if (e.code() != lockstepSystemError || toldAll_) return;
  toldAll_ = true;
  std::vector<int> all;
  for (int p = 0; p < nranks_; ++p) {
    if (p != rank_) all.push_back(p);
  }
  sendReport(Report{e.code(), rank_, rank_, e.what()}, all);
}

[[noreturn]] void TcpBootstrap::failRelayed(const std::exception& e, int peer, const std::string& doing) {
  try {
    fail(e, peer, doing);
  } catch (const Error& mine) {
    // Only a peer's failure travels the ring: an abort, or this rank's own error, ends at once,
    // a shortage of this process's told first (its neighbours found it gone "for a reason of its
    // own" and passed that on).
    tellOwnShortage(mine);
    if (mine.code() != lockstepRemoteError && mine.code() != lockstepTimeout) throw;
    // Told both ways at once, before waiting for the neighbour it blames (a rank whose send to
    // a dead successor failed is the predecessor's neighbour that failed "first" too); then the
    // ring connections close, so the neighbours fail now and wait their grace beside this one:
    // a ring of ranks hears the root cause within about one grace, not one grace per hop.
    const Report own{mine.code(), peer, rank_, mine.what()};
    const int next = (rank_ + 1) % nranks_, prev = (rank_ + nranks_ - 1) % nranks_;
    sendReport(own, prev != next ? std::vector<int>{next, prev} : std::vector<int>{next});
    for (const Fd* ring : {&next_, &prev_}) {
      if (ring->valid()) ::shutdown(ring->get(), SHUT_RDWR);
    }
    failedWith_ = own;
    if (peer != prev && peer != next) throw;
    const int onward = peer == prev ? next : prev;
    const std::optional<Report> r = rootReport(awaitReports(peer, onward == peer ? -1 : onward));
    if (!r) {  // its own finding
      std::string text = mine.what();
      if (mine.code() != lockstepRemoteError || !settleClosedByPeer(&text)) throw;
      failedWith_->words = text;
      throw RemoteError(peer, text);
    }
    failedWith_ = *r;
    throwReported(*r, "bootstrap: ");
  }
}

[[noreturn]] void TcpBootstrap::failSetup(std::exception_ptr error, bool heard) {
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    if (e.code() != lockstepRemoteError && e.code() != lockstepTimeout) {
      tellOwnShortage(e);
      throw;
    }
    const auto* remote = dynamic_cast<const RemoteError*>(&e);
    const Report mine{e.code(), remote ? remote->rank : -1, rank_, e.what()};
    // What the bootstrap's own wait failed with goes on as it was heard (its finder, its words):
    // wrapped once more per rank ("rank 5 reports: rank 4 reports: ..."), it named healthy
    // relays first and grew a level per hop around the ring (helper-55).
    const Report& told = heard && failedWith_ ? *failedWith_ : mine;
    // Every rank but the one it blames: the ranks past this step wait for this one (to connect,
    // or to answer), and would find it gone with nothing else to go on.
    std::vector<int> all;
    for (int p = 0; p < nranks_; ++p) {
      if (p != told.culprit && p != rank_) all.push_back(p);
    }
    if (!toldAll_) {
      toldAll_ = true;
      sendReport(told, all);
    }
    // Nothing to listen for: no other rank to hear from (2 ranks), or no culprit to follow.
    if (heard || all.empty() || mine.culprit < 0) throw;
    // The chain from its own finding: the culprit's report, that report's culprit's, and so on,
    // to a rank that reported nothing. Not just any root: another rank's unrelated failure is no
    // answer to this one.
    const std::vector<Report> reports = awaitReports(-1, -1);
    const Report* at = &mine;
    std::set<int> seen{rank_};
    for (;;) {
      const Report* next = nullptr;
      for (const Report& r : reports) {
        if (r.finder == at->culprit) next = &r;  // its latest
      }
      if (!next || !seen.insert(next->finder).second) break;
      at = next;
    }
    if (at == &mine) throw;
    throwReported(*at, "setup: ");
  }
}

std::vector<char> TcpBootstrap::p2pMessage(int32_t tag, const void* data, size_t bytes) const {
  std::vector<char> msg(sizeof(Hello) + sizeof(P2PHeader) + bytes);
  const Hello h = makeHello(secret_, commId_, rank_, nranks_, Purpose::kP2P);
  const P2PHeader hdr{tag, 0, bytes};
  std::memcpy(msg.data(), &h, sizeof(h));
  std::memcpy(msg.data() + sizeof(h), &hdr, sizeof(hdr));
  if (bytes) std::memcpy(msg.data() + sizeof(h) + sizeof(hdr), data, bytes);
  return msg;
}

void TcpBootstrap::send(int peer, int tag, const void* data, size_t bytes) {
  if (bytes > kMaxMessageBytes) throw InternalError("bootstrap message too large");
  Deadline dl = deadline();
  const std::vector<char> msg = p2pMessage(tag, data, bytes);
  try {
    Fd fd = connectTo(peers_[peer], dl, /*retryRefused=*/false);  // listening since the rendezvous
    sendAllServing(fd.get(), msg.data(), msg.size(), dl, listen_.get(), [&] { serveOnce(0); });
  } catch (const Error& e) {
    fail(e, peer, "sending a bootstrap message");
  }
}

RemoteError TcpBootstrap::goneError(int peer, const std::string& waitedFor) const {
  return RemoteError(peer, "bootstrap: rank " + std::to_string(peer) + " (" + peers_[peer].str() +
                               ") is gone while rank " + std::to_string(rank_) + " waited " + waitedFor +
                               " (its process exited, or its setup failed)");
}

bool TcpBootstrap::peerListening(int peer) { return probe(peer) != Probe::kGone; }

TcpBootstrap::Probe TcpBootstrap::probe(int peer) {
  if (peer < 0 || peer >= nranks_ || peer == rank_ || !peers_[peer].valid()) return Probe::kUnknown;
  const std::vector<char> probe = p2pMessage(kProbeTag, nullptr, 0);
  try {
    const Deadline dl = Deadline::after(std::chrono::milliseconds(200));
    Fd fd = connectTo(peers_[peer], dl, /*retryRefused=*/false);
    sendAll(fd.get(), probe.data(), probe.size(), dl);
  } catch (const SystemError& e) {
    // Out of descriptors here, this rank could never find a peer gone, and waited out its timeout
    // blaming peers for not connecting: its own shortage is its error.
    if (isLocalShortage(e.err)) {
      throw SystemError(e.syscall, e.err,
                        "bootstrap: rank " + std::to_string(rank_) + " checking whether rank " + std::to_string(peer) +
                            " is still there");
    }
    return e.err == ECONNREFUSED ? Probe::kGone : Probe::kUnknown;
  } catch (const Error&) {
    return Probe::kUnknown;  // slow or reset: not known to be gone
  }
  return Probe::kAnswered;
}

void TcpBootstrap::recv(int peer, int tag, void* data, size_t bytes) {
  Deadline dl = deadline();
  Deadline probe = Deadline::after(kProbeEvery);
  bool gone = false;
  for (;;) {
    auto it =
        std::find_if(stash_.begin(), stash_.end(), [&](const Stashed& s) { return s.peer == peer && s.tag == tag; });
    if (it != stash_.end()) {
      if (it->data.size() != bytes) {
        throw RemoteError(peer, "bootstrap: rank " + std::to_string(peer) + " sent " + std::to_string(it->data.size()) +
                                    " bytes for tag " + std::to_string(tag) + ", expected " + std::to_string(bytes));
      }
      std::memcpy(data, it->data.data(), bytes);
      stash_.erase(it);
      return;
    }
    if (gone) {
      throw goneError(peer, "for a message from it");
    }
    if (interrupt_) interrupt_();
    if (probe.expired()) {
      // Gone counts after one more pass: what it sent before it left may just be arriving.
      gone = !peerListening(peer);
      probe = Deadline::after(kProbeEvery);
    }
    try {
      if (dl.expired()) throw Timeout("no message arrived");
      serveOnce(dl.remainingMs(100));
    } catch (const Error& e) {
      fail(e, peer, "waiting for a bootstrap message (tag " + std::to_string(tag) + ")");
    }
  }
}

void TcpBootstrap::barrier() {
  std::vector<char> b(nranks_);
  allGather(b.data(), 1);
}

}  // namespace lockstep
