#include "src/core/errors.h"

#include <cerrno>
#include <cstring>

#include <sys/resource.h>

namespace lockstep {

static std::string describe(const std::string& syscall, int err, const std::string& context) {
  std::string s = syscall;
  s.append(" failed: ").append(std::strerror(err)).append(" (errno ").append(std::to_string(err)).append(")");
  if (!context.empty()) s.append(" while ").append(context);
  if (err == EMFILE) {
    // The usual cause at scale (descriptors per peer), and the fix is the user's: say both.
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
      s.append(": this process may open ").append(std::to_string(rl.rlim_cur)).append(" files; raise `ulimit -n`");
    }
  }
  return s;
}

bool isLocalShortage(int err) { return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM; }

bool isNetworkFailure(int err) {
  return err == ETIMEDOUT || err == EHOSTUNREACH || err == ENETUNREACH || err == EHOSTDOWN || err == ENETDOWN ||
         err == ENETRESET || err == ECONNABORTED;
}

SystemError::SystemError(const std::string& sc, int e, const std::string& context)
    : Error(lockstepSystemError, describe(sc, e, context)), syscall(sc), err(e) {}

long checkSys(long rc, const char* syscall, const std::string& context) {
  if (rc < 0) throw SystemError(syscall, errno, context);
  return rc;
}

std::string printable(std::string text) {
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return text;
}

}  // namespace lockstep
