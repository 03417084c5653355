// lockstep-wire: a lossy Ethernet wire in userspace, for kernels without sch_netem. It opens a TAP
// device in each named network namespace and forwards every frame read from one tap to the other(s),
// delayed, sometimes dropped, sometimes held back so that later frames overtake it.
//
//   lockstep-wire [--ifname eth0] [--delay-ms 2] [--loss 0.01] [--reorder 0.25]
//                 [--reorder-extra-ms 1] [--seed 1] [--max-pending 4096] NETNS NETNS...
//
// NETNS is a name under /var/run/netns (`ip netns add`). With more than two namespaces the wire
// is a learning switch: unicast goes to the port its destination MAC was last seen on, broadcast,
// multicast and unknown destinations to every other port. Each delivery to a port draws its own
// fate. Prints "lockstep-wire: ready ..." once the taps exist (the caller then gives them
// addresses and brings them up), and a line of counters on SIGTERM/SIGINT, then exits 0. Exits
// with its parent (PR_SET_PDEATHSIG), so a killed test leaves no wire behind; the taps vanish
// with it.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

volatile sig_atomic_t g_stop = 0;
void onSignal(int) { g_stop = 1; }

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "lockstep-wire: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(2);
}

struct Options {
  std::string ifname = "wire0";
  double delay_ms = 2, loss = 0.01, reorder = 0.25, reorder_extra_ms = 1;
  uint64_t seed = 1;
  size_t max_pending = 4096;
  std::vector<std::string> netns;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "lockstep-wire: %s\nusage: lockstep-wire [--ifname NAME] [--delay-ms MS] [--loss P] [--reorder P]\n"
               "                     [--reorder-extra-ms MS] [--seed N] [--max-pending N] NETNS NETNS...\n",
               why);
  std::exit(2);
}

Options parseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      o.netns.push_back(a);
      continue;
    }
    if (i + 1 >= argc) usage(("missing value for " + a).c_str());
    const char* v = argv[++i];
    char* end = nullptr;
    double d = std::strtod(v, &end);
    bool number = end != v && *end == '\0' && d >= 0;
    if (a == "--ifname") {
      if (std::strlen(v) == 0 || std::strlen(v) >= IFNAMSIZ) usage("bad --ifname");
      o.ifname = v;
    } else if (!number) {
      usage(("bad value for " + a).c_str());
    } else if (a == "--delay-ms") {
      o.delay_ms = d;
    } else if (a == "--loss" || a == "--reorder") {
      if (d > 1) usage((a + " is a probability (0..1)").c_str());
      (a == "--loss" ? o.loss : o.reorder) = d;
    } else if (a == "--reorder-extra-ms") {
      o.reorder_extra_ms = d;
    } else if (a == "--seed") {
      o.seed = static_cast<uint64_t>(d);
    } else if (a == "--max-pending") {
      o.max_pending = std::max<size_t>(1, static_cast<size_t>(d));
    } else {
      usage(("unknown option " + a).c_str());
    }
  }
  if (o.netns.size() < 2) usage("need at least two namespaces");
  return o;
}

// A TAP fd stays bound to the device it created, in the namespace it was created in, whatever
// namespace this process is in afterwards: so enter each namespace only to create its tap.
int openTapIn(const std::string& netns, const std::string& ifname) {
  int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) die("open /proc/self/ns/net");
  std::string path = "/var/run/netns/" + netns;
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) die("open " + path);
  if (setns(target, CLONE_NEWNET) != 0) die("setns " + path);
  // Keeping the namespace file open would keep the namespace alive after `ip netns del`.
  close(target);
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) die("open /dev/net/tun");
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;  // Plain Ethernet frames, no packet-info header.
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) die("TUNSETIFF " + ifname + " in " + netns);
  if (setns(self, CLONE_NEWNET) != 0) die("setns back");
  close(self);
  return fd;
}

struct Pending {
  Clock::time_point due;
  uint64_t order;  // Ties on `due` leave frames in arrival order.
  uint64_t seq;    // Per output port: tells, at delivery, whether a later frame went first.
  size_t port;
  std::vector<uint8_t> frame;
};
// For std::push_heap: the earliest due frame on top.
bool later(const Pending& a, const Pending& b) { return a.due != b.due ? a.due > b.due : a.order > b.order; }

