#include "src/topo/interfaces.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "src/core/clock.h"
#include "src/core/errors.h"
#include "src/core/logging.h"
#include "src/topo/topology.h"

namespace lockstep {

bool ifnameMatches(const std::string& spec, const std::string& name) {
  std::string s = spec;
  bool exclude = false, exact = false;
  if (!s.empty() && s[0] == '^') exclude = true, s.erase(0, 1);
  if (!s.empty() && s[0] == '=') exact = true, s.erase(0, 1);
  bool matched = false;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    if (exact ? name == item : name.compare(0, item.size(), item) == 0) matched = true;
  }
  return exclude ? !matched : matched;
}

bool sameSubnet(const NetAddr& a, const NetAddr& b, const NetAddr& mask) {
  if (a.family != b.family || a.family != mask.family) return false;
  const size_t bytes = a.family == AF_INET ? 4 : 16;
  for (size_t i = 0; i < bytes; ++i) {
    if ((a.addr[i] & mask.addr[i]) != (b.addr[i] & mask.addr[i])) return false;
  }
  return true;
}

std::vector<NetAddr> unusableIpv6(const std::string& ifInet6) {
  constexpr unsigned kTentative = 0x40, kDadFailed = 0x08;  // IFA_F_* (linux/if_addr.h)
  std::vector<NetAddr> out;
  std::istringstream in(ifInet6);
  for (std::string line; std::getline(in, line);) {
    // "fd730000000000000000000000000001 02 40 00 40     eth0": address, ifindex, prefix, scope,
    // flags (hex), name.
    std::istringstream f(line);
    std::string hex, index, prefix, scope, flags;
    if (!(f >> hex >> index >> prefix >> scope >> flags) || hex.size() != 32) continue;
    const unsigned long bits = std::strtoul(flags.c_str(), nullptr, 16);
    if (!(bits & (kTentative | kDadFailed))) continue;
    NetAddr a;
    a.family = AF_INET6;
    bool ok = true;
    for (size_t i = 0; i < 16 && ok; ++i) {
      char* end = nullptr;
      const std::string byte = hex.substr(2 * i, 2);
      a.addr[i] = static_cast<uint8_t>(std::strtoul(byte.c_str(), &end, 16));
      ok = end == byte.c_str() + 2;
    }
    if (ok) out.push_back(a);
  }
  return out;
}

namespace {

std::vector<NetAddr> unusableHere() {
  std::ifstream f("/proc/net/if_inet6");
  if (!f) return {};
  std::stringstream text;
  text << f.rdbuf();
  return unusableIpv6(text.str());
}

}  // namespace

// Why the choice is loopback where not even loopback is up.
constexpr const char* kNothingUp = "no interface is up, not even loopback (lo is down)";

std::vector<InterfaceAddr> upInterfaces() {
  const std::vector<NetAddr> unusable = unusableHere();
  ifaddrs* list = nullptr;
  checkSys(getifaddrs(&list), "getifaddrs");
  std::vector<InterfaceAddr> out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || !(i->ifa_flags & IFF_UP)) continue;
    if (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6) continue;
    InterfaceAddr a;
    a.name = i->ifa_name;
    a.addr = NetAddr::fromSockaddr(i->ifa_addr);
    if (i->ifa_netmask) {
      // The mask's family is not always set: read it as the address's.
      sockaddr_storage mask{};
      std::memcpy(&mask, i->ifa_netmask, a.addr.family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
      mask.ss_family = a.addr.family;
      a.netmask = NetAddr::fromSockaddr(reinterpret_cast<const sockaddr*>(&mask));
    }
    a.loopback = (i->ifa_flags & IFF_LOOPBACK) || a.addr.isLoopback();
    bool usable = true;
    for (const NetAddr& u : unusable) usable = usable && !(a.addr.family == AF_INET6 && a.addr.sameHost(u));
    if (usable) out.push_back(a);
  }
  freeifaddrs(list);
  return out;
}

namespace {

// `to` is 0.0.0.0 (::) or one of `up` (upInterfaces(): this host's usable addresses).
bool onThisHost(const NetAddr& to, const std::vector<InterfaceAddr>& up) {
  bool local = to.sameHost(NetAddr{to.family, 0, {}});
  for (const InterfaceAddr& a : up) local = local || a.addr.sameHost(to);
  return local;
}

// The address the kernel's routing table would send from to reach `to` (connecting a UDP socket
// sends nothing), or an unset address where there is no usable route. While an IPv6 address is
// in duplicate address detection (upInterfaces leaves it out), the kernel already routes to it
// locally, and to its subnet from ::1 (it has no other source to give): neither reaches `to`.
// A loopback source counts only for a `to` on this host.
NetAddr routeSource(const NetAddr& to, const std::vector<InterfaceAddr>& up) {
  Fd fd(::socket(to.family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return NetAddr{};
  sockaddr_storage ss;
  const socklen_t len = to.toSockaddr(&ss);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return NetAddr{};
  sockaddr_storage me{};
  socklen_t meLen = sizeof(me);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&me), &meLen) != 0) return NetAddr{};
  const NetAddr source = NetAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&me));
  bool usable = false;
  for (const InterfaceAddr& a : up) usable = usable || a.addr.sameHost(source);
  // Nor does a link-local source, which no rank listens on (while a global address is tentative
  // the kernel routes from the link-local one that finished first; the netns ipv6_dad case).
  return usable && !source.isLinkLocal() && (!source.isLoopback() || onThisHost(to, up)) ? source : NetAddr{};
}

}  // namespace

