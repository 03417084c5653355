// The two ways of discovering the topology (src/topo/topology.h): hwloc, and sysfs as the
// fallback for builds without hwloc.
#pragma once

#include <string>

#include "src/topo/topology.h"

namespace lockstep {

#ifdef LOCKSTEP_HAVE_HWLOC
// False if hwloc fails to load the topology (then sysfs is used).
bool discoverWithHwloc(Topology* out);
#endif
Topology discoverFromSysfs();

// True if `dir` (/sys/devices/system/node) exists and lists no node: hwloc 2.9 asserts there
// ("nbnodes >= 1") and ends the process, which no caller can catch (helper-73), so such a
// system is read from sysfs.
bool numaDirectoryEmpty(const std::string& dir);

// "0-3,8" for the CPUs this process may run on (sched_getaffinity).
std::string affinityCpuList();

}  // namespace lockstep
