#include "src/topo/topology.h"

#include <sstream>

#include "src/topo/topology_sources.h"

namespace lockstep {

const Topology& localTopology() {
  // hwloc when the build has it; sysfs otherwise, or if hwloc fails at run time.
  static const Topology topology = [] {
#ifdef LOCKSTEP_HAVE_HWLOC
    Topology t;
    if (discoverWithHwloc(&t)) return t;
#endif
    return discoverFromSysfs();
  }();
  return topology;
}

int Topology::numaOfInterface(const std::string& ifname) const {
  for (const PciDevice& d : nics) {
    std::stringstream names(d.name);
    for (std::string n; std::getline(names, n, ',');) {
      if (n == ifname) return d.numa;
    }
  }
  return -1;
}

std::string Topology::describe() const {
  std::ostringstream o;
  auto numaName = [](int n) { return n < 0 ? std::string("-") : std::to_string(n); };
  o << "topology from " << source << ": " << packages << " package(s), " << cores << " core(s), " << pus
    << " hardware thread(s), " << numa.size() << " NUMA node(s)\n";
  for (const NumaNode& n : numa) {
    o << "  NUMA " << n.os << ": cpus " << n.cpus;
    if (n.memBytes) o << ", " << (n.memBytes >> 20) << " MiB";
    o << "\n";
  }
  o << "  this process: cpus " << boundCpus << ", NUMA " << numaName(boundNuma) << "\n";
  for (const auto* list : {&gpus, &nics}) {
    for (const PciDevice& d : *list) {
      o << "  " << (d.kind == PciDevice::kGpu ? "GPU " : "NIC ") << d.busId << " " << d.name << " NUMA "
        << numaName(d.numa) << "\n";
    }
  }
  if (gpus.empty()) o << "  no GPU found\n";
  return o.str();
}

}  // namespace lockstep
