// lockstep-trace: merge the flight-recorder dumps of several ranks and say what went wrong.
//
//   lockstep-trace [-o merged.json] trace.rank0.json trace.rank1.json ...
//
// Prints, per rank, the last collective it entered and completed, and any op still running when
// it dumped; then every collective that some ranks entered and others never did, naming the
// missing ranks; collectives the ranks called differently under one number (kind, count, type,
// op, root), naming the odd ranks; the ranks that entered a collective only after others had
// timed out waiting for it; and the ranks that ops name as peers but that left no dump. With -o, writes all events
// into one Chrome trace (open it in Perfetto). Reads the one-event-per-line format that Lockstep
// writes; exits 1 if it finds a missing, late or mismatched rank, 2 if a file is not such a dump or the dumps
// come from different communicators (a split's child writes its own: LOCKSTEP_TRACE's %c) or
// from different runs of one (a leftover dump of an earlier job at the same path), or if one is
// cut short. Exits 1 too when an op failed that it cannot attribute (a send or receive).
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace {

// The value after "key": in a line, as text (strings without their quotes).
bool field(const std::string& line, const std::string& key, std::string* out) {
  size_t at = line.find("\"" + key + "\":");
  if (at == std::string::npos) return false;
  at += key.size() + 3;
  if (at < line.size() && line[at] == '"') {
    size_t end = line.find('"', at + 1);
    if (end == std::string::npos) return false;
    *out = line.substr(at + 1, end - at - 1);
  } else {
    size_t end = line.find_first_of(",}]", at);
    *out = line.substr(at, end == std::string::npos ? std::string::npos : end - at);
  }
  return true;
}

// One collective as a rank's dump recorded it (times in microseconds of the system clock).
struct Entry {
  long long start = 0, end = -1;  // end -1: still running at the dump
  std::string state;
  std::string call;  // "allreduce (count 16384, float32, sum)": what every rank must have called alike
};

struct Rank {
  std::string who, file;
  unsigned long long lastEntered = 0, lastCompleted = 0;
  std::vector<std::string> running, failed;
  std::set<unsigned long long> entered;
  std::map<unsigned long long, Entry> ops;
};

}  // namespace

