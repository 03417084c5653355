#include "src/core/communicator.h"

#include "src/algo/ring.h"
#include "src/core/errors.h"
#include "src/core/logging.h"

namespace lockstep {

Communicator::Communicator(Config config, std::unique_ptr<Bootstrap> bootstrap, uint64_t commId, const Secret& secret,
                           const NetAddr& localAddr)
    : config_(std::move(config)),
      bootstrap_(std::move(bootstrap)),
      rank_(bootstrap_->rank()),
      nranks_(bootstrap_->size()) {
  peers_.resize(nranks_);
  peers_[rank_] = localPeerInfo(rank_, config_);
  bootstrap_->allGather(peers_.data(), sizeof(PeerInfo));
  for (auto& p : peers_) p.hostname[sizeof(p.hostname) - 1] = p.configSummary[sizeof(p.configSummary) - 1] = '\0';
  checkPeersAgree(peers_);
  connectLinks(commId, secret, localAddr);

  std::vector<Link*> raw(nranks_);
  std::vector<std::string> names(nranks_);
  for (int r = 0; r < nranks_; ++r) {
    raw[r] = links_[r].get();
    names[r] = peers_[r].describe();
  }
  executor_ =
      std::make_unique<HostExecutor>(rank_, std::move(raw), std::move(names), config_.slotBytes, config_.timeout);
  schedule_.steps.reserve(4 * static_cast<size_t>(nranks_));
}

Communicator::~Communicator() = default;

void Communicator::connectLinks(uint64_t commId, const Secret& secret, const NetAddr& localAddr) {
  TransportContext ctx{config_, *bootstrap_, peers_, rank_, commId, secret, localAddr};
  using Factory = std::unique_ptr<Transport> (*)(const TransportContext&);
  // Preference order: the first transport that can reach a peer wins.
  const std::pair<const char*, Factory> kinds[] = {
      {"inproc", makeInprocTransport}, {"shm", makeShmTransport}, {"socket", makeSocketTransport}};
  links_.resize(nranks_);
  transportNames_.assign(nranks_, "self");
  std::vector<int> chosen(nranks_, -1);
  for (const auto& [name, factory] : kinds) {
    // Every rank has the same allowed list (checked with the wire config), so every rank creates
    // the same transports in the same order, as connect() is collective.
    if (!config_.transportAllowed(name)) continue;
    transports_.push_back(factory(ctx));
  }
  for (int p = 0; p < nranks_; ++p) {
    if (p == rank_) continue;
    for (size_t t = 0; t < transports_.size() && chosen[p] < 0; ++t) {
      if (transports_[t]->canConnect(peers_[rank_], peers_[p])) chosen[p] = static_cast<int>(t);
    }
    if (chosen[p] < 0) {
      throw InvalidUsage("no allowed transport reaches " + peers_[p].describe() + " from rank " +
                         std::to_string(rank_) + " (" + config_.wireSummary() + ")");
    }
  }
  for (size_t t = 0; t < transports_.size(); ++t) {
    std::vector<int> peers;
    for (int p = 0; p < nranks_; ++p) {
      if (chosen[p] == static_cast<int>(t)) peers.push_back(p);
    }
    auto links = transports_[t]->connect(peers);
    for (size_t i = 0; i < peers.size(); ++i) {
      links_[peers[i]] = std::move(links[i]);
      transportNames_[peers[i]] = transports_[t]->name();
      LS_INFO(rank_, "rank " << rank_ << " -> " << peers_[peers[i]].describe() << " via " << transports_[t]->name());
    }
  }
}

void Communicator::checkUsable() const {
  if (brokenCode_ != lockstepSuccess) {
    throw Error(brokenCode_, "communicator unusable after an earlier failure: " + brokenBy_);
  }
}

void Communicator::execute(const void* input, void* output, const OpInfo& op) {
  try {
    executor_->run(schedule_, input, output, op);
  } catch (const Error& e) {
    brokenCode_ = e.code();
    brokenBy_ = e.what();
    throw;
  }
}

void Communicator::allReduce(const void* input, void* output, size_t count, lockstepDataType_t dtype,
                             lockstepRedOp_t op) {
  checkUsable();
  OpInfo info{"allreduce", ++seq_, dtype, op, count};
  schedule_.clear();
  ringAllReduce(rank_, nranks_, count, &schedule_);
  execute(input, output, info);
}

void Communicator::barrier() {
  // A one-byte all-reduce: nobody gets the result before every rank has contributed.
  checkUsable();
  OpInfo info{"barrier", ++seq_, lockstepUint8, lockstepMax, 1};
  schedule_.clear();
  ringAllReduce(rank_, nranks_, 1, &schedule_);
  execute(&barrierIn_, &barrierOut_, info);
}

}  // namespace lockstep
