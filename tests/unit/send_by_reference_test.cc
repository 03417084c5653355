// The executor's by-reference sends (src/exec/host_executor.cc): a message posted from the op's
// buffers must still carry the bytes as they were when it was posted, even when a later step of
// the same op overwrites that memory before the message has left. A stand-in link keeps every
// by-reference message unsent until the executor progresses it, as a full socket would, and
// delivers the peer's data at once, so the overwrite always comes first.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <vector>

#include "src/core/op.h"
#include "src/exec/host_executor.h"
#include "transport/transport.h"

namespace lockstep {
namespace {

class HeldLink : public Link {
 public:
  explicit HeldLink(size_t slotBytes) : slot_(slotBytes) {}
  void* trySendSlot() override { return slot_.data(); }
  void postSend(size_t bytes, const MessageTag&) override {
    sent_.emplace_back(slot_.begin(), slot_.begin() + static_cast<long>(bytes));
    refs_.push_back(nullptr);
  }
  Message tryRecv() override {
    return next_ < incoming_.size() ? Message{incoming_[next_].data(), incoming_[next_].size(), tag_} : Message{};
  }
  void releaseRecv() override { ++next_; }
  bool progress() override {  // what is still held leaves now, as the memory holds it now
    for (size_t i = 0; i < refs_.size(); ++i) settleRef(i, true);
    return true;
  }
  bool peerGone() override { return false; }
  bool sendsByReference() const override { return true; }
  uint64_t postSendRef(const void* data, size_t bytes, const MessageTag&) override {
    sent_.emplace_back(bytes);
    refs_.push_back(static_cast<const char*>(data));
    return refs_.size() - 1;
  }
  bool settleRef(uint64_t ticket, bool detach) override {
    if (!refs_[ticket]) return true;
    if (!detach) return false;
    std::memcpy(sent_[ticket].data(), refs_[ticket], sent_[ticket].size());
    refs_[ticket] = nullptr;
    return true;
  }

  std::vector<char> slot_;
  std::vector<std::vector<char>> sent_;  // every message, in posting order
  std::vector<const char*> refs_;        // still held (nullptr: left)
  std::vector<std::vector<char>> incoming_;
  size_t next_ = 0;
  MessageTag tag_;
};

TEST(SendByReference, AMessageKeepsItsBytesWhenALaterStepOverwritesThem) {
  constexpr size_t kSlot = 64 << 10, kElems = 4 * kSlot / sizeof(float);
  HeldLink self(kSlot), peer(kSlot);
  OpInfo info{"allreduce", "test", Fingerprint{}, lockstepFloat32, lockstepSum, kElems};
  info.fp.seq = 1;
  info.fp.count = kElems;
  peer.tag_ = info.fp.tag();
  std::vector<float> buf(kElems), theirs(kElems);
  for (size_t i = 0; i < kElems; ++i) buf[i] = float(i), theirs[i] = float(1000000 + i);
  for (size_t s = 0; s < 4; ++s) {
    const char* p = reinterpret_cast<const char*>(theirs.data()) + s * kSlot;
    peer.incoming_.emplace_back(p, p + kSlot);
  }
  // In place: send the buffer, then receive the peer's data into it, slice by slice.
  Schedule schedule;
  Step send{Prim::kSend};
  send.sendPeer = 1;
  send.count = kElems;
  Step recv{Prim::kRecv};
  recv.recvPeer = 1;
  recv.count = kElems;
  schedule.add(send);
  schedule.add(recv);
  schedule.endLane();
  std::atomic<bool> aborted{false};
  HostExecutor exec(0, {&self, &peer}, {"rank 0", "rank 1"}, kSlot, std::chrono::seconds(5), &aborted);
  char* base = reinterpret_cast<char*>(buf.data());
  char* const buffers[] = {base, base};
  exec.run(schedule, buffers, info, Deadline::after(std::chrono::seconds(5)));

  ASSERT_EQ(peer.sent_.size(), 4u);
  for (size_t s = 0; s < 4; ++s) {
    const float* got = reinterpret_cast<const float*>(peer.sent_[s].data());
    for (size_t i = 0; i < kSlot / sizeof(float); ++i)
      ASSERT_EQ(got[i], float(s * kSlot / sizeof(float) + i)) << "slice " << s << " element " << i;
  }
  for (size_t i = 0; i < kElems; ++i) ASSERT_EQ(buf[i], theirs[i]) << i;
}

}  // namespace
}  // namespace lockstep
