#include "src/core/config.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <iomanip>
#include <sstream>

#include "src/algo/tuner.h"
#include "src/core/errors.h"
#include "src/exec/float_env.h"

namespace lockstep {
namespace {

// The parsers below take a number as written, nothing around it: strtol and friends would skip
// leading blanks (and negate " -1" into a huge unsigned value) while refusing trailing ones.
// Decimal only: strtod also reads hexadecimal ("0x10" is 16).
bool startsLikeANumber(const std::string& text, bool sign) {
  return !text.empty() && text.find_first_of("xX") == std::string::npos &&
         (std::isdigit(static_cast<unsigned char>(text[0])) || (sign && text[0] == '-') ||
          (text[0] == '.' && text.size() > 1));
}

int parseInt(const std::string& text, const std::string& what, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text.c_str(), &end, 10);
  if (!startsLikeANumber(text, true) || *end != '\0' || errno != 0 || v < lo || v > hi) {
    throw InvalidArgument(what + "=\"" + text + "\" is not an integer in [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "]");
  }
  return static_cast<int>(v);
}

// A figure of the tuner's link model: from 1e-6 to 1e9 (the model divides by it, so a
// subnormal one made every predicted time infinite or NaN).
double parsePositive(const std::string& text, const std::string& what) {
  const NearestX87Rounding nearest;  // strtod rounds by it
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  if (!startsLikeANumber(text, false) || *end != '\0' || errno != 0 || !(v >= 1e-6) || v > 1e9) {
    throw InvalidArgument(what + "=\"" + text + "\" is not a number from 0.000001 to 1000000000");
  }
  return v;
}

std::vector<std::string> splitList(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string joinList(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ',';
    out += item;
  }
  return out;
}

// FNV-1a: stable across processes and builds, unlike std::hash.
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// One launcher's variables for rank, size and local rank (size and local rank may be absent).
struct LauncherVars {
  const char* launcher;
  const char* rank;
  const char* size;
  const char* localRank;
  // What names the job, the same on each of its ranks: up to two variables.
  const char* job[2];
};

// In precedence order (README, "Launching"): torchrun, Slurm, OpenMPI, PMI, PMIx.
constexpr LauncherVars kLaunchers[] = {
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", {"TORCHELASTIC_RUN_ID", nullptr}},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", {"SLURM_JOB_ID", nullptr}},
    {"openmpi",
     "OMPI_COMM_WORLD_RANK",
     "OMPI_COMM_WORLD_SIZE",
     "OMPI_COMM_WORLD_LOCAL_RANK",
     {"OMPI_MCA_ess_base_jobid", nullptr}},
    {"pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", {nullptr, nullptr}},
    {"pmix", "PMIX_RANK", nullptr, nullptr, {"PMIX_NAMESPACE", nullptr}},
};

