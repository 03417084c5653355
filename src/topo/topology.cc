#include "src/topo/topology.h"

#include <dirent.h>

#include <cstring>
#include <sstream>

#include "src/topo/topology_sources.h"

namespace lockstep {

bool numaDirectoryEmpty(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return false;  // absent: hwloc copes
  bool empty = true;
  while (const dirent* e = ::readdir(d)) {
    if (std::strncmp(e->d_name, "node", 4) == 0 && e->d_name[4] >= '0' && e->d_name[4] <= '9') {
      empty = false;
      break;
    }
  }
  ::closedir(d);
  return empty;
}

const Topology& localTopology() {
  // hwloc when the build has it; sysfs otherwise, or if hwloc fails at run time, or would abort.
  static const Topology topology = [] {
#ifdef LOCKSTEP_HAVE_HWLOC
    Topology t;
    const bool empty = numaDirectoryEmpty("/sys/devices/system/node");
    if (!empty && discoverWithHwloc(&t)) return t;
    t = discoverFromSysfs();
    t.source = empty ? "sysfs (hwloc skipped: /sys/devices/system/node lists no node)" : "sysfs (hwloc failed)";
    return t;
#else
    return discoverFromSysfs();
#endif
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
