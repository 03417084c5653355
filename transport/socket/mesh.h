// Authenticated TCP connections to a set of peers.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "bootstrap/handshake.h"
#include "src/net/socket.h"
#include "transport/transport.h"

namespace lockstep {

// Collective over all ranks (each passes the peers it wants, possibly none; the relation must be
// symmetric). Returns one connected, authenticated socket per peer. Failures name the peer;
// `what` prefixes messages ("socket transport").
std::map<int, Fd> connectMesh(const TransportContext& ctx, const std::vector<int>& peers, Purpose purpose,
                              const std::string& what);
// `count` such meshes, built at once (each with its own listener): the socket transport's streams.
std::vector<std::map<int, Fd>> connectMeshes(const TransportContext& ctx, const std::vector<int>& peers,
                                             Purpose purpose, const std::string& what, int count);

}  // namespace lockstep
