// Topology through hwloc: NUMA nodes, packages, cores, PUs, and the PCI GPUs and NICs with the
// NUMA node of their closest non-I/O ancestor (what "locality" means in hwloc).
#include <hwloc.h>

#include <cstdio>

#include "src/topo/topology_sources.h"

namespace lockstep {
namespace {

std::string cpuList(hwloc_const_bitmap_t set) {
  char* s = nullptr;
  hwloc_bitmap_list_asprintf(&s, set);
  std::string out = s ? s : "";
  free(s);
  return out;
}

// The NUMA node an I/O object is attached to, if exactly one.
int numaOf(hwloc_topology_t topo, hwloc_obj_t obj) {
  hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topo, obj);
  if (!anc || !anc->nodeset || hwloc_bitmap_weight(anc->nodeset) != 1) return -1;
  return hwloc_bitmap_first(anc->nodeset);
}

std::string busIdOf(hwloc_obj_t pci) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04x:%02x:%02x.%01x", pci->attr->pcidev.domain, pci->attr->pcidev.bus,
                pci->attr->pcidev.dev, pci->attr->pcidev.func);
  return buf;
}

// The OS names of a PCI device's children ("eth0", "mlx5_0", "cuda0"), comma-separated.
std::string osNames(hwloc_obj_t pci) {
  std::string names;
  for (hwloc_obj_t c = pci->io_first_child; c; c = c->next_sibling) {
    if (c->type != HWLOC_OBJ_OS_DEVICE || !c->name) continue;
    if (!names.empty()) names += ',';
    names += c->name;
  }
  return names;
}

// One topology per process, loaded on first use and never destroyed. Loading walks sysfs and the
// PCI bus (milliseconds) and a process may create many communicators. And destroying the last
// topology makes hwloc unload its PCI plugin, and with it libpciaccess, whose globals still
// point at memory it allocated: LeakSanitizer then reports 1016 bytes lost in an unnamed module
// (reproduced with a five-line init/load/destroy program; nothing is reported while the plugin
// stays loaded). hwloc allows concurrent read-only use of a loaded topology.
hwloc_topology_t processTopology() {
  static hwloc_topology_t topo = [] {
    hwloc_topology_t t;
    if (hwloc_topology_init(&t) != 0) return hwloc_topology_t{nullptr};
    hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
#if HWLOC_API_VERSION >= 0x00020100
    // Not the components that ask a graphics or compute stack: the PCI bus and sysfs give every
    // device and locality used here. The GL component opens X displays :0-:9 in turn, over the
    // abstract socket, /tmp/.X11-unix and TCP ports 6000-6009 (30 connections at every init), and
    // waits for ever in XOpenDisplay where anything else listens on one of those ports: every
    // rank's init hung there, beyond LOCKSTEP_TIMEOUT (as mpirun's did, open-mpi/ompi#10025,
    // hwloc#621; PRRTE and PMIx exclude it too). OpenCL, CUDA, NVML, ROCm SMI and Level Zero would
    // load and initialise the GPU drivers in every process, before the program picks its device.
    for (const char* name : {"gl", "opencl", "cuda", "nvml", "rsmi", "levelzero"}) {
      hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, name);
    }
#endif
    if (hwloc_topology_load(t) != 0) {
      hwloc_topology_destroy(t);
      return hwloc_topology_t{nullptr};
    }
    return t;
  }();
  return topo;
}

}  // namespace

bool discoverWithHwloc(Topology* out) {
  hwloc_topology_t topo = processTopology();
  if (!topo) return false;
  Topology& t = *out;
  t.source = std::string("hwloc ") + LOCKSTEP_HWLOC_VERSION;
  t.packages = std::max(1, hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE));
  t.cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
  t.pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
  const int nnuma = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < nnuma; ++i) {
    hwloc_obj_t n = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    t.numa.push_back(NumaNode{static_cast<int>(n->os_index), n->attr ? n->attr->numanode.local_memory : 0,
                              n->cpuset ? cpuList(n->cpuset) : ""});
  }
  for (hwloc_obj_t pci = hwloc_get_next_pcidev(topo, nullptr); pci; pci = hwloc_get_next_pcidev(topo, pci)) {
    const unsigned cls = pci->attr->pcidev.class_id;  // class << 8 | subclass
    const bool gpu = cls == 0x0300 || cls == 0x0302 || (cls >> 8) == 0x12;
    const bool nic = (cls >> 8) == 0x02;
    if (!gpu && !nic) continue;
    std::string name = osNames(pci);
    if (name.empty()) {
      char ids[16];
      std::snprintf(ids, sizeof(ids), "%04x:%04x", pci->attr->pcidev.vendor_id, pci->attr->pcidev.device_id);
      name = ids;
    }
    (gpu ? t.gpus : t.nics)
        .push_back(PciDevice{gpu ? PciDevice::kGpu : PciDevice::kNic, busIdOf(pci), name, numaOf(topo, pci)});
  }
  hwloc_bitmap_t cpus = hwloc_bitmap_alloc(), nodes = hwloc_bitmap_alloc();
  if (hwloc_get_cpubind(topo, cpus, HWLOC_CPUBIND_PROCESS) == 0) {
    t.boundCpus = cpuList(cpus);
    hwloc_cpuset_to_nodeset(topo, cpus, nodes);
    if (hwloc_bitmap_weight(nodes) == 1) t.boundNuma = hwloc_bitmap_first(nodes);
  } else {
    t.boundCpus = affinityCpuList();
  }
  hwloc_bitmap_free(cpus);
  hwloc_bitmap_free(nodes);
  return true;
}

}  // namespace lockstep
