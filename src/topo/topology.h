// What this machine looks like from this process: NUMA nodes, cores, PCI GPUs and NICs with the
// NUMA node each is attached to, and where this process is bound.
//
// Discovered through hwloc when the build found it (LOCKSTEP_HAVE_HWLOC); otherwise from sysfs,
// which gives NUMA nodes, CPUs and network interfaces but no PCI GPUs (`source` says which).
// Discovery runs once per process (it costs milliseconds) and the result is shared.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lockstep {

struct NumaNode {
  int os = 0;             // the kernel's node number
  uint64_t memBytes = 0;  // local memory (0 if unknown)
  std::string cpus;       // cpulist, e.g. "0-15,32-47"
};

struct PciDevice {
  enum Kind { kGpu, kNic };
  Kind kind = kNic;
  std::string busId;  // "0000:17:00.0"
  std::string name;   // OS names ("eth0", "mlx5_0", "cuda0") or "vendor:device"
  int numa = -1;      // NUMA node it hangs off; -1 if unknown
};

struct Topology {
  std::string source;  // "hwloc 2.9.0", or "sysfs (built without hwloc)"
  int packages = 0;
  int cores = 0;
  int pus = 0;  // hardware threads
  std::vector<NumaNode> numa;
  std::vector<PciDevice> gpus, nics;
  int boundNuma = -1;     // the one NUMA node this process may run on; -1 if several or unknown
  std::string boundCpus;  // cpulist this process may run on

  // NUMA node of a network interface by OS name ("eth0"); -1 if unknown (virtual interfaces).
  int numaOfInterface(const std::string& ifname) const;
  // Multi-line human-readable summary (lockstep-topo).
  std::string describe() const;
};

// Discovered on first use, then cached for the life of the process.
const Topology& localTopology();

}  // namespace lockstep
