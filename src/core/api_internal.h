// For tools that look below the C ABI (lockstep-topo): the communicator behind a handle.
#pragma once

#include "lockstep/lockstep.h"

namespace lockstep {

class Communicator;
// nullptr for NULL or a destroyed handle. The handle must stay alive while the result is used.
Communicator* communicatorOf(lockstepComm_t comm);

}  // namespace lockstep
