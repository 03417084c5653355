/* A DNS server that takes every query and answers none, as a resolver that is down behind a
 * firewall that drops, or a blackholed search domain, looks to its clients.
 *   silent_dns ADDRESS     (binds UDP and TCP port 53 there: root)
 * Prints "ready" once bound, then reads queries (and accepts connections) until killed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int bound(int type, const char* address) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons(53);
  if (inet_pton(AF_INET, address, &a.sin_addr) != 1) return -1;
  int fd = socket(AF_INET, type, 0), one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || bind(fd, (struct sockaddr*)&a, sizeof(a)) != 0) return -1;
  if (type == SOCK_STREAM && listen(fd, 64) != 0) return -1;
  return fd;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: silent_dns ADDRESS\n");
    return 2;
  }
  int udp = bound(SOCK_DGRAM, argv[1]), tcp = bound(SOCK_STREAM, argv[1]);
  if (udp < 0 || tcp < 0) {
    perror("silent_dns: bind port 53");
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  char buf[4096];
  for (;;) {
    struct pollfd p[2] = {{udp, POLLIN, 0}, {tcp, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) continue;
    if (p[0].revents & POLLIN) (void)recv(udp, buf, sizeof(buf), 0);
    if (p[1].revents & POLLIN) (void)accept(tcp, NULL, NULL); /* held open, never answered */
  }
}
