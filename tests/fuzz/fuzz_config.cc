// libFuzzer: the settings a process reads from its environment (LOCKSTEP_* and the launchers'
// variables), through Config::fromVariables, then validate(). Each line of the input is one
// variable: its first byte picks the name, the rest is the value. A value must parse or be
// refused with InvalidArgument naming it; nothing else may escape, crash or hang.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>

#include "src/core/config.h"
#include "src/core/errors.h"

namespace {

constexpr const char* kNames[] = {"LOCKSTEP_ALGO",
                                  "LOCKSTEP_CUDA_IPC",
                                  "LOCKSTEP_CUDA_IPC_BLOCKS",
                                  "LOCKSTEP_CUDA_IPC_SLOTS",
                                  "LOCKSTEP_CUDA_IPC_SLOT_BYTES",
                                  "LOCKSTEP_DEBUG",
                                  "LOCKSTEP_DETERMINISTIC",
                                  "LOCKSTEP_HOST_ID",
                                  "LOCKSTEP_LINK_GBPS",
                                  "LOCKSTEP_LINK_LATENCY_US",
                                  "LOCKSTEP_LOCAL_RANK",
                                  "LOCKSTEP_RANK",
                                  "LOCKSTEP_ROOT",
                                  "LOCKSTEP_SECRET",
                                  "LOCKSTEP_SLOTS",
                                  "LOCKSTEP_SLOT_BYTES",
                                  "LOCKSTEP_SOCKET_CC",
                                  "LOCKSTEP_SOCKET_IFNAME",
                                  "LOCKSTEP_SOCKET_NSTREAMS",
                                  "LOCKSTEP_TIMEOUT",
                                  "LOCKSTEP_TRACE",
                                  "LOCKSTEP_TRANSPORTS",
                                  "LOCKSTEP_TUNER",
                                  "LOCKSTEP_UNIQUE_ID",
                                  "LOCKSTEP_WORLD_SIZE",
                                  "LOCAL_RANK",
                                  "MASTER_ADDR",
                                  "MASTER_PORT",
                                  "MPI_LOCALRANKID",
                                  "OMPI_COMM_WORLD_LOCAL_RANK",
                                  "OMPI_COMM_WORLD_RANK",
                                  "OMPI_COMM_WORLD_SIZE",
                                  "PMIX_NAMESPACE",
                                  "PMIX_RANK",
                                  "PMI_RANK",
                                  "PMI_SIZE",
                                  "SLURM_JOB_ID",
                                  "SLURM_LOCALID",
                                  "SLURM_NTASKS",
                                  "SLURM_PROCID",
                                  "TMPDIR",
                                  "TORCHELASTIC_RUN_ID",
                                  "WORLD_SIZE",
                                  "RANK"};
constexpr size_t kCount = sizeof(kNames) / sizeof(kNames[0]);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::map<std::string, std::string> vars;
  const char* p = reinterpret_cast<const char*>(data);
  const char* end = p + size;
  while (p < end) {
    const char* eol = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    if (!eol) eol = end;
    if (eol > p) {
      // A value holds no NUL, as an environment's cannot.
      std::string value(p + 1, eol);
      value = value.substr(0, value.find('\0'));
      vars[kNames[static_cast<unsigned char>(*p) % kCount]] = value;
    }
    p = eol + 1;
  }
  try {
    lockstep::Config c = lockstep::Config::fromVariables([&](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    });
    c.validate();
    (void)c.wireHash();
    (void)c.wireSummary();
  } catch (const lockstep::InvalidArgument&) {
  } catch (const lockstep::InvalidUsage&) {
  }
  return 0;
}
