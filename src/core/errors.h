// Typed exceptions used inside Lockstep. They never cross the C ABI: src/core/api.cc converts
// them to lockstepResult_t and a last-error string, in one place.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "lockstep/lockstep.h"

namespace lockstep {

class Error : public std::runtime_error {
 public:
  Error(lockstepResult_t code, const std::string& what) : std::runtime_error(what), code_(code) {}
  lockstepResult_t code() const { return code_; }

 private:
  lockstepResult_t code_;
};

struct InvalidArgument : Error {
  explicit InvalidArgument(const std::string& w) : Error(lockstepInvalidArgument, w) {}
};
struct InvalidUsage : Error {
  explicit InvalidUsage(const std::string& w) : Error(lockstepInvalidUsage, w) {}
};
struct InternalError : Error {
  explicit InternalError(const std::string& w) : Error(lockstepInternalError, w) {}
};
struct Aborted : Error {
  explicit Aborted(const std::string& w) : Error(lockstepAborted, w) {}
};
struct Timeout : Error {
  explicit Timeout(const std::string& w) : Error(lockstepTimeout, w) {}
};
// Ranks disagree; `rank` is the other rank involved, when one is known.
struct Mismatch : Error {
  explicit Mismatch(const std::string& w, int rank = -1) : Error(lockstepMismatch, w), rank(rank) {}
  int rank;
};

// A peer died, closed its connection, or sent bytes that break the protocol.
struct RemoteError : Error {
  RemoteError(int rank, const std::string& w) : Error(lockstepRemoteError, w), rank(rank) {}
  int rank;
};

// A system call failed. Built where the call fails, so errno is still the right one.
struct SystemError : Error {
  SystemError(const std::string& syscall, int err, const std::string& context = "");
  std::string syscall;
  int err;
};

// Out of descriptors or memory: a shortage of this process (or host), never a peer's fault.
bool isLocalShortage(int err);

// The connection, not this process, failed: TCP gave up retransmitting (ETIMEDOUT, after
// tcp_retries2), or the route to the peer's host went away. The peer is the culprit as far as
// this rank can tell, and kNetworkFailed says so in a message.
bool isNetworkFailure(int err);
inline constexpr const char* kNetworkFailed = "the network between the two hosts failed, or the peer's host is down";

// Whether a code a peer sent names a failure: an error code, not success and not
// lockstepInProgress, which a rank that adopted it then returned from every call, so a caller
// polling until an operation is no longer in progress spun for ever (helper-94).
inline bool isFailureCode(int32_t code) {
  return code > lockstepSuccess && code < lockstepNumResults && code != lockstepInProgress;
}

// Text a peer sent (a failure report, a host name), made safe to print in a message or a log
// line: control characters, which could forge log lines or recolour a terminal, become '?'.
std::string printable(std::string text);

// Throws SystemError(syscall, errno, context) when rc < 0; returns rc otherwise.
long checkSys(long rc, const char* syscall, const std::string& context = "");

}  // namespace lockstep
