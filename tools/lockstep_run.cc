// lockstep-run: start N ranks of a program on this machine.
//
//   lockstep-run -n 4 [--] ./trainer --lr 0.1
//
// The launcher creates a unique id (it serves the rendezvous itself, so no port has to be picked
// in advance) and starts each rank with LOCKSTEP_RANK, LOCKSTEP_LOCAL_RANK, LOCKSTEP_WORLD_SIZE
// and LOCKSTEP_UNIQUE_ID set, so lockstepCommInitFromEnv() just works. Every output line is
// prefixed with "[rank] ". When a rank fails, the others get a second to end on their own (to
// report the failure, which they see within milliseconds), then SIGTERM (SIGKILL after a grace
// period), and the launcher exits with the first failure's code (128 + signal for a signal).
// SIGINT, SIGTERM, SIGHUP (a closed terminal or ssh session) and SIGQUIT are forwarded to the
// ranks, unless the launcher was started with them ignored (nohup, a background job of a
// script): then they stay ignored, in the ranks too; after them the launcher ends by the same
// signal, so a script running it stops on Ctrl-C as it would for the program alone. SIGUSR1 and
// SIGUSR2 (Slurm's --signal, a checkpoint request) are forwarded and the job goes on. Ctrl-Z
// (SIGTSTP) stops the ranks with the launcher, and they continue with it (fg, bg). Each rank
// runs in a session of its own, with no controlling terminal (reading /dev/tty fails at once
// instead of stopping the rank for ever), and what a rank started goes with it: the ranks'
// process groups are stopped when the job ends, however it ends. Ranks die with the launcher.
// Their stdin is /dev/null. A rank that exits before the rendezvous completes ends it: the
// others' init fails at once naming that rank. When the launcher's own output is closed
// (`lockstep-run ... | head`), the ranks' matching pipes are closed too, so a rank that writes
// there gets SIGPIPE, as it would without the launcher.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "bootstrap/root_service.h"
#include "lockstep/lockstep.h"

extern char** environ;

