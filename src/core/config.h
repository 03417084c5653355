// The one Config: defaults <- environment (LOCKSTEP_*) <- explicit settings. Built once per
// communicator and passed down; no other code reads the environment.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace lockstep {

enum class LogLevel { kNone = 0, kWarn = 1, kInfo = 2, kTrace = 3 };

// The largest communicator: what the rendezvous serves, lockstepCommInitRank accepts and the
// launch variables may say (refused before anything is sized by it).
constexpr int kMaxRanks = 1 << 22;

// What a launcher told this process. Sources, first match wins for each of rank, size and local
// rank (LOCKSTEP_* always wins over the others, field by field):
//   LOCKSTEP_RANK / LOCKSTEP_WORLD_SIZE / LOCKSTEP_LOCAL_RANK  (lockstep-run, or by hand)
//   torchrun: RANK / WORLD_SIZE / LOCAL_RANK, root MASTER_ADDR:(MASTER_PORT + 1)
//   Slurm srun: SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID
//   OpenMPI: OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE / OMPI_COMM_WORLD_LOCAL_RANK
//   MPICH, Intel MPI (PMI): PMI_RANK / PMI_SIZE / MPI_LOCALRANKID
//   PMIx: PMIX_RANK (rank only)
// A launcher counts when both its rank and size variables are set (PMIx: its rank), so a stray
// RANK alone does not. The rendezvous is LOCKSTEP_UNIQUE_ID, else LOCKSTEP_ROOT, else torchrun's.
struct LaunchEnv {
  std::optional<int> rank;       // this rank
  std::optional<int> worldSize;  // the number of ranks
  std::optional<int> localRank;  // rank within the host (informational)
  std::string root;              // LOCKSTEP_ROOT=host:port, or torchrun's MASTER_ADDR:(MASTER_PORT + 1)
  std::string uniqueIdHex;       // LOCKSTEP_UNIQUE_ID
  std::string secretHex;         // LOCKSTEP_SECRET: 32 hex digits, for LOCKSTEP_ROOT mode
  std::string launcher;          // whose variables gave rank and size: "lockstep", "torchrun", "slurm", ...
  std::string rootFrom;          // which variable gave `root` ("LOCKSTEP_ROOT", "MASTER_ADDR/MASTER_PORT")
  std::string job;               // the launcher's job identity ("SLURM_JOB_ID=12"), or empty
  // A launch variable that does not parse (the rest is then empty). Only init from the
  // environment fails with it: lockstepGetUniqueId, lockstep-run and lockstepCommInitRank do not
  // use these variables, and a stale value must not fail them.
  std::string error;
};

struct Config {
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};  // LOCKSTEP_TIMEOUT
  LogLevel logLevel = LogLevel::kWarn;                           // LOCKSTEP_DEBUG
  std::vector<std::string> transports;                           // LOCKSTEP_TRANSPORTS; empty = every kind
  size_t slotBytes = 256 * 1024;                                 // LOCKSTEP_SLOT_BYTES: the slice size on the wire
  int slots = 8;                                                 // LOCKSTEP_SLOTS: credits per link direction
  std::string socketIfname;                                      // LOCKSTEP_SOCKET_IFNAME
  int socketStreams = 1;  // LOCKSTEP_SOCKET_NSTREAMS: TCP connections per peer pair (frames round-robin)
  // LOCKSTEP_SOCKET_CC: TCP congestion control of the data connections. "": reno where a
  // connection stays in this host, the system's elsewhere; "system": the system's everywhere.
  std::string socketCongestion;
  std::string hostId;          // LOCKSTEP_HOST_ID; empty = hostname + boot id
  std::string algo;            // LOCKSTEP_ALGO: force algorithms ("tree", "allreduce=ring,...")
  bool deterministic = false;  // LOCKSTEP_DETERMINISTIC: rank-ordered reductions
  // LOCKSTEP_TUNER=model: blocking calls keep the cost model's pick instead of timing the
  // plausible algorithms and keeping the fastest (measured, src/algo/measured_tuner.h).
  bool measuredTuning = true;
  double linkLatencyUs = 0;  // LOCKSTEP_LINK_LATENCY_US: the tuner's per-message cost (0: built-in)
  double linkGBps = 0;       // LOCKSTEP_LINK_GBPS: the tuner's link bandwidth (0: built-in)
  std::string tracePath;     // LOCKSTEP_TRACE: write the flight recorder there at destroy (%r rank, %p pid, %c comm)
  std::string tempDir = "/tmp";  // TMPDIR: where dumps go when LOCKSTEP_TRACE is unset
  // cuda_ipc (transport/cuda_ipc/cuda_ipc.h): device collectives by kernels when every rank is on
  // one host with a CUDA context. Ranks must agree on the slot geometry (else it stays off).
  bool cudaIpc = true;             // LOCKSTEP_CUDA_IPC=0 turns it off (device calls take the staged path)
  int ipcSlots = 4;                // LOCKSTEP_CUDA_IPC_SLOTS: credits per link direction
  size_t ipcSlotBytes = 1u << 20;  // LOCKSTEP_CUDA_IPC_SLOT_BYTES: the slice a kernel moves per message
  int ipcBlocks = 32;              // LOCKSTEP_CUDA_IPC_BLOCKS: most thread blocks per lane
  LaunchEnv launch;

  // Reads LOCKSTEP_* through `get` (getenv in production). Throws InvalidArgument naming the
  // variable when a value does not parse.
  using Getter = std::function<const char*(const char*)>;
  static Config fromVariables(const Getter& get);
  static Config fromEnvironment();

  // Throws InvalidArgument when a field is out of range.
  void validate() const;

  bool transportAllowed(const std::string& name) const;

  // Hash of the fields every rank must agree on (they shape what goes on the wire).
  uint64_t wireHash() const;
  // Human-readable form of the same fields, to show the difference when hashes disagree.
  std::string wireSummary() const;
};

// Parsers shared with tools; each throws InvalidArgument mentioning `what`.
std::chrono::milliseconds parseDuration(const std::string& text, const std::string& what);
size_t parseBytes(const std::string& text, const std::string& what);

}  // namespace lockstep
