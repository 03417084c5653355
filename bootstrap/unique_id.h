// The unique id's layout: magic, version, the root's address and a 128-bit secret, in 128 bytes.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "lockstep/lockstep.h"
#include "src/net/socket.h"

namespace lockstep {

using Secret = std::array<uint8_t, 16>;

struct UniqueIdInfo {
  NetAddr root;
  Secret secret{};
  // The root listened before the id existed (a unique id, a split's): a refused connection
  // then means its rendezvous is over, where with LOCKSTEP_ROOT it may not be up yet.
  bool rootListens = false;
};

constexpr uint32_t kIdMagic = 0x4449534cu;  // "LSID"
// 2: the rendezvous names the ring predecessor too; 3: a failure report names its finder.
// 4: PeerInfo::euid (0.2.0); 5: PeerInfo::userNamespace; 6: the control messages' flags (a goodbye
// at exit, a departure's failure sparing the ops the departed rank completed); 7: control
// messages of variable length (a header, then a report's text or the ops a heartbeat names)
constexpr uint32_t kProtocolVersion = 7;

lockstepUniqueId encodeUniqueId(const UniqueIdInfo& info);
// Throws InvalidArgument when the bytes are not a Lockstep id of this protocol version.
UniqueIdInfo decodeUniqueId(const lockstepUniqueId& id);

std::string toHex(const void* data, size_t bytes);
// Throws InvalidArgument (naming `what`) unless hex is exactly 2*bytes hex digits.
void fromHex(const std::string& hex, void* out, size_t bytes, const std::string& what);

// 16 bytes from the kernel's random source.
Secret randomSecret();
uint64_t random64();

// Communicator id derived from the secret; it tags every handshake.
uint64_t commIdFromSecret(const Secret& s);

}  // namespace lockstep
