#include "src/exec/fingerprint.h"

#include "kernels/dtype.h"
#include "src/algo/collective.h"
#include "src/core/op.h"

namespace lockstep {

static_assert(static_cast<uint64_t>(Algorithm::kCount) < Fingerprint::kPathBit);

bool Fingerprint::fromTag(const MessageTag& t, Fingerprint* out) {
  if ((t.words[2] >> 56) != kTagMagic) return false;
  out->seq = t.words[0];
  out->count = t.words[1] & ((uint64_t(1) << 56) - 1);
  out->algorithm = static_cast<uint8_t>((t.words[1] >> 56) & ~kPathBit);
  out->path = ((t.words[1] >> 56) & kPathBit) ? 1 : 0;
  out->root = static_cast<int32_t>(static_cast<uint32_t>(t.words[2]));
  out->kind = static_cast<uint8_t>(t.words[2] >> 32);
  out->dtype = static_cast<uint8_t>(t.words[2] >> 40);
  out->op = static_cast<uint8_t>(t.words[2] >> 48);
  return true;
}

std::string Fingerprint::describe() const {
  auto k = static_cast<OpKind>(kind);
  if (isPointToPoint(k)) return "send/recv";
  if (k == OpKind::kSplit) return "lockstepCommSplit #" + std::to_string(seq);
  std::string s = std::string(opKindName(k)) + " #" + std::to_string(seq) + " (count " + std::to_string(count) + ", " +
                  dataTypeName(static_cast<lockstepDataType_t>(dtype));
  if (k == OpKind::kAllReduce || k == OpKind::kReduceScatter || k == OpKind::kReduce) {
    s += std::string(", ") + redOpName(static_cast<lockstepRedOp_t>(op));
  }
  if (root >= 0) s += ", root " + std::to_string(root);
  return s + ", " + algorithmName(static_cast<Algorithm>(algorithm)) + (path ? ", in cuda_ipc kernels)" : ")");
}

const char* Fingerprint::firstDifference(const Fingerprint& o) const {
  // A send or receive against a collective: their numbers differ too (sends take none), but the
  // cause is the kind of call.
  if (isPointToPoint(static_cast<OpKind>(kind)) != isPointToPoint(static_cast<OpKind>(o.kind)))
    return "kind (a send or receive on one side, a collective on the other; in a group, every rank must post its "
           "first send or receive at the same place among the group's collectives)";
  // A peer at another op number is not comparable field by field: say that first.
  if (seq != o.seq) return "sequence number";
  if (kind != o.kind) return "kind";
  if (count != o.count) return "count";
  if (dtype != o.dtype) return "datatype";
  if (op != o.op) return "reduction op";
  if (root != o.root) return "root";
  // A call with nothing to move runs alike on any path with any algorithm: its buffers may be
  // NULL on one rank (host executor) and device memory on another (kernels).
  if (count == 0) return nullptr;
  // Before the algorithm, which then differs too (the kernels choose among fewer).
  if (path != o.path) return "path (host executor or cuda_ipc kernels: did one rank pass host memory?)";
  // The measured tuner times blocking calls outside groups only: a rank that makes the call
  // another way keeps the model's pick, and the two part at the first trial (helper-80).
  if (algorithm != o.algorithm) {
    return "algorithm (blocking calls outside groups are tuned by measurement, others keep the model's pick: did "
           "one rank make this call blocking and another non-blocking or grouped?)";
  }
  return nullptr;
}

}  // namespace lockstep
