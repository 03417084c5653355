// A POSIX shared-memory segment: created private (0600) under a random name, pre-faulted, and
// unlinked as soon as the peer has mapped it (or when this object dies, whichever comes first).
#pragma once

#include <cstddef>
#include <string>

namespace lockstep {

class ShmSegment {
 public:
  static ShmSegment create(size_t bytes);                         // random name, O_EXCL, 0600
  static ShmSegment open(const std::string& name, size_t bytes);  // maps the peer's segment
  ShmSegment(ShmSegment&& o) noexcept;
  ShmSegment& operator=(ShmSegment&&) = delete;
  ShmSegment(const ShmSegment&) = delete;
  ~ShmSegment();

  void* addr() const { return addr_; }
  const std::string& name() const { return name_; }
  void unlink();  // idempotent; only the creator unlinks

 private:
  ShmSegment(std::string name, void* addr, size_t bytes, bool owner)
      : name_(std::move(name)), addr_(addr), bytes_(bytes), linked_(owner) {}
  std::string name_;
  void* addr_;
  size_t bytes_;
  bool linked_;
};

}  // namespace lockstep
