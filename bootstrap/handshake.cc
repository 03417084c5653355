#include "bootstrap/handshake.h"

#include <cstring>

namespace lockstep {

Hello makeHello(const Secret& secret, uint64_t commId, int rank, int nranks, Purpose purpose, uint32_t channel) {
  Hello h{};
  h.magic = kHelloMagic;
  h.version = kProtocolVersion;
  std::memcpy(h.secret, secret.data(), 16);
  h.commId = commId;
  h.rank = rank;
  h.nranks = nranks;
  h.purpose = static_cast<uint32_t>(purpose);
  h.channel = channel;
  return h;
}

bool constantTimeEqual(const uint8_t* a, const uint8_t* b, size_t n) {
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < n; ++i) diff = static_cast<uint8_t>(diff | (a[i] ^ b[i]));
  return diff == 0;
}

std::string checkHello(const Hello& h, const Secret& secret, uint64_t commId, Purpose purpose, int nranks) {
  if (h.magic != kHelloMagic) return "bad magic (not a Lockstep peer)";
  if (h.version != kProtocolVersion) {
    return "protocol version " + std::to_string(h.version) + ", expected " + std::to_string(kProtocolVersion);
  }
  if (!constantTimeEqual(h.secret, secret.data(), 16)) return "wrong secret";
  if (h.commId != commId) return "wrong communicator id";
  if (h.purpose != static_cast<uint32_t>(purpose)) return "unexpected connection purpose " + std::to_string(h.purpose);
  if (h.nranks < 1 || (nranks >= 0 && h.nranks != nranks)) {
    return "communicator size " + std::to_string(h.nranks) + ", expected " + std::to_string(nranks);
  }
  if (h.rank < 0 || h.rank >= h.nranks) return "rank " + std::to_string(h.rank) + " out of range";
  return "";
}

Hello clientHandshake(int fd, const Hello& mine, const Secret& secret, Deadline deadline) {
  sendAll(fd, &mine, sizeof(mine), deadline);
  Hello answer;
  recvAll(fd, &answer, sizeof(answer), deadline);
  std::string why = checkHello(answer, secret, mine.commId, static_cast<Purpose>(mine.purpose), -1);
  if (!why.empty()) throw RemoteError(-1, "handshake answer rejected: " + why);
  return answer;
}

}  // namespace lockstep
