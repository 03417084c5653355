// What each rank tells the others at init, and the checks made on it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/net/socket.h"

namespace lockstep {

struct Config;

// One network interface address of a rank, with the NUMA node its device hangs off.
struct PeerNic {
  char name[16];  // IFNAMSIZ
  NetAddr addr;   // port 0
  int32_t numa;   // -1: unknown (virtual interface, or no NUMA information)
};
constexpr int kMaxPeerNics = 4;
constexpr int kCpuMaskWords = 16;

struct PeerInfo {
  int32_t rank;
  uint32_t version;     // LOCKSTEP_VERSION_CODE of the library the rank runs
  uint64_t hostHash;    // same value = same host (shared memory reaches)
  uint64_t configHash;  // Config::wireHash(): fields that shape the wire
  int64_t pid;
  uint64_t processToken;   // random per process (and pid): equal tokens = same address space (inproc)
  uint64_t shmId;          // identity of the /dev/shm mount (0 if none): equal = shm can connect
  uint64_t pidNamespace;   // inode of /proc/self/ns/pid: pids only mean something within one
  uint32_t euid;           // segments are created 0600: shm connects only ranks of one user
  uint64_t userNamespace;  // inode of /proc/self/ns/user: euid means one user only within one
  char hostname[64];
  char configSummary[256];          // Config::wireSummary(), to show a difference
  int32_t cpus;                     // CPUs this process may run on
  uint64_t cpuMask[kCpuMaskWords];  // which ones, for CPUs 0..1023 (bit c of word c / 64)
  int32_t cudaIpc;                  // 1: this rank can map device segments and run cuda_ipc kernels
  int32_t numaNode;                 // the NUMA node this process is bound to; -1: several, or unknown
  char ifname[16];                  // the interface of `addr`
  NetAddr addr;                     // where this rank's bootstrap and socket listeners are (port 0)
  int32_t nicCount;                 // valid entries of nics
  PeerNic nics[kMaxPeerNics];       // this rank's usable interface addresses (non-loopback first)

  std::string describe() const;  // "rank 3 (host:pid)"
  std::string ifnameStr() const;
};

// How many distinct CPUs the ranks on `host` may run on between them: more ranks than that, and
// the host is oversubscribed. Each rank's own count is not it: a launcher that binds every rank
// to one core (lockstep-run, mpirun --bind-to core) gives each a count of one. A rank whose
// CPUs go past the mask counts them all (such a host is not short of CPUs).
int hostCpus(const std::vector<PeerInfo>& peers, uint64_t host);

// Identities that containers can make differ on one host: the process, the /dev/shm mount, the
// pid namespace.
uint64_t processToken();
uint64_t shmMountId();
uint64_t pidNamespaceId();
uint64_t userNamespaceId();

// Host identity: a hash of hostname and boot id, or of LOCKSTEP_HOST_ID when set (tests use it to
// make network namespaces look like separate hosts).
uint64_t hostHash(const std::string& hostIdOverride);

// `listenAddr` is the address the communicator's listeners bind (api.cc chose it).
PeerInfo localPeerInfo(int rank, const Config& config, const NetAddr& listenAddr);
// Makes strings from the network safe to print (NUL-terminated).
void terminateStrings(PeerInfo* p);

// Throws Mismatch on every rank (they all see the same table) when versions or wire config differ,
// showing the difference.
void checkPeersAgree(const std::vector<PeerInfo>& peers);

// Throws InvalidUsage on every rank when two ranks on different hosts would talk over a loopback
// or link-local address (which reaches the wrong machine, or none): naming both ranks and the
// interface, and what to set.
void checkCrossHostAddresses(const std::vector<PeerInfo>& peers);

}  // namespace lockstep
