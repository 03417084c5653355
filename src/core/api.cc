// The C ABI. Arguments are validated here, and every exception becomes a lockstepResult_t plus a
// thread-local message here, in one place (guarded()).
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "bootstrap/launch.h"
#include "bootstrap/root_service.h"
#include "bootstrap/tcp_bootstrap.h"
#include "kernels/dtype.h"
#include "lockstep/lockstep.h"
#include "src/core/communicator.h"
#include "src/core/errors.h"
#include "src/core/logging.h"
#include "src/topo/interfaces.h"

using namespace lockstep;

namespace {

constexpr uint64_t kCommMagic = 0x4c4f434b53544550ull;  // "LOCKSTEP"
constexpr uint64_t kDeadMagic = 0xdeaddeaddeaddeadull;

thread_local std::string tLastError;

template <typename F>
lockstepResult_t guarded(F&& body) {
  try {
    body();
    return lockstepSuccess;
  } catch (const Error& e) {
    tLastError = e.what();
    return e.code();
  } catch (const std::bad_alloc&) {
    tLastError = "out of memory";
    return lockstepSystemError;
  } catch (const std::exception& e) {
    tLastError = std::string("internal error: ") + e.what();
    return lockstepInternalError;
  } catch (...) {
    tLastError = "internal error: unknown exception";
    return lockstepInternalError;
  }
}

Config loadConfig() {
  Config c = Config::fromEnvironment();
  setLogLevel(c.logLevel);
  return c;
}

}  // namespace

struct lockstepComm {
  uint64_t magic = kCommMagic;
  std::unique_ptr<Communicator> impl;
};

namespace {

Communicator& checkComm(lockstepComm_t comm) {
  if (comm == nullptr) throw InvalidArgument("comm is NULL");
  if (comm->magic != kCommMagic) throw InvalidUsage("comm is not a live communicator (destroyed?)");
  return *comm->impl;
}

lockstepComm_t buildComm(Config config, const UniqueIdInfo& id, int rank, int nranks) {
  NetAddr local = pickLocalAddress(config.socketIfname);
  uint64_t commId = commIdFromSecret(id.secret);
  auto bootstrap = std::make_unique<TcpBootstrap>(id, commId, rank, nranks, local, config.timeout);
  auto comm = std::make_unique<lockstepComm>();
  comm->impl = std::make_unique<Communicator>(std::move(config), std::move(bootstrap), commId, id.secret, local);
  return comm.release();
}

void checkBuffers(const void* sendbuff, const void* recvbuff, size_t count, lockstepDataType_t datatype) {
  if (!validDataType(datatype)) throw InvalidArgument("invalid datatype " + std::to_string(static_cast<int>(datatype)));
  if (count > 0 && (sendbuff == nullptr || recvbuff == nullptr)) {
    throw InvalidArgument(std::string(sendbuff ? "recvbuff" : "sendbuff") + " is NULL with count " +
                          std::to_string(count));
  }
  if (count > SIZE_MAX / 2 / dataTypeSize(datatype)) {
    throw InvalidArgument("count " + std::to_string(count) + " x " + std::to_string(dataTypeSize(datatype)) +
                          " bytes overflows");
  }
}

void checkStream(lockstepStream_t stream) {
  if (stream != nullptr) {
    throw InvalidUsage(
        "stream must be NULL: this build runs host-memory collectives only (CUDA streams are not "
        "supported yet)");
  }
}

}  // namespace

