#include "src/core/flight_recorder.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include "kernels/dtype.h"
#include "src/core/logging.h"

namespace lockstep {

FlightRecorder::FlightRecorder(const char* track) : track_(track), records_(kCapacity) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t wall = static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
  wallOffsetUs_ = wall - std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch()).count();
}

int64_t FlightRecorder::toWallUs(Clock::time_point t) const {
  return wallOffsetUs_ + std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

uint64_t FlightRecorder::started(const OpInfo& op, const PeerList& peers, Clock::time_point queued,
                                 Clock::time_point start) {
  const uint64_t id = next_++;
  Record& r = records_[id % kCapacity];
  r.seq = op.fp.seq;
  r.kind = op.kind;
  r.algorithm = op.algorithm;
  r.count = op.count;
  r.dtype = static_cast<uint8_t>(op.dtype);
  r.op = static_cast<uint8_t>(op.op);
  r.root = op.fp.root;
  r.peers = peers;
  r.queued = queued;
  r.start = start;
  r.end = Clock::time_point{};
  r.result = 0;
  return id;
}

void FlightRecorder::ended(lockstepResult_t result, Clock::time_point end) {
  if (next_ > 0) ended(next_ - 1, result, end);
}

void FlightRecorder::ended(uint64_t id, lockstepResult_t result, Clock::time_point end) {
  if (id >= next_ || next_ - id > kCapacity) return;  // overwritten by newer ops
  Record& r = records_[id % kCapacity];
  r.end = end;
  r.result = result;
}

// What writing a dump ended with.
struct FlightRecorder::Written {
  bool ok = false;
  int err = 0;           // errno, where !ok
  bool regular = false;  // it went to a plain file (only those are removed after a failure)
  uint64_t ops = 0;
};

FlightRecorder::Written FlightRecorder::writeDump(int fd, int rank, const std::string& who, const std::string& comm,
                                                  const std::string& job,
                                                  std::initializer_list<const FlightRecorder*> tracks) {
  Written w;
  struct stat st {};
  w.regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  FILE* f = ::fdopen(fd, "w");
  if (!f) {
    w.err = errno;
    ::close(fd);
    return w;
  }
  std::fprintf(f, "{\"traceEvents\":[\n");
  std::fprintf(f,
               "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"args\":{\"name\":\"%s\",\"comm\":\"%s\","
               "\"job\":\"%s\"}}",
               rank, who.c_str(), comm.c_str(), job.c_str());
  int tid = 0;
  for (const FlightRecorder* t : tracks) {
    std::fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"%s\"}}", rank,
                 tid, t->track_);
    w.ops += t->write(f, rank, tid++);
  }
  // The closing line is how lockstep-trace knows a dump is whole.
  std::fprintf(f, "\n],\"displayTimeUnit\":\"ms\"}\n");
  const bool written = std::ferror(f) == 0 && std::fflush(f) == 0;
  w.err = errno;
  const bool closed = std::fclose(f) == 0;
  if (written && !closed) w.err = errno;
  w.ok = written && closed;
  return w;
}

