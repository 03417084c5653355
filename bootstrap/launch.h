// Launch discovery: turns what a launcher put in the environment (already parsed into
// Config::launch) into a rank, a size and a rendezvous.
#pragma once

#include <memory>

#include "bootstrap/root_service.h"
#include "bootstrap/unique_id.h"
#include "src/core/config.h"

namespace lockstep {

struct LaunchPlan {
  int rank;
  int nranks;
  UniqueIdInfo id;
  // Set on rank 0 in LOCKSTEP_ROOT mode: the rendezvous it serves for the others.
  std::unique_ptr<RootService> rootService;
};

// LOCKSTEP_UNIQUE_ID wins over LOCKSTEP_ROOT. With LOCKSTEP_ROOT, the secret comes from
// LOCKSTEP_SECRET, or is derived from the root address and the launcher's job identity, if any
// (then anyone who can reach the port and knows both can join: set LOCKSTEP_SECRET or use
// LOCKSTEP_UNIQUE_ID on shared networks).
LaunchPlan planLaunch(const Config& config);

}  // namespace lockstep
