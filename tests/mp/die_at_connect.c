/* LD_PRELOAD shim for fault tests: once the program has set LOCKSTEP_TEST_DIE_AT_CONNECT, its next
 * connect() kills it (SIGKILL), as a crash at that very moment would. How a test makes a rank die
 * inside a library call, between two of its steps, where a timed kill would only sometimes land. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int connect(int fd, const struct sockaddr* addr, socklen_t len) {
  typedef int (*ConnectFn)(int, const struct sockaddr*, socklen_t);
  static ConnectFn real;
  if (getenv("LOCKSTEP_TEST_DIE_AT_CONNECT")) kill(getpid(), SIGKILL);
  if (!real) real = (ConnectFn)dlsym(RTLD_NEXT, "connect");
  return real(fd, addr, len);
}
