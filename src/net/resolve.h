// Host names to addresses, within a deadline.
#pragma once

#include <string>

#include "src/core/clock.h"

struct addrinfo;

namespace lockstep {

// getaddrinfo(host) for SOCK_STREAM, answered by `deadline`: the lookup runs on a thread of its
// own, abandoned at the deadline, and a temporary failure (EAI_AGAIN: the resolver is down, or
// cannot answer yet) is tried again until then. A resolver that never answered held init for
// 10-60 s whatever LOCKSTEP_TIMEOUT said, and a temporary failure was reported at once as a bad
// argument (helper-96). Deadline::never() looks up once, on the calling thread.
// Throws InvalidArgument where the name does not resolve, Timeout where no answer came in time.
// The result is freed with freeaddrinfo.
addrinfo* resolveHost(const std::string& host, Deadline deadline);

}  // namespace lockstep