extern "C" {

lockstepResult_t lockstepGetVersion(int* version) {
  return guarded([&] {
    if (!version) throw InvalidArgument("version is NULL");
    *version = LOCKSTEP_VERSION_CODE;
  });
}

lockstepResult_t lockstepGetUniqueId(lockstepUniqueId* uniqueId) {
  return guarded([&] {
    if (!uniqueId) throw InvalidArgument("uniqueId is NULL");
    Config config = loadConfig();
    UniqueIdInfo info;
    info.secret = randomSecret();
    startDetachedRoot(pickLocalAddress(config.socketIfname), info.secret, config.timeout, &info.root);
    *uniqueId = encodeUniqueId(info);
  });
}

lockstepResult_t lockstepUniqueIdToHex(const lockstepUniqueId* uniqueId, char* hex, size_t hexBytes) {
  return guarded([&] {
    if (!uniqueId || !hex) throw InvalidArgument("uniqueId or hex is NULL");
    if (hexBytes < 2 * LOCKSTEP_UNIQUE_ID_BYTES + 1) {
      throw InvalidArgument("hex buffer needs " + std::to_string(2 * LOCKSTEP_UNIQUE_ID_BYTES + 1) + " bytes");
    }
    std::string s = toHex(uniqueId->internal, LOCKSTEP_UNIQUE_ID_BYTES);
    std::memcpy(hex, s.c_str(), s.size() + 1);
  });
}

lockstepResult_t lockstepUniqueIdFromHex(const char* hex, lockstepUniqueId* uniqueId) {
  return guarded([&] {
    if (!uniqueId || !hex) throw InvalidArgument("uniqueId or hex is NULL");
    lockstepUniqueId id;
    fromHex(hex, id.internal, LOCKSTEP_UNIQUE_ID_BYTES, "unique id hex");
    decodeUniqueId(id);  // validates
    *uniqueId = id;
  });
}

lockstepResult_t lockstepCommInitRank(lockstepComm_t* comm, int nranks, lockstepUniqueId commId, int rank) {
  return guarded([&] {
    if (!comm) throw InvalidArgument("comm is NULL");
    *comm = nullptr;
    if (nranks < 1) throw InvalidArgument("nranks " + std::to_string(nranks) + " must be at least 1");
    if (rank < 0 || rank >= nranks) {
      throw InvalidArgument("rank " + std::to_string(rank) + " is outside [0, " + std::to_string(nranks) + ")");
    }
    UniqueIdInfo id = decodeUniqueId(commId);
    *comm = buildComm(loadConfig(), id, rank, nranks);
  });
}

lockstepResult_t lockstepCommInitFromEnv(lockstepComm_t* comm) {
  return guarded([&] {
    if (!comm) throw InvalidArgument("comm is NULL");
    *comm = nullptr;
    Config config = loadConfig();
    LaunchPlan plan = planLaunch(config);
    *comm = buildComm(std::move(config), plan.id, plan.rank, plan.nranks);
  });
}

lockstepResult_t lockstepCommDestroy(lockstepComm_t comm) {
  return guarded([&] {
    checkComm(comm);
    comm->impl.reset();
    // The 16-byte shell is kept (reachable, in a graveyard) so that a second destroy or a call on
    // a destroyed comm is detected instead of touching freed memory.
    comm->magic = kDeadMagic;
    static std::mutex mu;
    static std::vector<lockstepComm*> graveyard;
    std::lock_guard<std::mutex> lock(mu);
    graveyard.push_back(comm);
  });
}

lockstepResult_t lockstepCommAbort(lockstepComm_t comm) { return lockstepCommDestroy(comm); }

lockstepResult_t lockstepCommCount(const lockstepComm_t comm, int* count) {
  return guarded([&] {
    if (!count) throw InvalidArgument("count is NULL");
    *count = checkComm(comm).size();
  });
}

lockstepResult_t lockstepCommUserRank(const lockstepComm_t comm, int* rank) {
  return guarded([&] {
    if (!rank) throw InvalidArgument("rank is NULL");
    *rank = checkComm(comm).rank();
  });
}

const char* lockstepGetErrorString(lockstepResult_t result) {
  switch (result) {
    case lockstepSuccess:
      return "no error";
    case lockstepSystemError:
      return "system error (a system call failed)";
    case lockstepInternalError:
      return "internal error (a bug in Lockstep)";
    case lockstepInvalidArgument:
      return "invalid argument";
    case lockstepInvalidUsage:
      return "invalid usage";
    case lockstepRemoteError:
      return "remote error (a peer died, disconnected or misbehaved)";
    case lockstepInProgress:
      return "operation in progress";
    case lockstepTimeout:
      return "timeout";
    case lockstepMismatch:
      return "mismatch between ranks";
    case lockstepAborted:
      return "communicator aborted";
    default:
      return "unknown result code";
  }
}

const char* lockstepGetLastError(lockstepComm_t /*comm*/) { return tLastError.c_str(); }

lockstepResult_t lockstepAllReduce(const void* sendbuff, void* recvbuff, size_t count, lockstepDataType_t datatype,
                                   lockstepRedOp_t op, lockstepComm_t comm, lockstepStream_t stream) {
  return guarded([&] {
    Communicator& c = checkComm(comm);
    checkBuffers(sendbuff, recvbuff, count, datatype);
    if (!validRedOp(op)) throw InvalidArgument("invalid reduction op " + std::to_string(static_cast<int>(op)));
    checkStream(stream);
    c.allReduce(sendbuff, recvbuff, count, datatype, op);
  });
}

lockstepResult_t lockstepBarrier(lockstepComm_t comm, lockstepStream_t stream) {
  return guarded([&] {
    Communicator& c = checkComm(comm);
    checkStream(stream);
    c.barrier();
  });
}

}  // extern "C"
