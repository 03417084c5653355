// A communicator: this rank's view of a group of ranks, its links to each peer, and the state that
// keeps ops in lockstep (sequence numbers). One thread drives it at a time, as in NCCL.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/unique_id.h"
#include "src/algo/schedule.h"
#include "src/core/config.h"
#include "src/exec/host_executor.h"
#include "src/topo/peer_info.h"
#include "transport/transport.h"

namespace lockstep {

class Communicator {
 public:
  // Collective over the bootstrap's ranks: exchanges PeerInfo, checks that versions and wire
  // config agree, picks a transport per peer and connects every link.
  Communicator(Config config, std::unique_ptr<Bootstrap> bootstrap, uint64_t commId, const Secret& secret,
               const NetAddr& localAddr);
  ~Communicator();

  int rank() const { return rank_; }
  int size() const { return nranks_; }
  const Config& config() const { return config_; }
  // The transport that reaches `peer` ("self" for this rank).
  const char* transportTo(int peer) const { return transportNames_[peer]; }

  void allReduce(const void* input, void* output, size_t count, lockstepDataType_t dtype, lockstepRedOp_t op);
  void barrier();

  Bootstrap& bootstrap() { return *bootstrap_; }

 private:
  void connectLinks(uint64_t commId, const Secret& secret, const NetAddr& localAddr);
  // Runs schedule_ and records a failure: after a transport error the links are mid-message, so
  // the communicator refuses further ops with the original error instead of corrupting data.
  void execute(const void* input, void* output, const OpInfo& op);
  void checkUsable() const;

  Config config_;
  std::unique_ptr<Bootstrap> bootstrap_;
  int rank_, nranks_;
  std::vector<PeerInfo> peers_;
  std::vector<std::unique_ptr<Transport>> transports_;
  std::vector<std::unique_ptr<Link>> links_;  // by rank; null for self
  std::vector<const char*> transportNames_;
  std::unique_ptr<HostExecutor> executor_;
  Schedule schedule_;  // reused: no allocation per call in the steady state
  uint64_t seq_ = 0;
  std::string brokenBy_;
  lockstepResult_t brokenCode_ = lockstepSuccess;
  uint8_t barrierIn_ = 0, barrierOut_ = 0;
};

}  // namespace lockstep