InterfaceChoice chooseInterface(const std::string& spec, const NetAddr* reach) {
  const std::vector<InterfaceAddr> up = upInterfaces();  // read once: getifaddrs and /proc
  std::vector<InterfaceAddr> candidates;
  for (const InterfaceAddr& a : up) {
    if (a.addr.isLinkLocal()) continue;
    if (spec.empty()) {
      if (a.loopback) continue;
      // Container bridges are rarely what connects hosts.
      if (a.name.compare(0, 6, "docker") == 0 || a.name.compare(0, 4, "virbr") == 0) continue;
    } else if (!ifnameMatches(spec, a.name)) {
      continue;
    }
    candidates.push_back(a);
  }
  const std::string bySpec = spec.empty() ? "" : "LOCKSTEP_SOCKET_IFNAME=" + spec + ", ";
  if (candidates.empty()) {
    if (!spec.empty()) {
      throw InvalidArgument("LOCKSTEP_SOCKET_IFNAME=\"" + spec +
                            "\" matches no usable interface (one that is down, or has no address yet, is not usable)");
    }
    // 127.0.0.1, unless lo has only ::1 (an IPv6-only host or namespace, where binding 127.0.0.1
    // failed).
    NetAddr lo = NetAddr::loopback(), v6;
    bool v4 = false;
    for (const InterfaceAddr& a : up) {
      if (!a.loopback) continue;
      if (a.addr.family == AF_INET) v4 = true;
      if (a.addr.family == AF_INET6 && !v6.valid()) v6 = a.addr;
    }
    if (!v4 && v6.valid()) lo = v6;
    // Not even loopback is up (a network namespace just made, whose lo starts down): nothing is
    // reached, this host's own rendezvous included. Said as unreachable, so that init waits for
    // the network up to LOCKSTEP_TIMEOUT and then says so, where it waited out the timeout
    // blaming "the root" (helper-96).
    if (!v4 && !v6.valid()) return InterfaceChoice{"lo", lo, kNothingUp, true};
    // A rendezvous at an address of this host (on an interface skipped above, such as docker0)
    // or at 0.0.0.0 is reached over loopback; one elsewhere is not, whatever route leads there
    // (from a link-local address while the others are in duplicate address detection; from ::1
    // while all are): the network is not up yet.
    return InterfaceChoice{"lo", lo, "no other interface is up: single-host only",
                           reach && reach->valid() && !reach->isLoopback() && !onThisHost(*reach, up)};
  }
  // Score, in order of weight: not loopback, reaching the root (its subnet, or the route to it),
  // this process's NUMA node, IPv4; the first wins ties. Not the carrier: an interface just set
  // up has none for up to a second (the kernel's link watch), and a link that is down at the
  // start may come back (connects retry until the timeout).
  const bool useReach = reach && reach->valid() && !reach->isLoopback();
  // The route decides only where no candidate shares the rendezvous's subnet: among those that
  // do, the NUMA node and the family do (several NICs of one subnet, one per NUMA node).
  bool onSubnet = false;
  for (const InterfaceAddr& a : candidates) onSubnet |= useReach && sameSubnet(a.addr, *reach, a.netmask);
  const NetAddr route = useReach && !onSubnet ? routeSource(*reach, up) : NetAddr{};
  const int numa = localTopology().boundNuma;
  auto score = [&](const InterfaceAddr& a) {
    int s = 0;
    if (!a.loopback) s += 16;
    if (useReach && sameSubnet(a.addr, *reach, a.netmask)) s += 8;
    if (route.valid() && a.addr.sameHost(route)) s += 4;
    if (numa >= 0 && localTopology().numaOfInterface(a.name) == numa) s += 2;
    if (a.addr.family == AF_INET) s += 1;
    return s;
  };
  const InterfaceAddr* best = &candidates.front();
  for (const InterfaceAddr& a : candidates) {
    if (score(a) > score(*best)) best = &a;
  }
  std::string why = bySpec;
  const int s = score(*best);
  if (s & 8)
    why += "on the subnet of the rendezvous " + reach->str();
  else if (s & 4)
    why += "the route to the rendezvous " + reach->str() + " leaves from it";
  else if (useReach)
    why += "no interface reaches the rendezvous " + reach->str() + " by subnet or route: first usable";
  else
    why += "first usable";
  if (s & 2) why += ", on this process's NUMA node " + std::to_string(numa);
  if (candidates.size() > 1) why += "; " + std::to_string(candidates.size()) + " candidate addresses";
  return InterfaceChoice{best->name, best->addr, why, useReach && !onSubnet && !route.valid()};
}

