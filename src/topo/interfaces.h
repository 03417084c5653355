// Which local address to listen on and publish: NCCL's LOCKSTEP_SOCKET_IFNAME syntax, and never
// loopback or link-local unless nothing else exists (then the job can only be single-host).
#pragma once

#include <string>

#include "src/net/socket.h"

namespace lockstep {

// spec: "" (default choice), "eth,ib" (name prefixes), "^docker,lo" (exclude prefixes),
// "=eth0" (exact names). Returns the first IPv4 (then IPv6) address of the first matching up
// interface. Falls back to loopback when the spec is empty and no other interface exists; throws
// InvalidArgument when a non-empty spec matches nothing.
NetAddr pickLocalAddress(const std::string& spec);

bool ifnameMatches(const std::string& spec, const std::string& name);

}  // namespace lockstep