template <typename Var>
LaunchEnv readLaunchEnv(const Var& var) {
  LaunchEnv env;
  if (auto v = var("LOCKSTEP_RANK")) env.rank = parseInt(*v, "LOCKSTEP_RANK", 0, kMaxRanks - 1);
  if (auto v = var("LOCKSTEP_WORLD_SIZE")) env.worldSize = parseInt(*v, "LOCKSTEP_WORLD_SIZE", 1, kMaxRanks);
  if (auto v = var("LOCKSTEP_LOCAL_RANK")) env.localRank = parseInt(*v, "LOCKSTEP_LOCAL_RANK", 0, kMaxRanks - 1);
  if (env.rank || env.worldSize) env.launcher = "lockstep";
  // The first launcher whose rank (and size, where it has one) are both set fills what
  // LOCKSTEP_* left open.
  for (const LauncherVars& l : kLaunchers) {
    auto rank = var(l.rank);
    auto size = l.size ? var(l.size) : std::nullopt;
    if (!rank || (l.size && !size)) continue;
    const bool placedHere = !env.rank;  // this launcher, not LOCKSTEP_RANK, gives the rank
    if (placedHere) env.rank = parseInt(*rank, l.rank, 0, kMaxRanks - 1);
    if (!env.worldSize && size) env.worldSize = parseInt(*size, l.size, 1, kMaxRanks);
    if (!env.localRank && l.localRank) {
      if (auto local = var(l.localRank)) env.localRank = parseInt(*local, l.localRank, 0, kMaxRanks - 1);
    }
    env.launcher = env.launcher.empty() ? l.launcher : env.launcher + "+" + l.launcher;
    // The job identity counts only where the launcher placed this rank: one started by hand
    // (LOCKSTEP_RANK) inside a Slurm allocation, say, may join ranks started outside it. The
    // size may still come from LOCKSTEP_WORLD_SIZE: PMIx gives none, so that is its only setup.
    for (const char* name : l.job) {
      if (!name || !placedHere) continue;
      if (auto v = var(name)) {
        if (!env.job.empty()) env.job += '/';
        env.job.append(name).append("=").append(*v);
      }
    }
    if (std::string(l.launcher) == "torchrun") {
      // torchrun's own store (or the trainer's init_process_group) usually holds MASTER_PORT
      // itself, so the Lockstep rendezvous takes the next port.
      // Only when it is the rendezvous: an explicit LOCKSTEP_ROOT or unique id makes it unused,
      // and an unused variable's value fails nothing.
      auto addr = var("MASTER_ADDR"), port = var("MASTER_PORT");
      if (addr && port && !var("LOCKSTEP_ROOT") && !var("LOCKSTEP_UNIQUE_ID")) {
        int p = parseInt(*port, "MASTER_PORT", 1, 65534);
        bool v6 = addr->find(':') != std::string::npos && addr->front() != '[';
        env.root = (v6 ? "[" + *addr + "]" : *addr) + ":" + std::to_string(p + 1);
        env.rootFrom = "MASTER_ADDR/MASTER_PORT";
      }
    }
    break;
  }
  if (auto v = var("LOCKSTEP_ROOT")) {
    env.root = *v;
    env.rootFrom = "LOCKSTEP_ROOT";
  }
  if (auto v = var("LOCKSTEP_UNIQUE_ID")) env.uniqueIdHex = *v;
  if (auto v = var("LOCKSTEP_SECRET")) env.secretHex = *v;
  return env;
}

}  // namespace

