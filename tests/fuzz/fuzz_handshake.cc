// libFuzzer: the hello that opens every connection, and the fingerprint in every message tag.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "bootstrap/handshake.h"
#include "src/exec/fingerprint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lockstep::Secret secret = lockstep::randomSecret();
  if (size >= sizeof(lockstep::Hello)) {
    lockstep::Hello h;
    std::memcpy(&h, data, sizeof(h));
    for (auto p : {lockstep::Purpose::kRoot, lockstep::Purpose::kRing, lockstep::Purpose::kP2P,
                   lockstep::Purpose::kData, lockstep::Purpose::kControl}) {
      (void)lockstep::checkHello(h, secret, 42, p, -1);
      (void)lockstep::checkHello(h, secret, 42, p, 8);
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
