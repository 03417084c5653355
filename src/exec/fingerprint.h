// What a rank believes the current operation is. It travels in the tag of every message, so the
// first message between two ranks that disagree (different collective, count, dtype, op, root or
// sequence number) is caught by its receiver, which names the sender and the field.
#pragma once

#include <cstdint>
#include <string>

#include "transport/transport.h"

namespace lockstep {

struct Fingerprint {
  uint64_t seq = 0;    // collective sequence number on the communicator (0 for send/recv)
  uint64_t count = 0;  // NCCL's count argument
  int32_t root = -1;   // root of broadcast/reduce, else -1
  uint8_t kind = 0;    // OpKind
  uint8_t dtype = 0;
  uint8_t op = 0;
  uint8_t algorithm = 0;  // Algorithm: ranks must run the same one
  // Which engine runs it: 0 the host executor (host memory, or device memory staged through
  // pinned host memory), 1 cuda_ipc kernels. Ranks on different paths never exchange a message
  // (a rank that passed host memory where its peers passed device memory), so only the control
  // plane, comparing fingerprints, can tell them apart before the timeout.
  uint8_t path = 0;

  static constexpr uint64_t kTagMagic = 0xa5;  // the top byte of words[2]: garbage rarely has it
  static constexpr uint64_t kPathBit = 0x80;   // in the algorithm byte: Algorithm values stay below it

  // Inline: every message of every op carries it.
  MessageTag tag() const {
    MessageTag t;
    t.words[0] = seq;
    t.words[1] = (count & ((uint64_t(1) << 56) - 1)) | (uint64_t(algorithm) | (path ? kPathBit : 0)) << 56;
    t.words[2] = static_cast<uint32_t>(root) | uint64_t(kind) << 32 | uint64_t(dtype) << 40 | uint64_t(op) << 48 |
                 kTagMagic << 56;
    return t;
  }
  // False if the tag is not a fingerprint at all (garbage from a broken peer).
  static bool fromTag(const MessageTag& tag, Fingerprint* out);
  // "allreduce #5 (count 10, float32, sum)"
  std::string describe() const;
  // The first field (in the order kind, seq, count, dtype, op, root) that differs, or nullptr.
  const char* firstDifference(const Fingerprint& other) const;
};

}  // namespace lockstep