NetAddr pickLocalAddress(const std::string& spec) { return chooseInterface(spec).addr; }

namespace {

// Tries `attempt` again every 250 ms until it gives a choice or `timeout` has passed (one last
// try after it): how a rank waits for the network to come up (a link, an address DHCP has not
// given yet) instead of failing at once.
template <class Attempt>
std::optional<InterfaceChoice> retryUntil(std::chrono::milliseconds timeout, Attempt attempt) {
  const Deadline dl = Deadline::after(timeout);
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    if (std::optional<InterfaceChoice> nic = attempt()) return nic;
    if (dl.expired()) return std::nullopt;
  }
}

// The interfaces of this host LOCKSTEP_SOCKET_IFNAME names, up or not, with an address or not.
std::string namedInterfaces(const std::string& spec) {
  std::string names;
  if (struct if_nameindex* list = ::if_nameindex()) {
    for (struct if_nameindex* i = list; i->if_index != 0 || i->if_name != nullptr; ++i) {
      if (ifnameMatches(spec, i->if_name)) names += (names.empty() ? "" : ", ") + std::string(i->if_name);
    }
    ::if_freenameindex(list);
  }
  return names;
}

// The interface LOCKSTEP_SOCKET_IFNAME names, waited for where it exists but is down or has no
// address yet (as the default choice waits for the network): the variable, set out of
// NCCL_SOCKET_IFNAME habit, once turned that wait into a failure at once. A name that matches
// no interface at all is a mistake, refused at once.
InterfaceChoice awaitNamedInterface(const std::string& spec, const NetAddr* root, std::chrono::milliseconds timeout,
                                    int rank) {
  try {
    return chooseInterface(spec, root);
  } catch (const InvalidArgument&) {
    const std::string names = namedInterfaces(spec);
    if (names.empty()) throw;
    LS_WARN(rank, "rank " << rank << ": LOCKSTEP_SOCKET_IFNAME=" << spec << " names " << names
                          << ", not up with an address yet; waiting up to LOCKSTEP_TIMEOUT");
  }
  const auto nic = retryUntil(timeout, [&]() -> std::optional<InterfaceChoice> {
    try {
      return chooseInterface(spec, root);
    } catch (const InvalidArgument&) {
      return std::nullopt;
    }
  });
  if (nic) return *nic;
  throw Timeout("rank " + std::to_string(rank) + ": LOCKSTEP_SOCKET_IFNAME=" + spec + " names " +
                namedInterfaces(spec) + ", which did not come up with an address within LOCKSTEP_TIMEOUT (" +
                std::to_string(timeout.count()) + " ms)");
}

}  // namespace

InterfaceChoice awaitInterface(const std::string& spec, const NetAddr& root, std::chrono::milliseconds timeout,
                               int rank) {
  if (!spec.empty()) return awaitNamedInterface(spec, &root, timeout, rank);
  InterfaceChoice nic = chooseInterface(spec, &root);
  if (!nic.rendezvousUnreachable) return nic;
  // What there is: loopback down, loopback alone, or interfaces with no route to the root.
  auto found = [&] {
    if (nic.why == kNothingUp) return std::string(kNothingUp);
    return "only " + nic.name + " " + nic.addr.hostStr() +
           (nic.name == "lo" ? " is up" : " is up, and no route leads there");
  };
  LS_WARN(rank, "rank " << rank << ": no interface reaches the rendezvous at " << root.str() << " (" << found()
                        << "); waiting up to LOCKSTEP_TIMEOUT for the network");
  const auto reaching = retryUntil(timeout, [&]() -> std::optional<InterfaceChoice> {
    nic = chooseInterface(spec, &root);
    if (nic.rendezvousUnreachable) return std::nullopt;
    return nic;
  });
  if (reaching) return *reaching;
  throw Timeout("rank " + std::to_string(rank) + ": no interface of this host reached the rendezvous at " + root.str() +
                " within LOCKSTEP_TIMEOUT (" + std::to_string(timeout.count()) + " ms): " + found() +
                " (is the network up? LOCKSTEP_SOCKET_IFNAME names the interface to use)");
}

NetAddr awaitLocalAddress(const std::string& spec, std::chrono::milliseconds timeout) {
  return spec.empty() ? pickLocalAddress(spec) : awaitNamedInterface(spec, nullptr, timeout, 0).addr;
}

}  // namespace lockstep