namespace {

volatile sig_atomic_t gSignal = 0, gSuspend = 0, gUser1 = 0, gUser2 = 0;
void onSignal(int sig) { gSignal = sig; }
void onSuspend(int) { gSuspend = 1; }
void onUser(int sig) { (sig == SIGUSR1 ? gUser1 : gUser2) = 1; }

// The signals that stop a job, forwarded to the ranks.
constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
// Forwarded too, but the job goes on: the ranks decide (a checkpoint before a time limit). Left
// to their default, they killed the launcher alone, and what the ranks started outlived the job.
constexpr int kUserSignals[] = {SIGUSR1, SIGUSR2};
// An unfinished line is written once it holds this much, so memory stays bounded.
constexpr size_t kMaxLine = 64 << 10;
// How long the other ranks get, after one failed, to end on their own before SIGTERM.
constexpr std::chrono::milliseconds kSettle{1000};

// Catches each of `sigs` with `handler`, but for those this launcher was started with ignored
// (nohup, `&` in a script), which it notes in `ignored` and leaves so.
template <size_t N>
void catchUnlessIgnored(const int (&sigs)[N], void (*handler)(int), bool (&ignored)[N]) {
  struct sigaction sa {};
  sa.sa_handler = handler;
  for (size_t k = 0; k < N; ++k) {
    struct sigaction before {};
    ignored[k] = sigaction(sigs[k], nullptr, &before) == 0 && before.sa_handler == SIG_IGN;
    if (!ignored[k]) sigaction(sigs[k], &sa, nullptr);
  }
}

// In a rank before exec: what the launcher caught goes back to its default, what it was started
// with ignored stays ignored (exec keeps an ignored disposition). Async-signal-safe.
template <size_t N>
void restoreForExec(const int (&sigs)[N], const bool (&ignored)[N]) {
  for (size_t k = 0; k < N; ++k) signal(sigs[k], ignored[k] ? SIG_IGN : SIG_DFL);
}

// True, with *out set, when text is a whole number in [lo, hi].
bool parseCount(const char* text, long lo, long hi, long* out) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

void usage() {
  std::fprintf(stderr,
               "usage: lockstep-run -n N [--grace SECONDS] [--bind core|none] [--] program [args...]\n"
               "Starts N ranks of program on this machine with LOCKSTEP_RANK, LOCKSTEP_LOCAL_RANK,\n"
               "LOCKSTEP_WORLD_SIZE and LOCKSTEP_UNIQUE_ID set. --bind core (the default, as mpirun's\n"
               "--bind-to core) gives rank r the r-th CPU this launcher may use when there are at\n"
               "least N of them; with more ranks than CPUs nothing is bound.\n");
}

struct Rank {
  pid_t pid = -1;
  int fds[2] = {-1, -1};  // stdout, stderr pipes (read ends)
  std::string partial[2];
  bool exited = false;
  int code = 0;
};

// One prefixed line appended to `lines`, its bytes as they are (NULs too).
void addLine(std::string& lines, int rank, const char* line, size_t n) {
  lines.append(1, '[').append(std::to_string(rank)).append("] ").append(line, n).push_back('\n');
}

// Writes complete lines of `data` with the rank prefix; keeps the unfinished tail. A line ends
// at '\n', at a '\r' that no '\n' follows (a progress bar redrawing itself: each state shows as
// it comes, not all at the end), and at kMaxLine bytes. All of them go in one write, to a stream
// the launcher made unbuffered: another writer to the same file (a second launcher appending to
// one log) must not split a line, and stdio's buffer cut redirected stdout every 4 KiB. Returns
// false when the launcher's stream is closed (EPIPE).
bool emit(int rank, int stream, std::string& partial, const char* data, size_t n, bool flush) {
  errno = 0;
  // The tail holds no line end, but for a '\r' or a full line's last byte: looked at again.
  const size_t scanned = partial.empty() ? 0 : partial.size() - 1;
  partial.append(data, n);
  FILE* out = stream == 0 ? stdout : stderr;
  std::string lines;
  size_t start = 0;
  for (size_t i = scanned; i < partial.size(); ++i) {
    const char c = partial[i];
    const bool last = i + 1 == partial.size();
    const bool full = i + 1 - start == kMaxLine;
    // What follows decides a '\r', and a cut at kMaxLine (none where the line ends next anyway:
    // it once left an empty line, or lost the '\r' of a "\r\n"): wait for the next read.
    if ((c == '\r' || full) && last && !flush) break;
    const char next = last ? '\0' : partial[i + 1];
    const bool end = c == '\n' || (c == '\r' && next != '\n') || (full && next != '\n' && next != '\r');
    if (!end) continue;
    const size_t len = i - start + (c == '\n' || c == '\r' ? 0 : 1);
    if (c != '\r' || len > 0) addLine(lines, rank, partial.data() + start, len);
    start = i + 1;
  }
  partial.erase(0, start);
  if (flush && !partial.empty()) {
    addLine(lines, rank, partial.data(), partial.size());
    partial.clear();
  }
  if (!lines.empty()) std::fwrite(lines.data(), 1, lines.size(), out);
  if (!std::ferror(out)) return true;
  const bool gone = errno == EPIPE;  // SIGPIPE is ignored here, so a closed reader reads as this
  std::clearerr(out);
  return !gone;
}

// A rank killed while it was setting up shared memory (before it could unlink its segments)
// leaves them in /dev/shm. Their names start with "lockstep-<creator pid>-<pid namespace>-", so the
// launcher, which knows its ranks' pids (in its own namespace, theirs too), removes them once
// every rank has exited. The namespace is part of the match: containers that share /dev/shm but
// not pids have small, colliding pids, and a job in one removed another's segments as they were
// being set up (helper-67).
void removeLeftoverSegments(const std::vector<Rank>& ranks) {
  struct stat ns;
  if (stat("/proc/self/ns/pid", &ns) != 0) return;  // whose pids these are is unknown
  char nsHex[24];
  std::snprintf(nsHex, sizeof(nsHex), "%llx", static_cast<unsigned long long>(ns.st_ino));
  DIR* dir = opendir("/dev/shm");
  if (!dir) return;
  std::vector<std::string> doomed;
  while (dirent* e = readdir(dir)) {
    for (const Rank& r : ranks) {
      std::string prefix = "lockstep-" + std::to_string(r.pid) + "-" + nsHex + "-";
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) doomed.push_back(std::string("/") + e->d_name);
    }
  }
  closedir(dir);
  for (const auto& name : doomed) shm_unlink(name.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  int n = 0;
  double grace = 3.0;
  bool bind = true;
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "-n" || a == "-np" || a == "--grace" || a == "--bind") && i + 1 >= argc) {
      std::fprintf(stderr, "lockstep-run: %s needs a value\n", a.c_str());
      usage();
      return 2;
    }
    if (a == "-n" || a == "-np") {
      long v = 0;
      if (!parseCount(argv[++i], 1, 1 << 16, &v)) {
        std::fprintf(stderr, "lockstep-run: -n takes a number of ranks from 1 to 65536, not %s\n", argv[i]);
        return 2;
      }
      n = static_cast<int>(v);
    } else if (a == "--grace") {
      char* end = nullptr;
      grace = std::strtod(argv[++i], &end);
      if (end == argv[i] || *end != '\0' || !(grace >= 0 && grace <= 3600)) {
        std::fprintf(stderr, "lockstep-run: --grace takes seconds from 0 to 3600, not %s\n", argv[i]);
        return 2;
      }
    } else if (a == "--bind") {
      std::string how = argv[++i];
      if (how != "core" && how != "none") {
        std::fprintf(stderr, "lockstep-run: --bind takes core or none, not %s\n", how.c_str());
        return 2;
      }
      bind = how == "core";
    } else if (a == "-h" || a == "--help") {
      usage();
      return 0;
    } else if (a == "--") {
      ++i;
      break;
    } else if (a[0] == '-') {
      std::fprintf(stderr, "lockstep-run: unknown option %s\n", a.c_str());
      usage();
      return 2;
    } else {
      break;
    }
  }
  if (n < 1 || i >= argc) {
    usage();
    return 2;
  }
  char** prog = argv + i;

  // The rendezvous holds a descriptor per rank until all have come, beside two pipes per rank: a
  // soft limit of 1024 ran out at about 330 ranks, and ranks were turned away with a misleading
  // reason (helper-82). Raised to the hard limit here; the ranks get the limit we were given.
  rlimit files{};
  const bool haveLimit = getrlimit(RLIMIT_NOFILE, &files) == 0;
  if (haveLimit && files.rlim_cur < files.rlim_max) {
    rlimit raised = files;
    raised.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &raised);
  }

  lockstepUniqueId id;
  char hex[2 * LOCKSTEP_UNIQUE_ID_BYTES + 1];
  if (lockstepGetUniqueId(&id) != lockstepSuccess || lockstepUniqueIdToHex(&id, hex, sizeof(hex)) != lockstepSuccess) {
    // Making the id validates the LOCKSTEP_* settings the ranks will read too (the launcher's
    // environment is theirs): a bad one stops the job here, before any rank starts.
    std::fprintf(stderr,
                 "lockstep-run: cannot start the rendezvous (it checks the LOCKSTEP_* settings the ranks get): %s\n",
                 lockstepGetLastError(nullptr));
    return 1;
  }

  // A stop signal the launcher was started with ignored stays ignored (nohup, or `&` in a
  // script for SIGINT and SIGQUIT), in the ranks too: exec keeps an ignored disposition.
  bool ignored[std::size(kStopSignals)] = {}, userIgnored[std::size(kUserSignals)] = {};
  catchUnlessIgnored(kStopSignals, onSignal, ignored);
  catchUnlessIgnored(kUserSignals, onUser, userIgnored);
  // Lines go out whole, one write each batch (emit()).
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  std::setvbuf(stderr, nullptr, _IONBF, 0);
  // Ctrl-Z: the ranks' process groups are out of the terminal's reach, so the launcher stops them
  // itself (below), as mpirun does; unless it was started with SIGTSTP ignored, as above.
  struct sigaction tstp {};
  if (sigaction(SIGTSTP, nullptr, &tstp) == 0 && tstp.sa_handler != SIG_IGN) {
    tstp.sa_handler = onSuspend;
    tstp.sa_flags = 0;
    sigemptyset(&tstp.sa_mask);
    sigaction(SIGTSTP, &tstp, nullptr);
  }
  signal(SIGPIPE, SIG_IGN);
  // Inherited as ignored (a parent that set it so), SIGCHLD would have the kernel reap the ranks
  // at once: waitid would never see them exit, and the launcher would wait for ever.
  signal(SIGCHLD, SIG_DFL);

  // Everything the children need is built before fork: after fork, a child of this
  // multi-threaded process may only call async-signal-safe functions until exec.
  std::vector<std::string> base;
  for (char** e = environ; *e; ++e) {
    if (std::strncmp(*e, "LOCKSTEP_RANK=", 14) && std::strncmp(*e, "LOCKSTEP_LOCAL_RANK=", 20) &&
        std::strncmp(*e, "LOCKSTEP_WORLD_SIZE=", 20) && std::strncmp(*e, "LOCKSTEP_UNIQUE_ID=", 19) &&
        std::strncmp(*e, "LOCKSTEP_ROOT=", 14)) {
      base.push_back(*e);
    }
  }
  // Binding, as mpirun binds to cores: two ranks that start on one CPU spin against each other
  // until the scheduler spreads them, which made the first sizes of a sweep 2-50x slower in
  // about one run out of two here. With more ranks than CPUs, binding would only add to it.
  std::vector<cpu_set_t> cpuOf;
  cpu_set_t allowed;
  if (bind && sched_getaffinity(0, sizeof(allowed), &allowed) == 0 && CPU_COUNT(&allowed) >= n) {
    for (int c = 0; c < CPU_SETSIZE && static_cast<int>(cpuOf.size()) < n; ++c) {
      if (!CPU_ISSET(c, &allowed)) continue;
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(c, &one);
      cpuOf.push_back(one);
    }
  }
  const std::string execFailed = std::string("lockstep-run: cannot execute ") + prog[0] + ": ";
  // exec's reasons, worded before fork (strerror is not async-signal-safe): "Permission denied"
  // tells more than "errno 13".
  std::vector<std::pair<int, std::string>> execReasons;
  for (int e : {ENOENT, EACCES, ENOEXEC, ENOTDIR, EISDIR, ELOOP, ENAMETOOLONG, ETXTBSY, E2BIG, ENOMEM, EPERM}) {
    execReasons.emplace_back(e, std::string(std::strerror(e)) + " (errno " + std::to_string(e) + ")\n");
  }
  std::vector<Rank> ranks(n);
  pid_t parent = getpid();
  // Signals stay blocked across fork: a child resets its handlers before it unblocks them, so a
  // SIGTERM sent to a rank that has not exec'd yet is not swallowed by the launcher's handler.
  sigset_t stopSignals, oldMask;
  sigemptyset(&stopSignals);
  for (int sig : kStopSignals) sigaddset(&stopSignals, sig);
  for (int sig : kUserSignals) sigaddset(&stopSignals, sig);
  sigprocmask(SIG_BLOCK, &stopSignals, &oldMask);
  for (int r = 0; r < n; ++r) {
    std::vector<std::string> env = base;
    env.push_back("LOCKSTEP_RANK=" + std::to_string(r));
    env.push_back("LOCKSTEP_LOCAL_RANK=" + std::to_string(r));
    env.push_back("LOCKSTEP_WORLD_SIZE=" + std::to_string(n));
    env.push_back(std::string("LOCKSTEP_UNIQUE_ID=") + hex);
    std::vector<char*> envp;
    for (auto& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
      std::perror("lockstep-run: pipe");
      return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
      std::perror("lockstep-run: fork");
      return 1;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      // Its own session, so its own process group (stopping a rank also stops what it started),
      // and no controlling terminal: in a background group of the launcher's terminal, a rank
      // that read /dev/tty (a password prompt, getpass) was stopped by SIGTTIN for ever, unseen.
      // stdin is /dev/null, as with mpirun's non-zero ranks.
      setsid();
      int devnull = open("/dev/null", O_RDONLY);
      if (devnull > 0) {
        dup2(devnull, 0);
        close(devnull);  // the rank got a spare descriptor on /dev/null otherwise (helper-82)
      }
      dup2(out[1], 1);
      dup2(err[1], 2);
      restoreForExec(kStopSignals, ignored);
      restoreForExec(kUserSignals, userIgnored);
      signal(SIGPIPE, SIG_DFL);
      sigprocmask(SIG_SETMASK, &oldMask, nullptr);
      if (!cpuOf.empty()) sched_setaffinity(0, sizeof(cpu_set_t), &cpuOf[r]);
      if (haveLimit) setrlimit(RLIMIT_NOFILE, &files);
      execvpe(prog[0], prog, envp.data());
      // Only async-signal-safe calls here: the messages were built before fork; another errno is
      // written as a number. As a shell does, 127 for a program not found, 126 for one found but
      // not executable.
      const int why = errno;
      (void)!write(2, execFailed.data(), execFailed.size());
      bool told = false;
      for (const auto& [e, text] : execReasons) {
        if (e != why) continue;
        (void)!write(2, text.data(), text.size());
        told = true;
      }
      if (!told) {
        char number[12];
        int at = 11;
        number[at] = '\n';
        int v = why;
        do {
          number[--at] = static_cast<char>('0' + v % 10);
          v /= 10;
        } while (v > 0 && at > 0);
        (void)!write(2, "errno ", 6);
        (void)!write(2, number + at, static_cast<size_t>(12 - at));
      }
      _exit(why == ENOENT ? 127 : 126);
    }
    close(out[1]);
    close(err[1]);
    ranks[r].pid = pid;
    ranks[r].fds[0] = out[0];
    ranks[r].fds[1] = err[0];
  }

  sigprocmask(SIG_SETMASK, &oldMask, nullptr);

  int firstFailure = -1, exitCode = 0, alive = n;
  bool forwarded = false;
  bool closed[2] = {false, false};  // the launcher's stdout / stderr, once a write finds it closed
  std::chrono::steady_clock::time_point termAt{}, killAt{}, allExitedAt{};
  // Every rank's process group, exited ranks' too: what a failed rank started must not outlive
  // the job (a group whose members are all gone just answers ESRCH). Ranks are not reaped before
  // the end, so none of these ids can have been reused.
  // A rank that has not reached its setsid() yet has no group: the signal goes to it alone.
  auto signalAll = [&](int sig) {
    for (auto& rk : ranks) {
      if (kill(-rk.pid, sig) != 0 && errno == ESRCH) kill(rk.pid, sig);
    }
  };
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<std::pair<int, int>> who;
    for (int r = 0; r < n; ++r) {
      for (int s = 0; s < 2; ++s) {
        if (ranks[r].fds[s] >= 0) {
          fds.push_back({ranks[r].fds[s], POLLIN, 0});
          who.push_back({r, s});
        }
      }
    }
    // Done when every rank has exited and its output is drained; output still held open by
    // something a rank left behind gets one second, then is abandoned.
    if (alive == 0 && allExitedAt == std::chrono::steady_clock::time_point{}) {
      allExitedAt = std::chrono::steady_clock::now();
    }
    if (alive == 0 && (fds.empty() || std::chrono::steady_clock::now() - allExitedAt > std::chrono::seconds(1))) break;
    poll(fds.data(), fds.size(), 50);
    for (size_t k = 0; k < fds.size(); ++k) {
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      auto [r, s] = who[k];
      char buf[65536];
      if (ranks[r].fds[s] < 0) continue;  // closed above, with the launcher's stream
      ssize_t got = read(ranks[r].fds[s], buf, sizeof(buf));
      bool open = true;
      if (got > 0) {
        open = emit(r, s, ranks[r].partial[s], buf, static_cast<size_t>(got), false);
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        emit(r, s, ranks[r].partial[s], "", 0, true);
        close(ranks[r].fds[s]);
        ranks[r].fds[s] = -1;
      }
      if (!open && !closed[s]) {
        // The reader went away (`| head`): no rank's output on this stream can go anywhere.
        closed[s] = true;
        for (Rank& rk : ranks) {
          if (rk.fds[s] >= 0) close(rk.fds[s]);
          rk.fds[s] = -1;
        }
      }
    }
    // An exited rank is seen but not reaped (WNOWAIT) until the job is over: while it is a
    // zombie its pid, which is its process group's id, cannot be reused, so signalling the group
    // can only reach what the rank started.
    for (int r = 0; r < n; ++r) {
      if (ranks[r].exited) continue;
      siginfo_t info{};
      if (waitid(P_PID, static_cast<id_t>(ranks[r].pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0)
        continue;
      ranks[r].exited = true;
      --alive;
      const bool exited = info.si_code == CLD_EXITED;
      int code = exited ? info.si_status : 128 + info.si_status;
      ranks[r].code = code;
      // Before the rendezvous formed, the others would wait out their timeout for it.
      lockstep::detachedRootsRankExited(
          r, (exited ? "exited with code " : "was killed by signal ") + std::to_string(info.si_status));
      // After a forwarded SIGINT/SIGTERM the ranks stop because they were told to: that is
      // not a failure to report, and the launcher exits with 128 + that signal.
      if (code != 0 && firstFailure < 0 && !forwarded) {
        firstFailure = r;
        exitCode = code;
        // A rank that wrote to a stream whose reader left (`| head`) is not news: a shell says
        // nothing of a pipeline's writer it ends so either.
        const bool readerLeft = !exited && info.si_status == SIGPIPE && (closed[0] || closed[1]);
        if (!readerLeft) {
          std::fprintf(stderr, "lockstep-run: rank %d %s %d; stopping the other ranks\n", r,
                       exited ? "exited with code" : "was killed by signal", info.si_status);
        }
        // Not at once: the others notice a lost or failed peer within milliseconds, and a moment
        // lets them print their own errors (naming the culprit) and write their trace dumps,
        // which SIGTERM sent now would cut off. A pipeline's reader that left needs no moment.
        termAt = std::chrono::steady_clock::now() + (readerLeft ? std::chrono::milliseconds(0) : kSettle);
      }
    }
    if (gSuspend) {
      // Stopped together and continued together (fg, bg): the ranks' deadlines run on while they
      // are stopped, so an op under way when the job stops longer than LOCKSTEP_TIMEOUT times out.
      gSuspend = 0;
      signalAll(SIGSTOP);
      raise(SIGSTOP);
      signalAll(SIGCONT);
    }
    if (gUser1 || gUser2) {
      for (volatile sig_atomic_t* flag : {&gUser1, &gUser2}) {
        if (!*flag) continue;
        *flag = 0;
        signalAll(flag == &gUser1 ? SIGUSR1 : SIGUSR2);
      }
    }
    if (gSignal && !forwarded) {
      signalAll(gSignal);
      forwarded = true;
      if (exitCode == 0) exitCode = 128 + gSignal;
      killAt = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int>(grace * 1000));
    }
    if (termAt != std::chrono::steady_clock::time_point{} && std::chrono::steady_clock::now() >= termAt &&
        killAt == std::chrono::steady_clock::time_point{}) {
      signalAll(SIGTERM);
      killAt = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int>(grace * 1000));
    }
    if (killAt != std::chrono::steady_clock::time_point{} && std::chrono::steady_clock::now() > killAt) {
      signalAll(SIGKILL);
    }
  }
  // What the ranks started and left running, also after a job that succeeded: the ranks' groups
  // go with the job.
  signalAll(SIGKILL);
  for (const Rank& rk : ranks) waitpid(rk.pid, nullptr, 0);  // the zombies kept until now
  removeLeftoverSegments(ranks);
  if (forwarded && exitCode == 128 + gSignal) {
    // Ended by the signal it forwarded: it dies by it too. A shell running it in a script stops
    // the script on Ctrl-C only if its child died of SIGINT; an exit(130) reads as a program
    // that handled it, and the script went on to its next command.
    signal(gSignal, SIG_DFL);
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, gSignal);
    sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
    raise(gSignal);
  }
  return exitCode;
}
