// Logging to stderr, prefixed host:pid:rank. The level comes from Config (LOCKSTEP_DEBUG); the
// message is only formatted when its level is enabled.
#pragma once

#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>

#include "src/core/config.h"

namespace lockstep {

void setLogLevel(LogLevel level);
bool logEnabled(LogLevel level);
// rank < 0 prints "-" (no communicator yet, e.g. the rendezvous service).
void logLine(LogLevel level, int rank, const std::string& message);

// For warnings a stranger can provoke at will (connections rejected or dropped): the first few in
// full, then at most one a second, carrying the count of those left out. A flood must neither
// fill the log nor block the thread that writes it (stderr into a pipe nobody drains).
class WarnLimiter {
 public:
  // Whether this occurrence may be printed. If so, *skipped is how many were not, since the last
  // one that was (say so in the line).
  bool allow(uint64_t* skipped);
  // " (N more not shown)", or nothing.
  static std::string notShown(uint64_t skipped) {
    return skipped ? " (" + std::to_string(skipped) + " more not shown)" : std::string();
  }

 private:
  static constexpr int kFull = 8;
  int printed_ = 0;
  uint64_t skipped_ = 0;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace lockstep

#define LS_LOG(level, rank, stream_expr)                  \
  do {                                                    \
    if (::lockstep::logEnabled(level)) {                  \
      std::ostringstream ls_log_os_;                      \
      ls_log_os_ << stream_expr;                          \
      ::lockstep::logLine(level, rank, ls_log_os_.str()); \
    }                                                     \
  } while (0)
#define LS_WARN(rank, s) LS_LOG(::lockstep::LogLevel::kWarn, rank, s)
// A warning through a WarnLimiter: printed when it allows, with the count of those left out.
#define LS_WARN_LIMITED(limiter, rank, s)                                 \
  do {                                                                    \
    uint64_t ls_skipped_ = 0;                                             \
    if ((limiter).allow(&ls_skipped_)) {                                  \
      LS_WARN(rank, s << ::lockstep::WarnLimiter::notShown(ls_skipped_)); \
    }                                                                     \
  } while (0)
#define LS_INFO(rank, s) LS_LOG(::lockstep::LogLevel::kInfo, rank, s)
#define LS_TRACE(rank, s) LS_LOG(::lockstep::LogLevel::kTrace, rank, s)
