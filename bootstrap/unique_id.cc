#include "bootstrap/unique_id.h"

#include <sys/random.h>

#include <cstring>

namespace lockstep {
namespace {

struct IdLayout {
  uint32_t magic;
  uint32_t version;
  NetAddr root;
  uint8_t secret[16];
};
static_assert(sizeof(IdLayout) <= LOCKSTEP_UNIQUE_ID_BYTES);

}  // namespace

lockstepUniqueId encodeUniqueId(const UniqueIdInfo& info) {
  lockstepUniqueId id;
  std::memset(&id, 0, sizeof(id));
  IdLayout l{kIdMagic, kProtocolVersion, info.root, {}};
  std::memcpy(l.secret, info.secret.data(), 16);
  std::memcpy(id.internal, &l, sizeof(l));
  return id;
}

UniqueIdInfo decodeUniqueId(const lockstepUniqueId& id) {
  IdLayout l;
  std::memcpy(&l, id.internal, sizeof(l));
  if (l.magic != kIdMagic) throw InvalidArgument("unique id has a bad magic number: not a Lockstep id");
  if (l.version != kProtocolVersion) {
    throw InvalidArgument("unique id has protocol version " + std::to_string(l.version) + ", this library speaks " +
                          std::to_string(kProtocolVersion));
  }
  if (!l.root.valid() || l.root.port == 0) throw InvalidArgument("unique id carries no valid root address");
  UniqueIdInfo info;
  info.root = l.root;
  std::memcpy(info.secret.data(), l.secret, 16);
  info.rootListens = true;
  return info;
}

std::string toHex(const void* data, size_t bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string s(bytes * 2, '0');
  auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < bytes; ++i) {
    s[2 * i] = kDigits[p[i] >> 4];
    s[2 * i + 1] = kDigits[p[i] & 15];
  }
  return s;
}

void fromHex(const std::string& hex, void* out, size_t bytes, const std::string& what) {
  if (hex.size() != bytes * 2) {
    throw InvalidArgument(what + " must be " + std::to_string(bytes * 2) + " hex digits, got " +
                          std::to_string(hex.size()) + " characters");
  }
  auto nibble = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw InvalidArgument(what + " contains a non-hex character");
  };
  auto* p = static_cast<uint8_t*>(out);
  for (size_t i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(nibble(hex[2 * i]) << 4 | nibble(hex[2 * i + 1]));
}

Secret randomSecret() {
  Secret s;
  size_t got = 0;
  while (got < s.size()) {
    ssize_t rc = getrandom(s.data() + got, s.size() - got, 0);
    if (rc < 0 && errno == EINTR) continue;
    checkSys(rc, "getrandom");
    got += static_cast<size_t>(rc);
  }
  return s;
}

uint64_t random64() {
  Secret s = randomSecret();
  uint64_t v;
  std::memcpy(&v, s.data(), 8);
  return v;
}

uint64_t commIdFromSecret(const Secret& s) {
  uint64_t h = 1469598103934665603ull;
  for (uint8_t c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace lockstep
