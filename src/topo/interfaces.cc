#include "src/topo/interfaces.h"

#include <ifaddrs.h>
#include <net/if.h>

#include <sstream>
#include <vector>

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

NetAddr pickLocalAddress(const std::string& spec) {
  ifaddrs* list = nullptr;
  checkSys(getifaddrs(&list), "getifaddrs");
  std::vector<NetAddr> candidates[2];  // [0]: IPv4, [1]: IPv6
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || !(i->ifa_flags & IFF_UP)) continue;
    if (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6) continue;
    NetAddr a = NetAddr::fromSockaddr(i->ifa_addr);
    if (spec.empty()) {
      if (a.isLoopback() || a.isLinkLocal() || (i->ifa_flags & IFF_LOOPBACK)) continue;
      std::string name = i->ifa_name;
      // Container bridges are rarely what connects hosts.
      if (name.compare(0, 6, "docker") == 0 || name.compare(0, 4, "virbr") == 0) continue;
    } else if (!ifnameMatches(spec, i->ifa_name) || a.isLinkLocal()) {
      continue;
    }
    candidates[a.family == AF_INET ? 0 : 1].push_back(a);
  }
  freeifaddrs(list);
  for (auto& c : candidates) {
    if (!c.empty()) return c.front();
  }
  if (!spec.empty()) throw InvalidArgument("LOCKSTEP_SOCKET_IFNAME=\"" + spec + "\" matches no usable interface");
  return NetAddr::loopback();
}

}  // namespace lockstep
