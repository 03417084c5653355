#include <time.h>

#include "src/core/errors.h"
#include "transport/transport.h"

namespace lockstep {

// A transport that cannot tell when its peer moved just sleeps.
void Link::wait(bool, long ns) {
  timespec ts{ns / 1'000'000'000, ns % 1'000'000'000};
  nanosleep(&ts, nullptr);
}

// Only links that say sendsByReference() are asked to send by reference.
uint64_t Link::postSendRef(const void*, size_t, const MessageTag&) {
  throw InternalError("postSendRef on a link that does not send by reference");
}

bool Link::settleRef(uint64_t, bool) { return true; }

}  // namespace lockstep
