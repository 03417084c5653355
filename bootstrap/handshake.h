// The handshake that opens every connection, bootstrap and data alike: magic, protocol version,
// the id's secret (compared in constant time), the sender's rank and the communicator id. The
// connecting side speaks first; the accepting side checks, then answers with its own hello, so
// both ends know the other holds the secret.
#pragma once

#include <cstdint>
#include <string>

#include "bootstrap/unique_id.h"

namespace lockstep {

enum class Purpose : uint32_t { kRoot = 1, kRing = 2, kP2P = 3, kData = 4, kControl = 5 };

struct Hello {
  uint32_t magic;
  uint32_t version;
  uint8_t secret[16];
  uint64_t commId;
  int32_t rank;
  int32_t nranks;
  uint32_t purpose;
  uint32_t channel;  // data connections: which stream of the pair
};
static_assert(sizeof(Hello) == 48);

constexpr uint32_t kHelloMagic = 0x5348534cu;  // "LSHS"

Hello makeHello(const Secret& secret, uint64_t commId, int rank, int nranks, Purpose purpose, uint32_t channel = 0);

// Returns "" when `h` is a valid hello for this communicator and purpose, else why it is not.
// nranks < 0 skips the size check (the root learns the size from the first hello).
std::string checkHello(const Hello& h, const Secret& secret, uint64_t commId, Purpose purpose, int nranks);

bool constantTimeEqual(const uint8_t* a, const uint8_t* b, size_t n);

// Client side: sends `mine`, reads the answer and checks it. Throws RemoteError on a bad answer.
Hello clientHandshake(int fd, const Hello& mine, const Secret& secret, Deadline deadline);

}  // namespace lockstep
