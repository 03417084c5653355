// libFuzzer: the unique id, as raw bytes and as hex text (what LOCKSTEP_UNIQUE_ID carries).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "bootstrap/unique_id.h"
#include "lockstep/lockstep.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size >= LOCKSTEP_UNIQUE_ID_BYTES) {
    lockstepUniqueId id;
    std::memcpy(id.internal, data, sizeof(id.internal));
    try {
      lockstep::UniqueIdInfo info = lockstep::decodeUniqueId(id);
      (void)info.root.str();
    } catch (const lockstep::Error&) {
    }
  }
  std::string text(reinterpret_cast<const char*>(data), size);
  lockstepUniqueId out;
  (void)lockstepUniqueIdFromHex(text.c_str(), &out);
  return 0;
}
