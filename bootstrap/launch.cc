#include "bootstrap/launch.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "src/core/logging.h"
#include "src/topo/interfaces.h"

namespace lockstep {
namespace {

// "host:port" or "[v6]:port" whose host is a name other than localhost (not an address).
bool namesThisHost(const std::string& hostPort) {
  std::string host = hostPort.substr(0, hostPort.rfind(':'));
  if (!host.empty() && host.front() == '[') return false;  // an IPv6 literal
  unsigned char buf[sizeof(in6_addr)];
  if (::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1) return false;
  return !host.empty() && host != "localhost" && host.rfind("localhost.", 0) != 0;
}

}  // namespace

LaunchPlan planLaunch(const Config& config) {
  const LaunchEnv& env = config.launch;
  if (!env.error.empty()) throw InvalidArgument(env.error);
  if (!env.rank || !env.worldSize) {
    throw InvalidUsage(std::string(env.rank ? "the world size" : "this process's rank") +
                       " is not set: set LOCKSTEP_RANK and LOCKSTEP_WORLD_SIZE (lockstep-run does), or start it "
                       "under torchrun, srun or mpirun");
  }
  if (*env.rank >= *env.worldSize) {
    throw InvalidArgument("rank " + std::to_string(*env.rank) + " is not below the world size " +
                          std::to_string(*env.worldSize) + " (from " + env.launcher + ")");
  }
  LaunchPlan plan{*env.rank, *env.worldSize, {}, nullptr};
  if (!env.uniqueIdHex.empty()) {
    lockstepUniqueId id;
    fromHex(env.uniqueIdHex, id.internal, sizeof(id.internal), "LOCKSTEP_UNIQUE_ID");
    plan.id = decodeUniqueId(id);
    return plan;
  }
  if (env.root.empty()) {
    throw InvalidUsage("set LOCKSTEP_UNIQUE_ID or LOCKSTEP_ROOT=host:port (an address of rank 0's host) to say where " +
                       std::string("ranks meet") +
                       (env.launcher == "lockstep" ? "" : "; started by " + env.launcher + ", which gives none") +
                       " (under mpirun, lockstep/mpi.h's lockstepCommInitMpi needs no address)");
  }
  std::vector<NetAddr> addresses;  // the name's, of the family taken
  try {
    // Within LOCKSTEP_TIMEOUT: a resolver that never answers is a timeout, not a hang.
    plan.id.root = NetAddr::parse(env.root, Deadline::after(config.timeout), &addresses);
  } catch (const InvalidArgument& e) {
    // Said with its variable: "cannot resolve host" alone did not say it came from MASTER_ADDR.
    throw InvalidArgument(env.rootFrom + ": " + e.what());
  } catch (const Timeout& e) {
    throw Timeout(env.rootFrom + ": " + e.what());
  }
  if (!env.secretHex.empty()) {
    fromHex(env.secretHex, plan.id.secret.data(), plan.id.secret.size(), "LOCKSTEP_SECRET");
  } else {
    // From the root's text, as every rank of the job gives it, and the launcher's job identity
    // where it gives one (Slurm's job and step, torchrun's run id, OpenMPI's job, PMIx's
    // namespace): without it, a rank of another job started on the same LOCKSTEP_ROOT while
    // this one gathers joined this job's communicator in place of the rank that was late. Not
    // the world size: a rank with another size must reach the root to be told "communicator
    // size N, expected M", where a different secret would make it a stranger the root drops
    // without a word.
    std::string seed = "lockstep-root/" + env.root;
    if (!env.job.empty()) seed += "/" + env.job;
    uint64_t h1 = 1469598103934665603ull, h2 = 0x9e3779b97f4a7c15ull;
    for (unsigned char c : seed) h1 = (h1 ^ c) * 1099511628211ull, h2 = (h2 ^ c) * 0x100000001b3ull + 7;
    std::memcpy(plan.id.secret.data(), &h1, 8);
    std::memcpy(plan.id.secret.data() + 8, &h2, 8);
  }
  if (plan.rank == 0) {
    NetAddr any;  // every address of this host, on the root's port
    any.family = plan.id.root.family;
    any.port = plan.id.root.port;
    // A host name (not "localhost") that resolves to loopback here names this host for the
    // others: Debian maps its own hostname to 127.0.1.1, and a root bound there is unreachable
    // from every other host ("connection refused"). Listen on all addresses instead.
    // And a name with several addresses is any of them to the others: each rank takes the first
    // IPv4 address its own resolver lists, and resolvers order them differently (round robin, a
    // hosts file per host), so a rank dialled an address rank 0 did not listen on and both
    // waited out the timeout (helper-96).
    const bool several = addresses.size() > 1;
    const NetAddr bind = (plan.id.root.isLoopback() && namesThisHost(env.root)) || several ? any : plan.id.root;
    // Which variables named the rendezvous, as the user wrote them: under torchrun the port is
    // MASTER_PORT + 1, a number that appears nowhere in the job's own settings.
    const std::string named = env.rootFrom == "LOCKSTEP_ROOT" ? "LOCKSTEP_ROOT=" + env.root
                                                              : env.rootFrom + " (" + env.root + ", MASTER_PORT + 1)";
    // The name does not lead here: a wrong MASTER_ADDR, where the others never reach rank 0, is
    // said at once, since the timeout would only blame "the root". Behind NAT, listening on all
    // addresses is right.
    auto notHere = [&](const std::string& which) {
      LS_WARN(0, named << " (" << which
                       << ") is not an address of this host, where rank 0 runs: listening on all of its addresses "
                          "(behind NAT that is right; otherwise it must name rank 0's host)");
    };
    if (several) {
      const std::vector<InterfaceAddr> up = upInterfaces();
      const bool here = std::any_of(addresses.begin(), addresses.end(), [&](const NetAddr& a) {
        return std::any_of(up.begin(), up.end(), [&](const InterfaceAddr& i) { return i.addr.sameHost(a); });
      });
      if (!here) notHere(std::to_string(addresses.size()) + " addresses, " + plan.id.root.hostStr() + " first");
    }
    // Rank 0 serves the rendezvous itself, so a second rank 0 (or one of a job still running, or
    // another program on the port) meets the port taken, not the rendezvous's "registered twice".
    auto serve = [&](const NetAddr& where) {
      try {
        plan.rootService = std::make_unique<RootService>(where, plan.id.secret, config.timeout);
      } catch (const SystemError& e) {
        if (e.err != EADDRINUSE) throw;
        throw SystemError(e.syscall, e.err,
                          "rank 0 set up the rendezvous at " + named + " on " + where.str() +
                              ": its port is taken, by another process given rank 0, a job still running, or "
                              "another program");
      }
    };
    try {
      serve(bind);
    } catch (const SystemError& e) {
      if (e.err != EADDRNOTAVAIL) throw;
      // The name resolves to an address this host does not own (NAT, alias, or a wrong name).
      notHere(plan.id.root.str());
      serve(any);
    }
  }
  return plan;
}

}  // namespace lockstep