int main(int argc, char** argv) {
  std::string merged;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-o") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "lockstep-trace: -o needs a file to write the merged trace to\n");
        return 2;
      }
      merged = argv[++i];
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: lockstep-trace [-o merged.json] trace.rank0.json trace.rank1.json ...\n");
      return 0;
    } else {
      files.push_back(a);
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "usage: lockstep-trace [-o merged.json] trace.rank0.json trace.rank1.json ...\n");
    return 2;
  }
  std::map<int, Rank> ranks;
  std::vector<std::string> events;
  std::map<unsigned long long, std::string> kinds;
  std::set<int> peers;                       // every rank some op names as a peer
  std::map<std::string, std::string> comms;  // communicator name -> a file that holds it
  std::map<std::string, std::string> jobs;   // run of it (rank 0's host:pid, the comm id) -> a file
  std::string duplicate;
  std::set<unsigned long long> allEntered;  // every op number some rank entered
  for (const auto& path : files) {
    std::string badSeq;
    std::ifstream in(path);
    if (!in) {
      std::fprintf(stderr, "lockstep-trace: cannot read %s\n", path.c_str());
      return 2;
    }
    bool isDump = false, whole = false;
    for (std::string line; std::getline(in, line);) {
      std::string v;
      if (line.rfind("],\"displayTimeUnit\"", 0) == 0) whole = true;
      if (line.rfind("{\"name\"", 0) == 0 || line.rfind(",", 0) == 0) {
        std::string ev = line[0] == ',' ? line.substr(1) : line;
        while (!ev.empty() && (ev.back() == ',' || ev.back() == ' ')) ev.pop_back();
        if (ev.find("\"ph\"") != std::string::npos) events.push_back(ev);
      }
      if (line.find("\"process_name\"") != std::string::npos) {
        std::string pid, name;
        size_t args = line.find("\"args\"");
        if (field(line, "pid", &pid) && args != std::string::npos && field(line.substr(args), "name", &name)) {
          Rank& r = ranks[std::atoi(pid.c_str())];
          if (!r.file.empty() && duplicate.empty()) {
            duplicate = r.file + " and " + path + " are both rank " + pid + "'s dump";
          }
          r.who = name;
          r.file = path;
          std::string comm, job;  // absent in dumps of older builds: one communicator, as then
          field(line.substr(args), "comm", &comm);
          comms.emplace(comm, path);
          if (field(line.substr(args), "job", &job) && !job.empty()) jobs.emplace(job, path);
          isDump = true;
        }
        continue;
      }
      if (line.find("\"cat\":\"lockstep\"") == std::string::npos || !field(line, "rank", &v)) continue;
      Rank& r = ranks[std::atoi(v.c_str())];
      std::string seqText, kind, state, name, where;
      field(line, "seq", &seqText);
      field(line, "kind", &kind);
      field(line, "state", &state);
      field(line, "name", &name);
      if (field(line, "path", &where) && where == "cuda_ipc") name += " (cuda_ipc kernel)";
      // A number as Lockstep writes it: digits, below 2^62 (a hostile or garbled one made the
      // analysis count to it).
      char* end = nullptr;
      errno = 0;
      unsigned long long seq = std::strtoull(seqText.c_str(), &end, 10);
      if (seqText.empty() || !std::isdigit(static_cast<unsigned char>(seqText[0])) || *end != '\0' || errno != 0 ||
          seq >= (1ull << 62)) {
        if (badSeq.empty()) badSeq = "an op's sequence number \"" + seqText + "\" is not one Lockstep writes";
        continue;
      }
      if (seq) {
        std::string ts, dur;
        Entry& e = r.ops[seq];
        // Times as Lockstep writes them (microseconds, well inside 2^62): a garbled one is taken as
        // 0, where adding a duration to a start near INT64_MAX overflowed (helper-94).
        auto micros = [](const std::string& text) -> long long {
          const long long v = std::atoll(text.c_str());
          return v > -(1ll << 62) && v < (1ll << 62) ? v : 0;
        };
        if (field(line, "ts", &ts)) e.start = micros(ts);
        if (field(line, "dur", &dur)) e.end = e.start + micros(dur);
        e.state = state;
        if (e.call.empty()) {  // the host track's record (a cuda_ipc kernel's repeats it)
          std::string count, dtype, op, root;
          field(line, "count", &count);
          field(line, "dtype", &dtype);
          field(line, "op", &op);
          field(line, "root", &root);
          e.call = kind == "split"
                       ? kind  // lockstepCommSplit: its colors and keys are not recorded
                       : kind + " (count " + count + ", " + dtype + (op.empty() || op == "none" ? "" : ", " + op) +
                             (root.empty() || root == "-1" ? "" : ", root " + root) + ")";
        }
        r.entered.insert(seq);
        allEntered.insert(seq);
        kinds[seq] = kind;
        if (seq > r.lastEntered) r.lastEntered = seq;
        if (state == "no error" && seq > r.lastCompleted) r.lastCompleted = seq;
      }
      if (state == "running")
        r.running.push_back(name);
      else if (state != "no error")
        r.failed.push_back(name + ": " + state);
      if (size_t at = line.find("\"peers\":["); at != std::string::npos) {
        for (const char* p = line.c_str() + at + 9; *p && *p != ']';) {
          char* end = nullptr;
          long peer = std::strtol(p, &end, 10);
          if (end == p) break;
          peers.insert(static_cast<int>(peer));
          p = *end == ',' ? end + 1 : end;
        }
      }
    }
    if (!isDump) {
      std::fprintf(stderr, "lockstep-trace: %s is not a Lockstep flight-recorder dump\n", path.c_str());
      return 2;
    }
    // A cut dump (read while an older build wrote it in place, or cut by a full disk) reads as
    // a rank that never entered the ops after the cut: refused, not analysed.
    if (!whole) {
      std::fprintf(stderr, "lockstep-trace: %s is a truncated dump (no closing line)\n", path.c_str());
      return 2;
    }
    if (!badSeq.empty()) {
      std::fprintf(stderr, "lockstep-trace: %s: %s\n", path.c_str(), badSeq.c_str());
      return 2;
    }
  }
  if (comms.size() > 1) {
    std::fprintf(stderr, "lockstep-trace: these dumps come from %zu communicators:", comms.size());
    for (const auto& [comm, file] : comms) {
      std::fprintf(stderr, " %s (%s)", comm.empty() ? "the one made by init" : comm.c_str(), file.c_str());
    }
    std::fprintf(stderr, "; give the dumps of one communicator\n");
    return 2;
  }
  if (jobs.size() > 1) {
    std::fprintf(stderr, "lockstep-trace: these dumps come from %zu communicators, or runs of one:", jobs.size());
    for (const auto& [job, file] : jobs) std::fprintf(stderr, " one whose %s (%s)", job.c_str(), file.c_str());
    std::fprintf(stderr,
                 "; a leftover dump of an earlier job at the same path? (LOCKSTEP_TRACE's %%p keeps runs apart)\n");
    return 2;
  }
  if (!duplicate.empty()) {
    std::fprintf(stderr, "lockstep-trace: %s\n", duplicate.c_str());
    return 2;
  }

  unsigned long long maxEntered = 0;
  for (auto& [rank, r] : ranks) {
    if (r.who.empty()) r.who = "rank " + std::to_string(rank);
    std::printf("%s: last entered op #%llu, last completed #%llu", r.who.c_str(), r.lastEntered, r.lastCompleted);
    for (const auto& s : r.running) std::printf("; still running: %s", s.c_str());
    for (const auto& s : r.failed) std::printf("; failed: %s", s.c_str());
    std::printf("\n");
    maxEntered = std::max(maxEntered, r.lastEntered);
  }
  // A collective that some ranks entered and others never did: the culprits are the latter.
  // Only numbers some rank entered can show a problem: the loop runs over those, not up to the
  // largest (2e7 ops took seconds).
  int problems = 0;
  for (unsigned long long seq : allEntered) {
    std::string missing, present;
    for (auto& [rank, r] : ranks) {
      // Older ops may have left the recorder's window: only judge ops after a rank's oldest.
      bool inWindow = !r.entered.empty() && seq >= *r.entered.begin();
      bool did = r.entered.count(seq) > 0;
      if (!did && (inWindow || r.entered.empty() || seq > r.lastEntered))
        missing += (missing.empty() ? "" : ", ") + r.who;
      if (did) present += (present.empty() ? "" : ", ") + std::to_string(rank);
    }
    if (!missing.empty() && !present.empty()) {
      std::printf("op #%llu (%s): entered by rank(s) %s; never entered by %s\n", seq, kinds[seq].c_str(),
                  present.c_str(), missing.c_str());
      ++problems;
    }
    // Ranks that called different collectives (or counts, types, ops, roots) under one number:
    // the mismatch each rank's error describes from its side, with the odd ranks named.
    std::map<std::string, std::vector<int>> calls;
    for (auto& [rank, r] : ranks) {
      auto it = r.ops.find(seq);
      if (it != r.ops.end()) calls[it->second.call].push_back(rank);
    }
    if (calls.size() > 1) {
      std::string text, odd;
      size_t most = 0;
      for (const auto& [call, who] : calls) most = std::max(most, who.size());
      for (const auto& [call, who] : calls) {
        std::string list;
        for (int q : who) list += (list.empty() ? "" : ", ") + std::to_string(q);
        text += (text.empty() ? "" : "; ") + std::string("rank(s) ") + list + " called " + call;
        if (who.size() < most) odd += (odd.empty() ? "" : ", ") + list;
      }
      std::printf("op #%llu: the ranks' calls differ: %s%s\n", seq, text.c_str(),
                  odd.empty() ? "" : ("; the odd one(s): rank(s) " + odd).c_str());
      ++problems;
    }
    // A rank that entered only after others had timed out waiting for it was the late one: its
    // own record of the op (failed at once, with the others' report) does not make it on time.
    long long firstTimeout = -1;
    std::string waited;
    for (auto& [rank, r] : ranks) {
      auto it = r.ops.find(seq);
      if (it == r.ops.end() || it->second.state != "timeout" || it->second.end < 0) continue;
      if (firstTimeout < 0 || it->second.end < firstTimeout) firstTimeout = it->second.end;
    }
    if (firstTimeout < 0) continue;
    std::string late;
    for (auto& [rank, r] : ranks) {
      auto it = r.ops.find(seq);
      if (it == r.ops.end()) continue;
      if (it->second.start > firstTimeout) {
        late += (late.empty() ? "" : ", ") + r.who + " (" + std::to_string((it->second.start - firstTimeout) / 1000) +
                " ms after)";
      } else if (it->second.state == "timeout") {
        waited += (waited.empty() ? "" : ", ") + std::to_string(rank);
      }
    }
    if (!late.empty()) {
      std::printf("op #%llu (%s): entered by %s only after rank(s) %s had timed out waiting for it\n", seq,
                  kinds[seq].c_str(), late.c_str(), waited.c_str());
      ++problems;
    }
  }
  // A rank that died before it could dump (SIGKILL, a crash) is named by its peers' ops.
  for (int peer : peers) {
    if (ranks.count(peer)) continue;
    std::printf("rank %d: no dump, yet ops of the others name it as a peer (did it die?)\n", peer);
    ++problems;
  }
  if (problems == 0) {
    std::printf("every rank entered every collective up to #%llu\n", maxEntered);
    // What failed without a missing, late or mismatched rank to show for it (sends and receives,
    // which take no op number, are not compared here: their own errors name the peer).
    std::string failed;
    for (auto& [rank, r] : ranks) {
      if (!r.failed.empty()) failed += (failed.empty() ? "" : ", ") + r.who;
    }
    if (!failed.empty()) {
      std::printf(
          "yet ops failed on %s (see above): a send or receive, or a cause the dumps do not show; their "
          "errors say more\n",
          failed.c_str());
      ++problems;
    }
  }
  if (!merged.empty()) {
    FILE* f = std::fopen(merged.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "lockstep-trace: cannot write %s\n", merged.c_str());
      return 2;
    }
    std::fprintf(f, "{\"traceEvents\":[\n");
    for (size_t i = 0; i < events.size(); ++i) std::fprintf(f, "%s%s\n", i ? "," : "", events[i].c_str());
    std::fprintf(f, "],\"displayTimeUnit\":\"ms\"}\n");
    std::fclose(f);
    std::printf("merged trace of %zu ranks written to %s\n", ranks.size(), merged.c_str());
  }
  return problems ? 1 : 0;
}
