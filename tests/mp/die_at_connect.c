/* LD_PRELOAD shim for fault tests: once the program has set LOCKSTEP_TEST_DIE_AT_CONNECT, its next
 * connect() kills it (SIGKILL), as a crash at that very moment would; set to "exit", it calls
 * exit(0) there instead, as another thread or an error path of the program might (its atexit
 * handlers run). How a test makes a rank die inside a library call, between two of its steps,
 * where a timed kill would only sometimes land.
 * With LOCKSTEP_TEST_CONNECT_DELAY_MS set, every connect() waits that long first, as a lost SYN
 * makes a connection wait for its retransmission (a second on Linux). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int connect(int fd, const struct sockaddr* addr, socklen_t len) {
  typedef int (*ConnectFn)(int, const struct sockaddr*, socklen_t);
  static ConnectFn real;
  const char* die = getenv("LOCKSTEP_TEST_DIE_AT_CONNECT");
  if (die) {
    unsetenv("LOCKSTEP_TEST_DIE_AT_CONNECT"); /* once: the exit path's goodbyes connect nothing, but be sure */
    if (die[0] == 'e') exit(0);
    kill(getpid(), SIGKILL);
  }
  const char* delay = getenv("LOCKSTEP_TEST_CONNECT_DELAY_MS");
  if (delay) usleep((useconds_t)atoi(delay) * 1000);
  if (!real) real = (ConnectFn)dlsym(RTLD_NEXT, "connect");
  return real(fd, addr, len);
}
