// Logging to stderr, prefixed host:pid:rank. The level comes from Config (LOCKSTEP_DEBUG); the
// message is only formatted when its level is enabled.
#pragma once

#include <sstream>
#include <string>

#include "src/core/config.h"

namespace lockstep {

void setLogLevel(LogLevel level);
bool logEnabled(LogLevel level);
// rank < 0 prints "-" (no communicator yet, e.g. the rendezvous service).
void logLine(LogLevel level, int rank, const std::string& message);

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
#define LS_INFO(rank, s) LS_LOG(::lockstep::LogLevel::kInfo, rank, s)
#define LS_TRACE(rank, s) LS_LOG(::lockstep::LogLevel::kTrace, rank, s)
