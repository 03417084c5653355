#include "src/topo/peer_info.h"

#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bootstrap/unique_id.h"
#include "lockstep/lockstep.h"
#include "src/core/config.h"
#include "src/core/errors.h"
#include "src/topo/interfaces.h"
#include "src/topo/topology.h"

namespace lockstep {

static uint64_t fnv(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

uint64_t hostHash(const std::string& hostIdOverride) {
  if (!hostIdOverride.empty()) return fnv("id:" + hostIdOverride);
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::string bootId;
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::getline(f, bootId);
  return fnv(std::string(host) + "/" + bootId);
}

uint64_t processToken() {
  // The pid is part of it: fork() copies the random part into the child, which is another
  // process all the same (the inproc transport would take the two for threads of one).
  static const uint64_t seed = random64();
  return seed ^ (static_cast<uint64_t>(::getpid()) * 0x9e3779b97f4a7c15ull);
}

uint64_t shmMountId() {
  struct stat st;
  if (::stat("/dev/shm", &st) != 0) return 0;
  return (static_cast<uint64_t>(st.st_dev) << 32) ^ static_cast<uint64_t>(st.st_ino) ^ 0x5348ull;
}

uint64_t pidNamespaceId() {
  struct stat st;
  if (::stat("/proc/self/ns/pid", &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ino);
}

uint64_t userNamespaceId() {
  struct stat st;
  if (::stat("/proc/self/ns/user", &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ino);
}

PeerInfo localPeerInfo(int rank, const Config& config, const NetAddr& listenAddr) {
  PeerInfo p{};
  p.rank = rank;
  p.version = LOCKSTEP_VERSION_CODE;
  p.hostHash = hostHash(config.hostId);
  p.configHash = config.wireHash();
  p.pid = getpid();
  p.processToken = processToken();
  p.shmId = shmMountId();
  p.pidNamespace = pidNamespaceId();
  p.euid = static_cast<uint32_t>(geteuid());
  p.userNamespace = userNamespaceId();
  gethostname(p.hostname, sizeof(p.hostname) - 1);
  std::snprintf(p.configSummary, sizeof(p.configSummary), "%s", config.wireSummary().c_str());
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    p.cpus = CPU_COUNT(&set);
    for (int c = 0; c < kCpuMaskWords * 64 && c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) p.cpuMask[c / 64] |= uint64_t{1} << (c % 64);
    }
  } else {
    p.cpus = 1;
    p.cpuMask[0] = 1;
  }
  const Topology& topo = localTopology();
  p.numaNode = topo.boundNuma;
  p.addr = listenAddr;
  p.addr.port = 0;
  std::vector<InterfaceAddr> ifs = upInterfaces();
  // Non-loopback addresses first: they are the ones other hosts can use.
  std::stable_partition(ifs.begin(), ifs.end(), [](const InterfaceAddr& a) { return !a.loopback; });
  for (const InterfaceAddr& a : ifs) {
    NetAddr bare = a.addr;
    bare.port = 0;
    if (std::memcmp(&bare, &p.addr, sizeof(bare)) == 0 && p.ifname[0] == '\0') {
      std::snprintf(p.ifname, sizeof(p.ifname), "%s", a.name.c_str());
    }
    if (a.addr.isLinkLocal() || p.nicCount == kMaxPeerNics) continue;
    PeerNic& n = p.nics[p.nicCount++];
    std::snprintf(n.name, sizeof(n.name), "%s", a.name.c_str());
    n.addr = bare;
    n.numa = topo.numaOfInterface(a.name);
  }
  // A wildcard or unlisted address (listening on all interfaces) has no interface name.
  if (p.ifname[0] == '\0') std::snprintf(p.ifname, sizeof(p.ifname), "%s", p.addr.isLoopback() ? "lo" : "?");
  return p;
}

namespace {

// Terminated, and printable up to the terminator (printable() keeps the length).
template <size_t N>
void terminate(char (&s)[N]) {
  s[N - 1] = '\0';
  const std::string shown = printable(s);
  std::memcpy(s, shown.data(), shown.size());
}

}  // namespace

void terminateStrings(PeerInfo* p) {
  terminate(p->hostname);
  terminate(p->configSummary);
  terminate(p->ifname);
  if (p->nicCount < 0 || p->nicCount > kMaxPeerNics) p->nicCount = 0;
  for (PeerNic& n : p->nics) terminate(n.name);
}

std::string PeerInfo::ifnameStr() const { return std::string(ifname, strnlen(ifname, sizeof(ifname))); }

void checkCrossHostAddresses(const std::vector<PeerInfo>& peers) {
  // Every rank checks the same table, so every rank fails with the same message. The first
  // offending rank on a host other than rank 0's is named (with rank 0, or with itself).
  for (const PeerInfo& p : peers) {
    if (!p.addr.isLoopback() && !p.addr.isLinkLocal()) continue;
    for (const PeerInfo& q : peers) {
      if (q.hostHash == p.hostHash) continue;
      // One host name and two host ids: more likely LOCKSTEP_HOST_ID set on some ranks only (or
      // to different values) than two machines of one name.
      const bool sameName = std::strncmp(p.hostname, q.hostname, sizeof(p.hostname)) == 0;
      throw InvalidUsage(p.describe() + " listens on " + p.addr.hostStr() + " (" + p.ifnameStr() + "), a " +
                         (p.addr.isLoopback() ? "loopback" : "link-local") + " address, but " + q.describe() +
                         " is on another host: set LOCKSTEP_SOCKET_IFNAME to an interface both hosts can reach" +
                         (sameName ? " (both report the host name " +
                                         std::string(p.hostname, strnlen(p.hostname, sizeof(p.hostname))) +
                                         ": if they share a host, give them the same LOCKSTEP_HOST_ID, or none)"
                                   : ""));
    }
  }
}

std::string PeerInfo::describe() const {
  return "rank " + std::to_string(rank) + " (" + std::string(hostname, strnlen(hostname, sizeof(hostname))) + ":" +
         std::to_string(pid) + ")";
}

namespace {

// A summary's fields ("key=value", space-separated), less a last one cut short where the summary
// filled its array.
std::vector<std::string> fieldsOf(const char (&summary)[sizeof(PeerInfo::configSummary)]) {
  std::vector<std::string> fields;
  std::istringstream in(std::string(summary, strnlen(summary, sizeof(summary))));
  for (std::string f; in >> f;) fields.push_back(f);
  if (strnlen(summary, sizeof(summary)) == sizeof(summary) - 1 && !fields.empty()) fields.pop_back();
  return fields;
}

// The fields of `a` that `b` lacks.
std::string onlyIn(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::string out;
  for (const auto& f : a) {
    if (std::find(b.begin(), b.end(), f) == b.end()) out += (out.empty() ? "" : " ") + f;
  }
  return out;
}

}  // namespace

void checkPeersAgree(const std::vector<PeerInfo>& peers) {
  const PeerInfo& ref = peers[0];
  for (const auto& p : peers) {
    if (p.version != ref.version) {
      throw Mismatch("library version differs: " + ref.describe() + " runs " + std::to_string(ref.version) + ", " +
                     p.describe() + " runs " + std::to_string(p.version));
    }
    if (p.configHash != ref.configHash) {
      const auto a = fieldsOf(ref.configSummary), b = fieldsOf(p.configSummary);
      std::string mine = onlyIn(a, b), theirs = onlyIn(b, a);
      // The difference lies in what was cut: the algorithm list, which comes last.
      if (mine.empty() && theirs.empty()) mine = theirs = "algo=... (too long to show): compare LOCKSTEP_ALGO";
      throw Mismatch("configuration differs (every rank must share these LOCKSTEP_* settings): " + ref.describe() +
                     " has {" + mine + "}, " + p.describe() + " has {" + theirs + "}");
    }
  }
}

int hostCpus(const std::vector<PeerInfo>& peers, uint64_t host) {
  uint64_t all[kCpuMaskWords] = {};
  for (const PeerInfo& p : peers) {
    if (p.hostHash != host) continue;
    int inMask = 0;
    for (int w = 0; w < kCpuMaskWords; ++w) {
      all[w] |= p.cpuMask[w];
      inMask += __builtin_popcountll(p.cpuMask[w]);
    }
    if (p.cpus > inMask) return 1 << 20;  // CPUs beyond the mask: plenty
  }
  int n = 0;
  for (uint64_t w : all) n += __builtin_popcountll(w);
  return n;
}

}  // namespace lockstep
