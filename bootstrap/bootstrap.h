// Out-of-band communication between the ranks of one communicator, used at setup (peer info,
// transport connection details) and never on the data path.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>

#include "src/core/clock.h"

namespace lockstep {

class Bootstrap {
 public:
  virtual ~Bootstrap() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // data holds size() blocks of `bytes`; this rank's block is at data + rank()*bytes. On return
  // every block holds the corresponding rank's contribution.
  virtual void allGather(void* data, size_t bytes) = 0;
  // Point-to-point messages of an exact expected size, matched by (peer, tag). Sends do not wait
  // for the matching receive.
  virtual void send(int peer, int tag, const void* data, size_t bytes) = 0;
  virtual void recv(int peer, int tag, void* data, size_t bytes) = 0;
  virtual void barrier() = 0;
  // Called while allGather and recv wait (every 100 ms at most); what it throws ends the wait.
  // A communicator's split sets it to its failure check, so a peer that called something else,
  // or an abort, ends the split instead of its timeout. Empty: none.
  virtual void setInterrupt(std::function<void()> check) { (void)check; }
  // False once `peer` has let go of its bootstrap: its process exited, or its setup failed and
  // unwound. True while it holds it, or when that cannot be told. For the waits of setup that
  // would hear nothing else from a peer that is gone, and would wait out the whole timeout.
  virtual bool peerListening(int peer) {
    (void)peer;
    return true;
  }
  // A setup step built on the bootstrap (a connection mesh) failed with `error`: rethrows it, or
  // the error of the rank that failed first. Where ranks can tell each other why (TcpBootstrap), a
  // rank that blames a peer tells every other rank before it gives up, and, unless `heard` (the
  // bootstrap's own wait failed, and listened to its neighbours already), listens a short grace
  // for their reports: the peer it blames may itself have failed because of another rank. Call it
  // while this rank's part of the step (its connections, its listener) is still up, so that a
  // rank that finds them gone has the report already.
  [[noreturn]] virtual void failSetup(std::exception_ptr error, bool heard) {
    (void)heard;
    std::rethrow_exception(error);
  }
  // The deadline of a setup step built on the bootstrap (a connection mesh) that may take
  // `timeout`: no later than the setup's own (TcpBootstrap: LOCKSTEP_TIMEOUT from the
  // rendezvous), so that a slow peer cannot stretch setup stage by stage.
  virtual Deadline stepDeadline(std::chrono::milliseconds timeout) const { return Deadline::after(timeout); }
  // The communicator built on it is set up, or a split's exchange over it is over: later steps
  // take a whole timeout each, and what the listener holds that has not proved the secret can go.
  virtual void endSetup() {}
};

}  // namespace lockstep
