// Topology from sysfs, for builds without hwloc: NUMA nodes and their CPUs, cores, and the PCI
// GPUs and network interfaces with the NUMA node sysfs reports for them.
#include <dirent.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "src/topo/topology_sources.h"

namespace lockstep {
namespace {

std::string readLine(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  return s;
}

std::vector<std::string> listDir(const std::string& path) {
  std::vector<std::string> out;
  if (DIR* d = opendir(path.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') out.push_back(e->d_name);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// "0-3,8" -> {0, 1, 2, 3, 8}
std::set<int> parseCpuList(const std::string& list) {
  std::set<int> cpus;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) {
    int lo = 0, hi = 0;
    if (std::sscanf(item.c_str(), "%d-%d", &lo, &hi) == 2) {
      for (int c = lo; c <= hi && c - lo < 1 << 16; ++c) cpus.insert(c);
    } else if (std::sscanf(item.c_str(), "%d", &lo) == 1) {
      cpus.insert(lo);
    }
  }
  return cpus;
}

std::string formatCpuList(const std::set<int>& cpus) {
  std::string out;
  for (auto it = cpus.begin(); it != cpus.end();) {
    int lo = *it, hi = lo;
    while (++it != cpus.end() && *it == hi + 1) ++hi;
    // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive) on "-" + to_string().
    if (!out.empty()) out += ',';
    out += std::to_string(lo);
    if (hi > lo) {
      out += '-';
      out += std::to_string(hi);
    }
  }
  return out;
}

std::set<int> affinity() {
  std::set<int> cpus;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) cpus.insert(c);
    }
  }
  return cpus;
}

bool isPciBusId(const std::string& s) {
  unsigned a, b, c, d;
  char tail;
  return s.size() == 12 && std::sscanf(s.c_str(), "%4x:%2x:%2x.%1x%c", &a, &b, &c, &d, &tail) == 4;
}

// The PCI device a sysfs device path belongs to (the deepest bus-id component), or "".
std::string pciOf(const std::string& devicePath) {
  char real[PATH_MAX];
  if (!realpath(devicePath.c_str(), real)) return "";
  std::string found;
  std::stringstream ss(real);
  for (std::string part; std::getline(ss, part, '/');) {
    if (isPciBusId(part)) found = part;
  }
  return found;
}

int pciNuma(const std::string& busId) {
  std::string s = readLine("/sys/bus/pci/devices/" + busId + "/numa_node");
  return s.empty() ? -1 : std::max(-1, std::atoi(s.c_str()));
}

}  // namespace

std::string affinityCpuList() { return formatCpuList(affinity()); }

Topology discoverFromSysfs() {
  Topology t;
  t.source = "sysfs (built without hwloc)";
  const std::set<int> bound = affinity();
  t.boundCpus = formatCpuList(bound);
  std::set<int> boundNodes;
  for (const std::string& e : listDir("/sys/devices/system/node")) {
    if (e.rfind("node", 0) != 0 || e.size() < 5 || !std::isdigit(static_cast<unsigned char>(e[4]))) continue;
    NumaNode n;
    n.os = std::atoi(e.c_str() + 4);
    n.cpus = readLine("/sys/devices/system/node/" + e + "/cpulist");
    std::ifstream mem("/sys/devices/system/node/" + e + "/meminfo");
    for (std::string line; std::getline(mem, line);) {
      unsigned long long kb = 0;
      if (line.find("MemTotal:") != std::string::npos &&
          std::sscanf(line.c_str(), "%*s %*d MemTotal: %llu", &kb) == 1) {
        n.memBytes = kb << 10;
      }
    }
    for (int c : parseCpuList(n.cpus)) {
      if (bound.count(c)) boundNodes.insert(n.os);
    }
    t.numa.push_back(n);
  }
  std::sort(t.numa.begin(), t.numa.end(), [](const NumaNode& a, const NumaNode& b) { return a.os < b.os; });
  if (boundNodes.size() == 1) t.boundNuma = *boundNodes.begin();

  std::set<std::pair<int, int>> cores;
  std::set<int> packages;
  for (int c : parseCpuList(readLine("/sys/devices/system/cpu/online"))) {
    std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(c) + "/topology/";
    int pkg = std::atoi(readLine(base + "physical_package_id").c_str());
    packages.insert(pkg);
    cores.insert({pkg, std::atoi(readLine(base + "core_id").c_str())});
    ++t.pus;
  }
  if (t.pus == 0) t.pus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  t.cores = cores.empty() ? t.pus : static_cast<int>(cores.size());
  t.packages = packages.empty() ? 1 : static_cast<int>(packages.size());

  // GPUs: PCI display (0x0300) and 3D (0x0302) controllers.
  for (const std::string& bus : listDir("/sys/bus/pci/devices")) {
    unsigned cls = std::strtoul(readLine("/sys/bus/pci/devices/" + bus + "/class").c_str(), nullptr, 16);
    if ((cls >> 8) != 0x0300 && (cls >> 8) != 0x0302) continue;
    std::string vendor = readLine("/sys/bus/pci/devices/" + bus + "/vendor");
    std::string device = readLine("/sys/bus/pci/devices/" + bus + "/device");
    t.gpus.push_back(PciDevice{PciDevice::kGpu, bus, vendor + ":" + device, pciNuma(bus)});
  }
  // NICs: network interfaces backed by a PCI device (virtual ones have none).
  for (const std::string& ifname : listDir("/sys/class/net")) {
    std::string bus = pciOf("/sys/class/net/" + ifname + "/device");
    if (bus.empty()) continue;
    t.nics.push_back(PciDevice{PciDevice::kNic, bus, ifname, pciNuma(bus)});
  }
  // One NUMA node: every device is on it, whatever sysfs says (it reports -1 then), as hwloc has it.
  if (t.numa.size() == 1) {
    for (auto* list : {&t.gpus, &t.nics}) {
      for (PciDevice& d : *list) d.numa = d.numa < 0 ? t.numa[0].os : d.numa;
    }
  }
  return t;
}

}  // namespace lockstep
