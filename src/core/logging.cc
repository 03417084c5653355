#include "src/core/logging.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace lockstep {
namespace {

std::atomic<int> gLevel{static_cast<int>(LogLevel::kWarn)};

const char* levelName(LogLevel level) {
  switch (level) {
    case LogLevel::kWarn:
      return "WARN";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kTrace:
      return "TRACE";
    default:
      return "";
  }
}

}  // namespace

void setLogLevel(LogLevel level) { gLevel.store(static_cast<int>(level), std::memory_order_relaxed); }

bool logEnabled(LogLevel level) { return static_cast<int>(level) <= gLevel.load(std::memory_order_relaxed); }

void logLine(LogLevel level, int rank, const std::string& message) {
  char host[64] = "?";
  gethostname(host, sizeof(host) - 1);
  std::string r = rank < 0 ? std::string("-") : std::to_string(rank);
  // One fprintf per line so lines from several threads do not interleave.
  std::fprintf(stderr, "%s:%d:%s lockstep %s %s\n", host, static_cast<int>(getpid()), r.c_str(), levelName(level),
               message.c_str());
}

bool WarnLimiter::allow(uint64_t* skipped) {
  const auto now = std::chrono::steady_clock::now();
  if (printed_ < kFull || now - last_ >= std::chrono::seconds(1)) {
    ++printed_;
    last_ = now;
    *skipped = skipped_;
    skipped_ = 0;
    return true;
  }
  ++skipped_;
  return false;
}

}  // namespace lockstep