struct Counters {
  unsigned long long read = 0, forwarded = 0, lost = 0, overflow = 0, write_failed = 0, held = 0, reordered = 0;
  size_t max_pending = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options opt = parseOptions(argc, argv);
  // Die with the test script: a SIGKILLed script cannot stop us, and its namespaces live on as
  // long as our taps hold them. The getppid() check covers a parent that died before prctl.
  pid_t parent = getppid();
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) die("prctl");
  if (getppid() != parent) return 0;

  // SIGTERM/SIGINT are blocked except inside ppoll, so a stop request can never slip in between
  // the check of g_stop and going to sleep.
  sigset_t stop_signals, wait_mask;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  if (sigprocmask(SIG_BLOCK, &stop_signals, &wait_mask) != 0) die("sigprocmask");
  sigdelset(&wait_mask, SIGTERM);
  sigdelset(&wait_mask, SIGINT);
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = onSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  std::vector<pollfd> ports;
  for (const std::string& ns : opt.netns) ports.push_back({openTapIn(ns, opt.ifname), POLLIN, 0});
  std::printf("lockstep-wire: ready: %s in %zu namespaces; delay %g ms, loss %g, reorder %g (+%g ms), seed %llu\n",
              opt.ifname.c_str(), ports.size(), opt.delay_ms, opt.loss, opt.reorder, opt.reorder_extra_ms,
              static_cast<unsigned long long>(opt.seed));
  std::fflush(stdout);

  const auto delay =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(opt.delay_ms));
  const auto extra =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(opt.reorder_extra_ms));
  std::mt19937_64 rng(opt.seed);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::unordered_map<uint64_t, size_t> mac_port;  // Learned from source addresses.
  std::vector<uint64_t> next_seq(ports.size(), 0), delivered_seq(ports.size(), 0);
  std::vector<Pending> queue;  // A heap ordered by `later`.
  Counters c;
  uint64_t order = 0;
  std::vector<uint8_t> buf(65536 + 64);  // Any frame a tap can hold (MTU up to 64 KiB).

  auto mac = [](const uint8_t* p) {
    uint64_t m = 0;
    for (int i = 0; i < 6; ++i) m = m << 8 | p[i];
    return m;
  };
  auto enqueue = [&](size_t out, const uint8_t* data, size_t len, Clock::time_point now) {
    // Draw both numbers for every delivery, so a seed gives the same fates to the same frames.
    bool lose = uniform(rng) < opt.loss;
    bool hold = uniform(rng) < opt.reorder;
    if (queue.size() >= opt.max_pending) {
      ++c.overflow;
    } else if (lose) {
      ++c.lost;
    } else {
      c.held += hold;
      queue.push_back({now + delay + (hold ? extra : Clock::duration(0)), order++, next_seq[out]++, out,
                       std::vector<uint8_t>(data, data + len)});
      std::push_heap(queue.begin(), queue.end(), later);
      c.max_pending = std::max(c.max_pending, queue.size());
    }
  };

  int status = 0;
  while (!g_stop) {
    timespec timeout{}, *timeout_p = nullptr;  // Nothing pending: sleep until a frame or a signal.
    if (!queue.empty()) {
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(queue.front().due - Clock::now()).count();
      ns = std::max<int64_t>(ns, 0);
      timeout = {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
      timeout_p = &timeout;
    }
    int n = ppoll(ports.data(), ports.size(), timeout_p, &wait_mask);
    if (n < 0 && errno != EINTR) die("ppoll");
    for (size_t in = 0; n > 0 && in < ports.size(); ++in) {
      short ev = ports[in].revents;
      if (ev & (POLLERR | POLLHUP | POLLNVAL)) {
        // The tap's device is gone (its namespace was deleted): polling it again would spin.
        std::fprintf(stderr, "lockstep-wire: the tap in %s went away\n", opt.netns[in].c_str());
        g_stop = 1;
        status = 1;
        break;
      }
      if (!(ev & POLLIN)) continue;
      // A bounded batch per port and wakeup, so one busy tap cannot starve the others or delivery.
      for (int batch = 0; batch < 64; ++batch) {
        ssize_t len = read(ports[in].fd, buf.data(), buf.size());
        if (len < 0) {
          if (errno != EAGAIN && errno != EINTR) die("read from the tap in " + opt.netns[in]);
          break;
        }
        if (len < 14) continue;  // Not an Ethernet frame.
        ++c.read;
        auto now = Clock::now();
        mac_port[mac(buf.data() + 6)] = in;
        auto known = (buf[0] & 1) ? mac_port.end() : mac_port.find(mac(buf.data()));
        for (size_t out = 0; out < ports.size(); ++out) {
          bool to_out = known != mac_port.end() ? out == known->second : true;
          if (out != in && to_out) enqueue(out, buf.data(), len, now);
        }
      }
    }
    for (auto now = Clock::now(); !queue.empty() && queue.front().due <= now;) {
      std::pop_heap(queue.begin(), queue.end(), later);
      Pending p = std::move(queue.back());
      queue.pop_back();
      // Writing into a tap is the device receiving the frame; with O_NONBLOCK a full backlog
      // fails rather than stalls the wire, and counts as a drop.
      if (write(ports[p.port].fd, p.frame.data(), p.frame.size()) != static_cast<ssize_t>(p.frame.size())) {
        // EIO: that tap is not up yet (the script configures it after "ready"). Said once.
        if (c.write_failed++ == 0) {
          std::fprintf(stderr, "lockstep-wire: a write to the tap in %s failed (%s); counted as dropped\n",
                       opt.netns[p.port].c_str(), std::strerror(errno));
        }
        continue;
      }
      ++c.forwarded;
      if (p.seq < delivered_seq[p.port]) {
        ++c.reordered;  // A frame queued after this one has already been delivered.
      } else {
        delivered_seq[p.port] = p.seq + 1;
      }
    }
  }
  std::printf(
      "lockstep-wire: counters: read=%llu forwarded=%llu dropped=%llu lost=%llu queue_full=%llu write_failed=%llu "
      "reordered=%llu held=%llu max_pending=%zu pending_at_exit=%zu\n",
      c.read, c.forwarded, c.lost + c.overflow + c.write_failed, c.lost, c.overflow, c.write_failed, c.reordered,
      c.held, c.max_pending, queue.size());
  std::fflush(stdout);
  return status;
}
