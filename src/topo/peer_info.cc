#include "src/topo/peer_info.h"

#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>

#include "bootstrap/unique_id.h"
#include "lockstep/lockstep.h"
#include "src/core/config.h"
#include "src/core/errors.h"

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
  static const uint64_t token = random64();
  return token;
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

PeerInfo localPeerInfo(int rank, const Config& config) {
  PeerInfo p{};
  p.rank = rank;
  p.version = LOCKSTEP_VERSION_CODE;
  p.hostHash = hostHash(config.hostId);
  p.configHash = config.wireHash();
  p.pid = getpid();
  p.processToken = processToken();
  p.shmId = shmMountId();
  p.pidNamespace = pidNamespaceId();
  gethostname(p.hostname, sizeof(p.hostname) - 1);
  std::snprintf(p.configSummary, sizeof(p.configSummary), "%s", config.wireSummary().c_str());
  cpu_set_t set;
  p.cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
  return p;
}

std::string PeerInfo::describe() const {
  return "rank " + std::to_string(rank) + " (" + std::string(hostname, strnlen(hostname, sizeof(hostname))) + ":" +
         std::to_string(pid) + ")";
}

void checkPeersAgree(const std::vector<PeerInfo>& peers) {
  const PeerInfo& ref = peers[0];
  for (const auto& p : peers) {
    if (p.version != ref.version) {
      throw Mismatch("library version differs: " + ref.describe() + " runs " + std::to_string(ref.version) + ", " +
                     p.describe() + " runs " + std::to_string(p.version));
    }
    if (p.configHash != ref.configHash) {
      throw Mismatch("configuration differs: " + ref.describe() + " has {" + ref.configSummary + "}, " + p.describe() +
                     " has {" + p.configSummary + "}");
    }
  }
}

}  // namespace lockstep