bool FlightRecorder::dump(const std::string& path, int rank, const std::string& who, const std::string& comm,
                          const std::string& job, std::initializer_list<const FlightRecorder*> tracks) {
  // Written beside the final name and renamed over it: a reader (lockstep-trace, or a person
  // while the job still runs) never sees half a dump, and a rewrite that fails (a full disk, a
  // kill) leaves the earlier dump whole; it was truncated in place first (helper-69). mkstemp
  // creates the file 0600. A link at the name is not a file: it goes to the in-place write below,
  // whose O_NOFOLLOW refuses it.
  struct stat target {};
  const bool special = ::lstat(path.c_str(), &target) == 0 && !S_ISREG(target.st_mode);
  if (!special) {
    std::string temp = path + ".XXXXXX";
    const int fd = ::mkstemp(temp.data());
    const int made = fd >= 0 ? 0 : errno;
    // No file beside it for want of space (or descriptors) is no reason to truncate the earlier
    // dump in place: only a directory this user cannot write, or a name at NAME_MAX, is (helper-72).
    if (made != 0 && made != EACCES && made != EPERM && made != EROFS && made != ENAMETOOLONG) {
      LS_WARN(rank, "cannot write the flight recorder to " << path << ": " << std::strerror(made));
      return false;
    }
    if (fd >= 0) {
      const Written w = writeDump(fd, rank, who, comm, job, tracks);
      if (!w.ok) {
        ::unlink(temp.c_str());
        LS_WARN(rank, "cannot write the flight recorder to " << path << ": " << std::strerror(w.err));
        return false;
      }
      if (::rename(temp.c_str(), path.c_str()) == 0) {
        LS_WARN(rank, "flight recorder (last " << w.ops << " ops) written to " << path);
        return true;
      }
      const int err = errno;
      ::unlink(temp.c_str());
      // Only where it cannot be renamed over (a file bind-mounted into a container: EBUSY; one
      // in a directory this user may not change) is it written in place below.
      if (err != EBUSY && err != EPERM && err != EACCES && err != EXDEV) {
        LS_WARN(rank, "cannot write the flight recorder to " << path << ": " << std::strerror(err));
        return false;
      }
    }
  }
  // In place: a device or a pipe (a rename would replace the node), or where no file can be made
  // beside it (a directory this user cannot write holding a file it can; a name at NAME_MAX).
  // Never through a link planted at the name (O_NOFOLLOW).
  // Opened without waiting: a pipe with no reader would block the open, and the failed op or the
  // destroy behind it, for ever (helper-72); then blocking again, so a slow reader gets it all.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
  if (fd < 0) {
    LS_WARN(rank, "cannot write the flight recorder to " << path << ": " << std::strerror(errno));
    return false;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  const Written w = writeDump(fd, rank, who, comm, job, tracks);
  if (!w.ok) {
    // A full disk left an empty or cut file, which a log line saying "written" sent people to.
    if (w.regular) ::unlink(path.c_str());
    LS_WARN(rank, "cannot write the flight recorder to " << path << ": " << std::strerror(w.err));
    return false;
  }
  LS_WARN(rank, "flight recorder (last " << w.ops << " ops) written to " << path);
  return true;
}

uint64_t FlightRecorder::write(FILE* f, int rank, int tid) const {
  const uint64_t first = next_ > kCapacity ? next_ - kCapacity : 0;
  for (uint64_t i = first; i < next_; ++i) {
    const Record& r = records_[i % kCapacity];
    std::string peers, name = r.kind, timing;
    for (int k = 0; k < r.peers.n; ++k) peers.append(k ? "," : "").append(std::to_string(r.peers.rank[k]));
    if (r.seq) name.append(" #").append(std::to_string(r.seq));
    const bool running = r.end == Clock::time_point{};
    // A finished op is a complete slice ("X"); one still running at the dump is an open one ("B").
    if (!running) {
      auto dur = std::chrono::duration_cast<std::chrono::microseconds>(r.end - r.start).count();
      timing.append(",\"dur\":").append(std::to_string(dur));
    }
    const char* state = running ? "running" : lockstepGetErrorString(static_cast<lockstepResult_t>(r.result));
    std::fprintf(f,
                 ",\n{\"name\":\"%s\",\"cat\":\"lockstep\",\"ph\":\"%s\",\"pid\":%d,\"tid\":%d,\"ts\":%lld%s,"
                 "\"args\":{\"rank\":%d,\"seq\":%llu,\"kind\":\"%s\",\"count\":%llu,\"dtype\":\"%s\","
                 "\"op\":\"%s\",\"root\":%d,\"algorithm\":\"%s\",\"path\":\"%s\",\"peers\":[%s],"
                 "\"queued_us\":%lld,\"state\":\"%s\"}}",
                 name.c_str(), running ? "B" : "X", rank, tid, static_cast<long long>(toWallUs(r.start)),
                 timing.c_str(), rank, static_cast<unsigned long long>(r.seq), r.kind,
                 static_cast<unsigned long long>(r.count), dataTypeName(static_cast<lockstepDataType_t>(r.dtype)),
                 redOpName(static_cast<lockstepRedOp_t>(r.op)), r.root, r.algorithm, track_, peers.c_str(),
                 static_cast<long long>(toWallUs(r.queued)), state);
  }
  return next_ - first;
}

namespace {

// Where a name goes into a dump's path: before its ".json", or at its end.
size_t beforeJson(const std::string& path) {
  return path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0 ? path.size() - 5 : path.size();
}

}  // namespace

std::string tracePath(const Config& config, int rank, const std::string& comm) {
  std::string path = config.tracePath.empty() ? config.tempDir + "/lockstep-trace-%p.%r.json" : config.tracePath;
  bool hasRank = false, hasComm = false;
  std::string out;
  for (size_t i = 0; i < path.size(); ++i) {
    const char c = path[i] == '%' && i + 1 < path.size() ? path[i + 1] : 0;
    if (c == 'r' || c == 'p' || c == 'c') {
      hasRank |= c == 'r';
      hasComm |= c == 'c';
      out += c == 'r' ? std::to_string(rank) : c == 'p' ? std::to_string(getpid()) : comm;
      ++i;
    } else {
      out += path[i];
    }
  }
  if (!hasRank) {
    // Before a ".json" the path ends with: t.json gave t.json.rank0.json (helper-83).
    out.resize(beforeJson(out));
    out += ".rank" + std::to_string(rank) + ".json";
  }
  if (hasComm || comm.empty()) return out;
  return out.insert(beforeJson(out), "." + comm);
}

std::string claimTracePath(const std::string& path, uint64_t commKey) {
  static std::mutex mu;
  static std::map<std::string, uint64_t>* owners = new std::map<std::string, uint64_t>;  // never freed
  std::lock_guard<std::mutex> lock(mu);
  const uint64_t owner = owners->emplace(path, commKey).first->second;
  if (owner == commKey) return path;
  char id[24];
  std::snprintf(id, sizeof(id), ".%016llx", static_cast<unsigned long long>(commKey));
  std::string out = path;
  return out.insert(beforeJson(out), id);
}

}  // namespace lockstep
