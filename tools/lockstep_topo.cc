// lockstep-topo: what this rank sees of the machine, and how it would reach every peer.
//
//   lockstep-topo                      this process: NUMA nodes, cores, GPUs and NICs (hwloc),
//                                      interfaces and the one Lockstep would listen on
//   lockstep-run -n 4 lockstep-topo    the same on rank 0, then a matrix in the manner of
//                                      `nvidia-smi topo -m`: the transport (and interface) each
//                                      rank uses to each peer, its host, NUMA node and address,
//                                      and the ring order
//   lockstep-topo --all                under a launcher, every rank prints its own view
//
// Launched means the rank and world size are known from the environment (LOCKSTEP_*, torchrun,
// Slurm, OpenMPI or PMI variables; src/core/config.h); then a communicator is built as any
// program would (lockstepCommInitFromEnv), so what is printed is what a real job gets.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "lockstep/lockstep.h"
#include "src/core/api_internal.h"
#include "src/core/communicator.h"
#include "src/core/config.h"
#include "src/topo/interfaces.h"
#include "src/topo/ordering.h"
#include "src/topo/topology.h"

using namespace lockstep;

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: lockstep-topo [--all]\n"
               "Prints this process's topology; under a launcher (lockstep-run -n N lockstep-topo) rank 0 also\n"
               "prints the transport and interface every rank uses to every peer. --all: every rank prints.\n");
}

int prefixLength(const NetAddr& mask) {
  int bits = 0;
  for (size_t i = 0; i < (mask.family == AF_INET ? 4u : 16u); ++i) bits += __builtin_popcount(mask.addr[i]);
  return bits;
}

std::string bare(const NetAddr& a) { return a.hostStr(); }

// self: this rank's entry once a communicator exists (its interface was chosen knowing the
// rendezvous address), else nullptr (the choice without one). False when no interface can be
// chosen: everything else is printed all the same, since this is where one looks to see why.
bool printLocal(const Config& config, const PeerInfo* self) {
  std::printf("%s", localTopology().describe().c_str());
  InterfaceChoice choice;
  std::string failure;
  try {
    if (self) {
      choice = InterfaceChoice{self->ifnameStr(), self->addr, "as this communicator chose"};
    } else {
      // The rendezvous a rank would use (LOCKSTEP_ROOT, MASTER_ADDR) steers its choice: so here.
      NetAddr root;
      if (!config.launch.root.empty()) root = NetAddr::parse(config.launch.root);
      choice = chooseInterface(config.socketIfname, root.valid() ? &root : nullptr);
    }
  } catch (const std::exception& e) {
    failure = e.what();
  }
  std::printf("interfaces:");
  for (const InterfaceAddr& a : upInterfaces()) {
    std::printf(" %s %s/%d%s;", a.name.c_str(), bare(a.addr).c_str(), prefixLength(a.netmask),
                a.loopback             ? " (loopback)"
                : a.addr.isLinkLocal() ? " (link-local)"
                                       : "");
  }
  if (!failure.empty()) {
    std::printf("\nlistens on: nothing: %s\n", failure.c_str());
    return false;
  }
  std::printf("\nlistens on: %s %s (%s)\n", choice.name.c_str(), bare(choice.addr).c_str(), choice.why.c_str());
  return true;
}

// "SHM", "NET(eth0)", "X": what rank a uses to reach rank b, from the shared peer table (and,
// on this rank's row, from the links it really made).
std::string cell(const Communicator& c, int a, int b) {
  if (a == b) return "X";
  std::string t = a == c.rank() ? c.transportTo(b) : c.transportBetween(a, b);
  if (t == "socket") return "NET(" + c.peers()[a].ifnameStr() + ")";
  for (char& ch : t) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return t;
}

void printMatrix(const Communicator& c) {
  const std::vector<PeerInfo>& peers = c.peers();
  const int n = c.size();
  size_t width = 6;
  for (int a = 0; a < n; ++a) {
    for (int b = 0; b < n; ++b) width = std::max(width, cell(c, a, b).size() + 2);
  }
  std::printf("\n%-8s", "");
  for (int b = 0; b < n; ++b) std::printf("%-*s", static_cast<int>(width), ("rank" + std::to_string(b)).c_str());
  std::printf("%-22s %-8s %-5s %s\n", "host", "pid", "NUMA", "address");
  for (int a = 0; a < n; ++a) {
    const PeerInfo& p = peers[a];
    std::printf("%-8s", ("rank" + std::to_string(a)).c_str());
    for (int b = 0; b < n; ++b) std::printf("%-*s", static_cast<int>(width), cell(c, a, b).c_str());
    char host[64];
    std::snprintf(host, sizeof(host), "%.14s/%04llx", p.hostname, static_cast<unsigned long long>(p.hostHash & 0xffff));
    std::printf("%-22s %-8lld %-5s %s %s\n", host, static_cast<long long>(p.pid),
                p.numaNode < 0 ? "-" : std::to_string(p.numaNode).c_str(), p.ifnameStr().c_str(), bare(p.addr).c_str());
  }
  std::vector<uint64_t> hosts;
  for (const PeerInfo& p : peers) hosts.push_back(p.hostHash);
  std::printf("\nring: %s (%d host crossing(s))\n", describeRing(hosts, c.ringOrder().rankAt).c_str(),
              hostCrossings(hosts, c.ringOrder().rankAt));
  std::printf(
      "legend: X self; INPROC same process; SHM shared memory (same host, /dev/shm, user and user namespace); "
      "NET(if) TCP from that interface (another host, /dev/shm or user, or LOCKSTEP_TRANSPORTS); host = "
      "hostname/host-id hash. For host buffers: device buffers between ranks of one host may take cuda_ipc, "
      "which needs a CUDA context and is not probed here\n");
}

}  // namespace

int main(int argc, char** argv) {
  bool all = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--all") == 0) {
      all = true;
    } else {
      usage();
      return std::strcmp(argv[i], "-h") == 0 || std::strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
  }
  Config config;
  try {
    config = Config::fromEnvironment();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lockstep-topo: %s\n", e.what());
    return 2;
  }
  if (!config.launch.rank || !config.launch.worldSize) return printLocal(config, nullptr) ? 0 : 1;
  lockstepComm_t comm;
  if (lockstepCommInitFromEnv(&comm) != lockstepSuccess) {
    std::fprintf(stderr, "lockstep-topo: init: %s\n", lockstepGetLastError(nullptr));
    return 1;
  }
  const Communicator& c = *communicatorOf(comm);
  if (all || c.rank() == 0) {
    std::printf("rank %d of %d (launched by %s)\n", c.rank(), c.size(), config.launch.launcher.c_str());
    printLocal(config, &c.peers()[c.rank()]);
  }
  if (c.rank() == 0) printMatrix(c);
  std::fflush(stdout);
  // Nobody leaves before rank 0 has printed: a peer's exit is not an error, but keep it tidy.
  lockstepResult_t r = lockstepBarrier(comm, nullptr);
  lockstepCommDestroy(comm);
  return r == lockstepSuccess ? 0 : 1;
}
