#include <time.h>

#include "transport/transport.h"

namespace lockstep {

// A transport that cannot tell when its peer moved just sleeps.
void Link::wait(bool, long ns) {
  timespec ts{ns / 1'000'000'000, ns % 1'000'000'000};
  nanosleep(&ts, nullptr);
}

}  // namespace lockstep
