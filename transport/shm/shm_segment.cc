#include "transport/shm/shm_segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <mutex>

#include "bootstrap/unique_id.h"
#include "src/core/errors.h"
#include "src/net/socket.h"
#include "src/topo/peer_info.h"

namespace lockstep {
namespace {

// This process's pid namespace, in hex ("0" if unknown): pids compare only within one.
std::string pidNamespace() {
  char hex[24];
  std::snprintf(hex, sizeof(hex), "%llx", static_cast<unsigned long long>(pidNamespaceId()));
  return hex;
}

// A child forked after init (a data-loader worker) would keep the mapping, and with the names
// unlinked the mapping is all that holds the pages: /dev/shm stayed full after every rank had
// destroyed its communicator, until the last such child exited (helper-67). The child may not use
// its parent's communicators anyway. Best effort: without it, the space is held as before.
void notInForkedChildren(void* p, size_t bytes) { (void)::madvise(p, bytes, MADV_DONTFORK); }

}  // namespace

int sweepDeadSegments() {
  const std::string ns = pidNamespace();
  if (ns == "0") return 0;
  DIR* dir = ::opendir("/dev/shm");
  if (!dir) return 0;
  int removed = 0;
  while (dirent* e = ::readdir(dir)) {
    // lockstep-<pid>-<ns>-<random>
    unsigned long pid = 0;
    char theirNs[24] = {0};
    if (std::sscanf(e->d_name, "lockstep-%lu-%23[0-9a-f]-", &pid, theirNs) != 2 || ns != theirNs) continue;
    if (pid == 0 || pid == static_cast<unsigned long>(getpid())) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    if (::shm_unlink((std::string("/") + e->d_name).c_str()) == 0) ++removed;
  }
  ::closedir(dir);
  return removed;
}

ShmSegment ShmSegment::create(size_t bytes) {
  static std::once_flag swept;
  std::call_once(swept, [] { sweepDeadSegments(); });
  static const std::string ns = pidNamespace();
  std::string name = "/lockstep-" + std::to_string(getpid()) + "-" + ns + "-" + toHex(randomSecret().data(), 8);
  const int created = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (created < 0 && (errno == EROFS || errno == EACCES || errno == EPERM)) {
    // /dev/shm mounted read-only, or not this user's to write (a locked-down container).
    throw SystemError("shm_open", errno,
                      "creating " + name +
                          ": /dev/shm cannot be written here (set LOCKSTEP_TRANSPORTS=socket to "
                          "do without shared memory)");
  }
  Fd fd(static_cast<int>(checkSys(created, "shm_open", "creating " + name)));
  ShmSegment seg(name, nullptr, bytes, true);  // from here on, the destructor unlinks
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) < 0) throw SystemError("ftruncate", errno, "sizing " + name);
  // Reserve the pages now: tmpfs would otherwise hand them out on first touch, and a full
  // /dev/shm would then kill the process with SIGBUS instead of failing here with a message.
  if (int err = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(bytes)); err != 0) {
    if (err == ENOSPC) {
      throw SystemError("posix_fallocate", err,
                        "reserving " + std::to_string(bytes) + " bytes of /dev/shm for " + name +
                            ": /dev/shm is too small for LOCKSTEP_SLOTS x LOCKSTEP_SLOT_BYTES per peer (enlarge it, "
                            "e.g. docker --shm-size, shrink the slots, or set LOCKSTEP_TRANSPORTS=socket)");
    }
    throw SystemError("posix_fallocate", err, "reserving /dev/shm for " + name);
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd.get(), 0);
  if (p == MAP_FAILED) throw SystemError("mmap", errno, "mapping " + name);
  notInForkedChildren(p, bytes);
  seg.addr_ = p;
  return seg;
}

ShmSegment ShmSegment::open(const std::string& name, size_t bytes) {
  Fd fd(static_cast<int>(checkSys(::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0), "shm_open", "opening " + name)));
  struct stat st;
  checkSys(::fstat(fd.get(), &st), "fstat");
  if (static_cast<size_t>(st.st_size) != bytes) throw InternalError("shared segment " + name + " has the wrong size");
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd.get(), 0);
  if (p == MAP_FAILED) throw SystemError("mmap", errno, "mapping " + name);
  notInForkedChildren(p, bytes);
  return ShmSegment(name, p, bytes, false);
}

ShmSegment::ShmSegment(ShmSegment&& o) noexcept
    : name_(std::move(o.name_)), addr_(o.addr_), bytes_(o.bytes_), linked_(o.linked_) {
  o.addr_ = nullptr;
  o.linked_ = false;
}

ShmSegment::~ShmSegment() {
  unlink();
  if (addr_) ::munmap(addr_, bytes_);
}

void ShmSegment::unlink() {
  if (linked_) ::shm_unlink(name_.c_str());
  linked_ = false;
}

}  // namespace lockstep