std::chrono::milliseconds parseDuration(const std::string& text, const std::string& what) {
  const NearestX87Rounding nearest;  // strtod rounds by it
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  std::string unit(end ? end : "");
  double ms = -1;
  if (startsLikeANumber(text, false) && errno == 0 && v >= 0) {
    if (unit.empty() || unit == "s")
      ms = v * 1000;
    else if (unit == "ms")
      ms = v;
    else if (unit == "m" || unit == "min")
      ms = v * 60000;
  }
  if (ms < 0 || ms > 1e12)
    throw InvalidArgument(what + "=\"" + text + "\" is not a duration (e.g. 30, 30s, 500ms, 2m)");
  if (ms < 1) throw InvalidArgument(what + "=\"" + text + "\" is below a millisecond, the shortest it can be");
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

size_t parseBytes(const std::string& text, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  std::string unit(end ? end : "");
  unsigned long long mult = 0;
  if (unit.empty() || unit == "B")
    mult = 1;
  else if (unit == "K" || unit == "KiB" || unit == "k")
    mult = 1ull << 10;
  else if (unit == "M" || unit == "MiB")
    mult = 1ull << 20;
  else if (unit == "G" || unit == "GiB")
    mult = 1ull << 30;
  if (!startsLikeANumber(text, false) || errno != 0 || mult == 0 || v > (~0ull) / mult) {
    throw InvalidArgument(what + "=\"" + text + "\" is not a byte count (e.g. 4096, 256K, 1M)");
  }
  return static_cast<size_t>(v * mult);
}

Config Config::fromVariables(const Getter& get) {
  Config c;
  auto var = [&](const char* name) -> std::optional<std::string> {
    const char* v = get(name);
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
  };
  if (auto v = var("LOCKSTEP_TIMEOUT")) c.timeout = parseDuration(*v, "LOCKSTEP_TIMEOUT");
  if (auto v = var("LOCKSTEP_DEBUG")) {
    const std::string& level = *v;  // the whole value: "WARN,foo" was WARN, the rest ignored
    if (level == "NONE")
      c.logLevel = LogLevel::kNone;
    else if (level == "WARN")
      c.logLevel = LogLevel::kWarn;
    else if (level == "INFO")
      c.logLevel = LogLevel::kInfo;
    else if (level == "TRACE")
      c.logLevel = LogLevel::kTrace;
    else
      throw InvalidArgument("LOCKSTEP_DEBUG=\"" + *v + "\" is not one of NONE, WARN, INFO, TRACE");
  }
  if (auto v = var("LOCKSTEP_TRANSPORTS")) {
    c.transports = splitList(*v);
    if (c.transports.empty()) throw InvalidArgument("LOCKSTEP_TRANSPORTS=\"" + *v + "\" names no transport");
  }
  if (auto v = var("LOCKSTEP_SLOT_BYTES")) c.slotBytes = parseBytes(*v, "LOCKSTEP_SLOT_BYTES");
  if (auto v = var("LOCKSTEP_SLOTS")) c.slots = parseInt(*v, "LOCKSTEP_SLOTS", 2, 64);
  if (auto v = var("LOCKSTEP_SOCKET_IFNAME")) c.socketIfname = *v;
  if (auto v = var("LOCKSTEP_SOCKET_NSTREAMS")) c.socketStreams = parseInt(*v, "LOCKSTEP_SOCKET_NSTREAMS", 1, 16);
  if (auto v = var("LOCKSTEP_SOCKET_CC")) c.socketCongestion = *v;
  if (auto v = var("LOCKSTEP_HOST_ID")) c.hostId = *v;
  if (auto v = var("LOCKSTEP_TRACE")) c.tracePath = *v;
  if (auto v = var("LOCKSTEP_ALGO")) c.algo = *v;
  if (auto v = var("LOCKSTEP_DETERMINISTIC")) c.deterministic = parseInt(*v, "LOCKSTEP_DETERMINISTIC", 0, 1) == 1;
  if (auto v = var("LOCKSTEP_TUNER")) {
    if (*v != "measured" && *v != "model") {
      throw InvalidArgument("LOCKSTEP_TUNER=" + *v + " is not a tuner (known: measured, model)");
    }
    c.measuredTuning = *v == "measured";
  }
  if (auto v = var("LOCKSTEP_LINK_LATENCY_US")) c.linkLatencyUs = parsePositive(*v, "LOCKSTEP_LINK_LATENCY_US");
  if (auto v = var("LOCKSTEP_LINK_GBPS")) c.linkGBps = parsePositive(*v, "LOCKSTEP_LINK_GBPS");
  if (auto v = var("TMPDIR")) c.tempDir = *v;
  if (auto v = var("LOCKSTEP_CUDA_IPC")) c.cudaIpc = parseInt(*v, "LOCKSTEP_CUDA_IPC", 0, 1) == 1;
  if (auto v = var("LOCKSTEP_CUDA_IPC_SLOTS")) c.ipcSlots = parseInt(*v, "LOCKSTEP_CUDA_IPC_SLOTS", 2, 64);
  if (auto v = var("LOCKSTEP_CUDA_IPC_SLOT_BYTES")) c.ipcSlotBytes = parseBytes(*v, "LOCKSTEP_CUDA_IPC_SLOT_BYTES");
  if (auto v = var("LOCKSTEP_CUDA_IPC_BLOCKS")) c.ipcBlocks = parseInt(*v, "LOCKSTEP_CUDA_IPC_BLOCKS", 1, 64);
  try {
    c.launch = readLaunchEnv(var);
  } catch (const InvalidArgument& e) {
    c.launch = LaunchEnv{};
    c.launch.error = e.what();
  }
  c.validate();
  return c;
}

Config Config::fromEnvironment() {
  return fromVariables([](const char* name) { return std::getenv(name); });
}

void Config::validate() const {
  if (timeout.count() <= 0) throw InvalidArgument("LOCKSTEP_TIMEOUT must be positive");
  if (slotBytes < 4096 || slotBytes > (64u << 20) || slotBytes % 64 != 0) {
    throw InvalidArgument("LOCKSTEP_SLOT_BYTES=" + std::to_string(slotBytes) +
                          " must be a multiple of 64 between 4 KiB and 64 MiB");
  }
  if (slots < 2 || slots > 64) throw InvalidArgument("LOCKSTEP_SLOTS must be in [2, 64]");
  if (ipcSlotBytes < 4096 || ipcSlotBytes > (64u << 20) || ipcSlotBytes % 4096 != 0) {
    throw InvalidArgument("LOCKSTEP_CUDA_IPC_SLOT_BYTES=" + std::to_string(ipcSlotBytes) +
                          " must be a multiple of 4 KiB between 4 KiB and 64 MiB");
  }
  if (ipcSlots < 2 || ipcSlots > 64) throw InvalidArgument("LOCKSTEP_CUDA_IPC_SLOTS must be in [2, 64]");
  if (ipcBlocks < 1 || ipcBlocks > 64) throw InvalidArgument("LOCKSTEP_CUDA_IPC_BLOCKS must be in [1, 64]");
  if (socketStreams < 1 || socketStreams > 16) throw InvalidArgument("LOCKSTEP_SOCKET_NSTREAMS must be in [1, 16]");
  for (const auto& t : transports) {
    if (t != "inproc" && t != "shm" && t != "socket") {
      throw InvalidArgument("LOCKSTEP_TRANSPORTS names unknown transport \"" + t + "\" (known: inproc, shm, socket)");
    }
  }
  parseTunerSettings(algo, deterministic);  // names an unknown algorithm or collective: fail at init
}

bool Config::transportAllowed(const std::string& name) const {
  if (transports.empty()) return true;
  for (const auto& t : transports) {
    if (t == name) return true;
  }
  return false;
}

std::string Config::wireSummary() const {
  // Everything that decides what goes on the wire, including the algorithm choice (every rank
  // must pick the same algorithm for the same call).
  // Both lists in a canonical form, so that spellings with one meaning agree: the order of
  // LOCKSTEP_TRANSPORTS means nothing, and "tree" forces what "allreduce=tree,..." spells out.
  // Every transport listed means what none listed means.
  std::vector<std::string> t, a;
  for (const char* name : {"inproc", "shm", "socket"}) {
    if (transportAllowed(name)) t.emplace_back(name);
  }
  if (t.size() == 3) t.clear();
  TunerSettings tuner = parseTunerSettings(algo, deterministic);
  for (int k = 0; k < kOpKinds; ++k) {
    if (tuner.forced[k])
      a.push_back(opKindName(static_cast<OpKind>(k)) + std::string("=") + algorithmName(*tuner.forced[k]));
  }
  std::ostringstream o;
  o << "slotBytes=" << slotBytes << " slots=" << slots << " transports=" << (t.empty() ? "all" : joinList(t));
  if (deterministic) o << " deterministic=1";
  if (!measuredTuning && !deterministic) o << " tuner=model";  // deterministic mode measures nothing
  if (socketStreams != 1) o << " socketStreams=" << socketStreams;
  // Every digit: values that differ past the sixth would agree here and part at the tuner.
  o << std::setprecision(17);
  const NearestX87Rounding nearest;  // printing rounds by it
  if (linkLatencyUs > 0) o << " latency=" << linkLatencyUs;
  if (linkGBps > 0) o << " gbps=" << linkGBps;
  // Last: the one field of any length, so that where a summary is cut short (PeerInfo holds 255
  // characters) only it is.
  if (!a.empty()) o << " algo=" << joinList(a);
  return o.str();
}

uint64_t Config::wireHash() const { return fnv1a(wireSummary()); }

}  // namespace lockstep
