// Which local address to listen on and publish: NCCL's LOCKSTEP_SOCKET_IFNAME syntax, and never
// loopback or link-local unless nothing else exists (then the job can only be single-host; the
// communicator refuses cross-host peers that publish such an address).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "src/net/socket.h"

namespace lockstep {

// One address of an up interface.
struct InterfaceAddr {
  std::string name;  // "eth0"
  NetAddr addr;      // port 0
  NetAddr netmask;
  bool loopback = false;
};

// Every usable address of every up interface, in the kernel's order (IPv4 and IPv6). An IPv6
// address still in duplicate address detection (tentative), or that failed it, is left out: it
// cannot be bound yet, or ever (getifaddrs lists it all the same).
std::vector<InterfaceAddr> upInterfaces();

// The IPv6 addresses /proc/net/if_inet6 (its text) flags tentative or DAD-failed.
std::vector<NetAddr> unusableIpv6(const std::string& ifInet6);

struct InterfaceChoice {
  std::string name;
  NetAddr addr;
  std::string why;  // how it was chosen, for the INFO log
  // The rendezvous is off loopback and nothing here leads to it: no interface but loopback is
  // up, or no route reaches it. The network is not up yet, or this host cannot take part.
  bool rendezvousUnreachable = false;
};

// spec: "" (default choice), "eth,ib" (name prefixes), "^docker,lo" (exclude prefixes),
// "=eth0" (exact names), as NCCL_SOCKET_IFNAME. Link-local addresses are never used; without a
// spec, neither are loopback and container bridges (docker*, virbr*). Among the candidates, in
// order of weight: one that is not loopback (a spec such as "^docker" lets
// lo in, and lo comes first in the kernel's order, but reaches no other host); one that reaches
// `reach` (the rendezvous root, when it is not loopback): on its subnet, as NCCL does for
// NCCL_COMM_ID, or the address the kernel's route to it leaves from, as Gloo takes; then the
// interface on this process's NUMA node, then IPv4, then the kernel's order. With an empty spec
// and no candidate, loopback; with a spec that matches nothing, InvalidArgument.
InterfaceChoice chooseInterface(const std::string& spec, const NetAddr* reach = nullptr);
NetAddr pickLocalAddress(const std::string& spec);
// chooseInterface for a rank of a communicator whose rendezvous is `root`. Where nothing here leads
// to it yet (rendezvousUnreachable) and no spec is given, the network is still coming up (a
// link, an address not given yet): waits for it, as for a root that is not up yet, re-reading the
// interfaces every 250 ms, up to `timeout` (then Timeout). Listening on loopback or a dead-end
// interface instead made the job fail later, blaming a healthy peer. With a spec that names
// interfaces of this host none of which is up with an address yet, waits for one likewise; a spec
// that names no interface at all is refused at once (InvalidArgument).
InterfaceChoice awaitInterface(const std::string& spec, const NetAddr& root, std::chrono::milliseconds timeout,
                               int rank);
// The address a unique id's rendezvous listens on (lockstepGetUniqueId, the launcher): as
// pickLocalAddress, waiting as above for an interface the spec names that is not up yet.
NetAddr awaitLocalAddress(const std::string& spec, std::chrono::milliseconds timeout);

bool ifnameMatches(const std::string& spec, const std::string& name);
// True when a and b lie in the subnet of `mask` (same family).
bool sameSubnet(const NetAddr& a, const NetAddr& b, const NetAddr& mask);

}  // namespace lockstep
