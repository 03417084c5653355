// libFuzzer: the hello that opens every connection, and the fingerprint in every message tag.
// The secret is fixed, and an input whose first byte is odd has its hello's magic, version,
// secret and communicator id made valid, so that the checks after the secret's (purpose, size,
// rank) are reached: with a random secret no input ever got past it (helper-94).
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "bootstrap/handshake.h"
#include "src/exec/fingerprint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lockstep::Secret secret = [] {
    lockstep::Secret s{};
    for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<uint8_t>(0xa5 ^ i);
    return s;
  }();
  constexpr uint64_t kCommId = 42;
  if (size > sizeof(lockstep::Hello)) {
    lockstep::Hello h;
    std::memcpy(&h, data + 1, sizeof(h));
    if (data[0] & 1) {
      const lockstep::Hello valid = lockstep::makeHello(secret, kCommId, 0, 1, lockstep::Purpose::kRoot);
      h.magic = valid.magic;
      h.version = valid.version;
      std::memcpy(h.secret, valid.secret, sizeof(h.secret));
      h.commId = valid.commId;
    }
    for (auto p : {lockstep::Purpose::kRoot, lockstep::Purpose::kRing, lockstep::Purpose::kP2P,
                   lockstep::Purpose::kData, lockstep::Purpose::kControl}) {
      (void)lockstep::checkHello(h, secret, kCommId, p, -1);
      (void)lockstep::checkHello(h, secret, kCommId, p, 8);
    }
  }
  if (size >= sizeof(lockstep::MessageTag)) {
    lockstep::MessageTag t;
    std::memcpy(&t, data, sizeof(t));
    lockstep::Fingerprint fp, mine;
    if (lockstep::Fingerprint::fromTag(t, &fp)) {
      (void)fp.describe();
      (void)mine.firstDifference(fp);
    }
  }
  return 0;
}
