// Both ends of a fresh TCP connection over loopback, for tests of the socket helpers.
#pragma once

#include <chrono>
#include <utility>

#include "src/core/clock.h"
#include "src/net/socket.h"

namespace lockstep::testing {

inline std::pair<Fd, Fd> loopbackPair() {
  Fd listener = listenOn(NetAddr::loopback());
  const Deadline dl = Deadline::after(std::chrono::seconds(5));
  Fd client = connectTo(localAddress(listener.get()), dl);
  Fd server = acceptUntil(listener.get(), dl);
  return {std::move(client), std::move(server)};
}

}  // namespace lockstep::testing
