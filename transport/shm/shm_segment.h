// A POSIX shared-memory segment: created private (0600) under a random name, pre-faulted, and
// unlinked as soon as the peer has mapped it (or when this object dies, whichever comes first).
#pragma once

#include <cstddef>
#include <string>

namespace lockstep {

class ShmSegment {
 public:
  // Random name, O_EXCL, 0600: "/lockstep-<pid>-<pid namespace>-<random>". The first create of a
  // process also removes what dead processes of its pid namespace left (sweepDeadSegments).
  static ShmSegment create(size_t bytes);
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

// A rank killed between creating its segments and its peers' mapping them (a narrow window of
// setup) leaves them in /dev/shm. Removes the segments whose creator, a process of this pid
// namespace, no longer exists; returns how many. Names without the namespace (older versions)
// and other namespaces' are left alone: their pids mean nothing here.
int sweepDeadSegments();

}  // namespace lockstep
