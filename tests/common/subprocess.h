// Runs a command with extra environment variables, captures stdout+stderr, and enforces a time
// bound: a command still running at the deadline is killed (with its process group) and reported
// as timed out. Tests use it so that a hang is a failure, never a stuck suite.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace lockstep::testing {

struct ProcResult {
  int code = -1;  // exit code, 128 + signal, or -1 if it timed out
  bool timedOut = false;
  std::string output;
  double seconds = 0;
};

class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
    // The inherited environment, with `env`'s settings in place of any of the same name (getenv
    // takes the first of duplicates: an inherited ASAN_OPTIONS hid a test's own).
    std::vector<std::string> envStrings;
    auto nameOf = [](const std::string& e) { return e.substr(0, e.find('=') + 1); };
    for (char** e = environ; *e; ++e) {
      const std::string inherited = *e;
      if (std::none_of(env.begin(), env.end(),
                       [&](const std::string& mine) { return nameOf(mine) == nameOf(inherited); }))
        envStrings.push_back(inherited);
    }
    for (const auto& e : env) envStrings.push_back(e);
    std::vector<char*> args, envp;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (auto& e : envStrings) envp.push_back(e.data());
    envp.push_back(nullptr);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    start_ = std::chrono::steady_clock::now();
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      dup2(fds[1], 1);
      dup2(fds[1], 2);
      execvpe(args[0], args.data(), envp.data());
      _exit(127);
    }
    close(fds[1]);
    out_ = fds[0];
  }
  ~Process() {
    if (pid_ > 0 && !reaped_) {
      kill(-pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) close(out_);
  }

  pid_t pid() const { return pid_; }

  ProcResult wait(double timeoutSeconds) {
    ProcResult r;
    auto deadline = start_ + std::chrono::milliseconds(static_cast<int64_t>(timeoutSeconds * 1000));
    bool eof = false;
    while (!reaped_ || !eof) {
      if (!eof) {
        pollfd p{out_, POLLIN, 0};
        if (poll(&p, 1, 50) > 0) {
          char buf[65536];
          ssize_t n = read(out_, buf, sizeof(buf));
          if (n > 0)
            output_.append(buf, static_cast<size_t>(n));
          else
            eof = true;
        }
      } else {
        usleep(10000);
      }
      if (!reaped_) {
        int status;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          reaped_ = true;
          r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
      }
      if (std::chrono::steady_clock::now() > deadline && !reaped_) {
        kill(-pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        reaped_ = true;
        r.timedOut = true;
        r.code = -1;
      }
      if (reaped_ && std::chrono::steady_clock::now() > deadline + std::chrono::seconds(2)) break;
    }
    r.output = output_;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    return r;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  bool reaped_ = false;
  std::string output_;
  std::chrono::steady_clock::time_point start_;
};

inline ProcResult run(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                      double timeoutSeconds) {
  Process p(argv, env);
  return p.wait(timeoutSeconds);
}

}  // namespace lockstep::testing
