#include "src/core/errors.h"

#include <cerrno>
#include <cstring>

namespace lockstep {

static std::string describe(const std::string& syscall, int err, const std::string& context) {
  std::string s = syscall;
  s.append(" failed: ").append(std::strerror(err)).append(" (errno ").append(std::to_string(err)).append(")");
  if (!context.empty()) s.append(" while ").append(context);
  return s;
}

SystemError::SystemError(const std::string& sc, int e, const std::string& context)
    : Error(lockstepSystemError, describe(sc, e, context)), syscall(sc), err(e) {}

long checkSys(long rc, const char* syscall, const std::string& context) {
  if (rc < 0) throw SystemError(syscall, errno, context);
  return rc;
}

}  // namespace lockstep
