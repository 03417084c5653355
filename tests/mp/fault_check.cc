// A rank program for the fault tests. Started directly (not under lockstep-run, which would stop
// the survivors as soon as one rank dies), with LOCKSTEP_UNIQUE_ID, LOCKSTEP_RANK and
// LOCKSTEP_WORLD_SIZE set by the test.
//
//   fault_check --mode kill --victim R --after-ms T --stamp FILE
//       Every rank all-reduces in a loop (sizes vary). Rank R kills itself with SIGKILL after T ms,
//       writing the time to FILE first. The others must fail with lockstepRemoteError naming
//       rank R; they print how long after the kill they noticed. Exit 0 when that holds.
//   fault_check --mode stop --victim R --after-ms T
//       Rank R stops itself (SIGSTOP). The others must fail with lockstepTimeout naming rank R
//       (set LOCKSTEP_TIMEOUT). The test kills the stopped rank afterwards.
//   fault_check ... --op sendrecv|split
//       The loop is a ring of grouped sends and receives (sizes vary), or splits, instead of
//       all-reduces. After a failed split the next call must fail at once.
//   fault_check --mode leave --victim R --after-ms T --op sendrecv
//       Rank R destroys its communicator after T ms and lives on (10 s). The others must fail
//       with lockstepRemoteError saying that rank R left, long before their timeout.
//   fault_check --mode fork-then-die --victim R
//       The victim forks a child that outlives it, then dies: the others are told at once.
//   fault_check --mode split-death --victim R [--op exit]   (with tests/mp/die_at_connect.c preloaded)
//       The victim dies inside lockstepCommSplit, after its exchange (or calls exit() there): its
//       color's other members fail at once naming it, the other color's communicator works.
//   fault_check --mode slow-connects --after-ms T   (with die_at_connect.c and
//       LOCKSTEP_TEST_CONNECT_DELAY_MS=T): init, one all-reduce; init must take under 8 T.
//   fault_check --mode destroy-beside-stopped --victim R
//       Every rank makes three more communicators (splits); rank R stops itself (SIGSTOP); rank 0
//       waits past the unresponsive mark (set LOCKSTEP_TIMEOUT=2: 1 s), then destroys all four
//       within a second (each waited out its goodbye deadline for R: half a second here, 2 s at
//       the default timeout).
//   fault_check --mode leave-cascade --victim R
//       Rank R (not 0 or 1) returns from main without a destroy after op 1; rank 1 meets that at
//       op 2 and returns too; rank 0 comes to op 2 a second later and must name rank R, not rank
//       1, which only left because of it.
//   fault_check --mode out-of-order --victim R
//       Rank R receives from R + 1 where the others broadcast from R: every rank times out
//       naming where the other side is (in a receive; inside a collective).
//   fault_check --mode exit-on-failure --victim R --field "reduction op"|timeout
//       Every rank exits (_exit) as soon as its call fails, without a destroy, as scripts do.
//       "reduction op": rank R passes max where the others pass sum; every rank must return
//       lockstepMismatch naming R's call. timeout (set LOCKSTEP_TIMEOUT=2): rank R computes 6 s
//       before its call, rank 0 calls at once, the others after 1 s; rank 0 times out first and
//       every rank must return lockstepTimeout naming R. Neither may blame a rank's exit.
//   fault_check --mode split-root-out-of-fds
//       Rank 0 runs out of descriptors just before a split of every rank into one communicator,
//       whose first rank it is: it must fail naming `ulimit -n` (and live on 5 s), and the others
//       within 3 s naming it, not after their timeout (set LOCKSTEP_TIMEOUT=30).
//   fault_check --mode init-out-of-fds --victim R --after-ms K
//       Rank R may open K descriptors more than it holds before its init: its bootstrap fits,
//       its connections to every peer do not. Every init must fail within 10 s, rank R's naming
//       `ulimit -n`, the others' naming rank R and that (set LOCKSTEP_TIMEOUT=30).
//   fault_check --mode finish-alone-and-leave --victim R [--op exit]
//       Rank R, the root, broadcasts 0 elements where the others broadcast 1000 from it: its call
//       moves nothing and returns at once, and it destroys its communicator and lives on 3 s (or,
//       with --op exit, exits). The others must return lockstepMismatch naming the count within
//       10 s, not that rank R left (nor wait out their timeout).
//   fault_check --mode abort-after-its-op --victim R [--op exit]
//       Rank R, the root, broadcasts 1000 floats, which it finishes alone (they fit the links'
//       buffers), aborts its communicator and lives on 3 s (or exits). The others call the
//       broadcast 500 ms later: they must receive it whole (R completed it, as a goodbye lets its
//       peers finish its last op), then fail their next call at once naming R's abort.
//   fault_check --mode mismatch --victim R --field kind|count|datatype|"reduction op"|root|"kind, no data"|
//                                               "count 0, three times"|"count 0, in steady steps"|split
//       Rank R calls a collective that differs in one field; every rank must return
//       lockstepMismatch naming the field (for root, a rank that finished the broadcast without
//       hearing from R may succeed, and must then fail its next call naming the field). "kind, no
//       data": count-0 calls of different collectives, which all return success; the watchdog
//       must report the mismatch through lockstepCommGetAsyncError before the next call. "count
//       0, in steady steps": the same, op #10 of ops made every 60 ms, a training loop's rhythm.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "lockstep/lockstep.h"

namespace {

double nowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // one clock for every process on the machine
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

int rank = -1;

// One float summed: the steps of the leaving and aborting modes.
lockstepResult_t allReduceOne(lockstepComm_t comm) {
  float x = 1;
  return lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comm, nullptr);
}

int report(bool ok, const std::string& what) {
  std::printf("fault_check rank %d: %s: %s\n", rank, ok ? "OK" : "FAILED", what.c_str());
  std::fflush(stdout);
  return ok ? 0 : 1;
}

// Rank `victim` may open `spare` more descriptors than it holds: enough for its bootstrap, not
// for its connections to every peer. Every rank's init must fail; the victim's naming `ulimit
// -n`, the others' naming the victim and its shortage, well within their timeout.
int initOutOfFds(int victim, int spare) {
  const char* r = std::getenv("LOCKSTEP_RANK");
  rank = r ? std::atoi(r) : -1;
  if (rank == victim) {
    const int lowest = dup(0);  // descriptors are taken lowest first
    close(lowest);
    rlimit few{};
    getrlimit(RLIMIT_NOFILE, &few);
    few.rlim_cur = static_cast<rlim_t>(lowest + spare);
    setrlimit(RLIMIT_NOFILE, &few);
  }
  const double t0 = nowMs();
  lockstepComm_t comm = nullptr;
  const lockstepResult_t result = lockstepCommInitFromEnv(&comm);
  const double ms = nowMs() - t0;
  const std::string msg = lockstepGetLastError(nullptr);
  if (rank == victim) std::this_thread::sleep_for(std::chrono::seconds(2));  // a program that goes on
  // The others: a peer's failure (lockstepRemoteError), told in the victim's name, not passed
  // on under a relay's ("rank 7 reports: rank 5 reports: ...", helper-102).
  const std::string v = "rank " + std::to_string(victim);
  const bool named = msg.find("ulimit -n") != std::string::npos &&
                     (rank == victim ? result == lockstepSystemError
                                     : result == lockstepRemoteError && msg.find(v + " ") != std::string::npos &&
                                           msg.find("reports: " + v) == std::string::npos);
  return report(named && ms < 10000, "init returned " + std::to_string(result) + " after " +
                                         std::to_string(static_cast<int>(ms)) + " ms: " + msg);
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode, stamp, field = "kind", op = "allreduce";
  int victim = 0, afterMs = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--mode")
      mode = v;
    else if (k == "--victim")
      victim = std::atoi(v.c_str());
    else if (k == "--after-ms")
      afterMs = std::atoi(v.c_str());
    else if (k == "--stamp")
      stamp = v;
    else if (k == "--field")
      field = v;
    else if (k == "--op")
      op = v;
  }
  lockstepComm_t comm;
  if (mode == "init-out-of-fds") return initOutOfFds(victim, afterMs);
  const double initStart = nowMs();
  if (lockstepCommInitFromEnv(&comm) != lockstepSuccess) {
    std::fprintf(stderr, "init failed: %s\n", lockstepGetLastError(nullptr));
    return 2;
  }
  const double initMs = nowMs() - initStart;
  int n;
  lockstepCommUserRank(comm, &rank);
  lockstepCommCount(comm, &n);
  const std::string victimName = "rank " + std::to_string(victim) + " (";

  if (mode == "slow-connects") {
    // Every connect() took --after-ms longer (tests/mp/die_at_connect.c): the init of a job with
    // k streams must pay for about one of them at a time, not k in turn.
    const bool sumOk = allReduceOne(comm) == lockstepSuccess;
    lockstepCommDestroy(comm);
    return report(sumOk && initMs < afterMs * 8, "init took " + std::to_string(static_cast<int>(initMs)) +
                                                     " ms with every connect " + std::to_string(afterMs) +
                                                     " ms late (under " + std::to_string(afterMs * 8) + " wanted)");
  }
  if (mode == "stop-between") {
    // Two small all-reduces; then the victim's whole process is stopped (a child of it sends
    // SIGSTOP, and SIGCONT 1.5 s past the timeout) before its third, which the others enter and
    // fail for want of it. Continued, the victim must fail that op too, hearing their report:
    // over shared memory it once completed it from the data they had left there and returned
    // success, where every peer had failed (helper-61).
    std::vector<float> buf(1024, 1.0f);
    for (int k = 0; k < 2; ++k) {
      if (lockstepAllReduce(buf.data(), buf.data(), buf.size(), lockstepFloat32, lockstepMax, comm, nullptr) !=
          lockstepSuccess)
        return report(false, std::string("first all-reduces: ") + lockstepGetLastError(comm));
    }
    if (rank == victim) {
      const char* t = std::getenv("LOCKSTEP_TIMEOUT");
      const useconds_t stopUs = static_cast<useconds_t>(((t ? std::atof(t) : 2.0) + 1.5) * 1e6);
      const pid_t self = getpid();
      if (fork() == 0) {  // only async-signal-safe calls here
        usleep(100000);
        kill(self, SIGSTOP);
        usleep(stopUs);
        kill(self, SIGCONT);
        _exit(0);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // stopped in here
    }
    const lockstepResult_t r =
        lockstepAllReduce(buf.data(), buf.data(), buf.size(), lockstepFloat32, lockstepMax, comm, nullptr);
    const std::string msg = r == lockstepSuccess ? "" : lockstepGetLastError(comm);
    // The others stay until the victim has run its op: leaving, they would tell it by their
    // goodbye instead, which it always heard.
    if (rank != victim) std::this_thread::sleep_for(std::chrono::seconds(3));
    lockstepCommDestroy(comm);
    if (rank == victim) {
      return report(r != lockstepSuccess && msg.find(" reports: ") != std::string::npos,
                    "the continued rank's op #3: result " + std::to_string(r) + ": " + msg);
    }
    return report(r == lockstepTimeout && msg.find(victimName) != std::string::npos,
                  "result " + std::to_string(r) + ": " + msg);
  }

  if (mode == "fork-then-die") {
    // After one all-reduce, the victim forks a child that outlives it by 10 s doing nothing (a
    // worker, a data loader), then dies. Over sockets its peers learn of a death from its closed
    // connections: the child's copies of them once kept them open until it exited.
    float x = 1, y = 0;
    if (lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comm, nullptr) != lockstepSuccess)
      return report(false, std::string("first all-reduce: ") + lockstepGetLastError(comm));
    if (rank == victim) {
      if (fork() == 0) {
        const int null = open("/dev/null", O_RDWR);  // not the test's pipes: it waits for their end
        dup2(null, 1);
        dup2(null, 2);
        sleep(10);
        _exit(0);
      }
      kill(getpid(), SIGKILL);
    }
    const double t0 = nowMs();
    lockstepResult_t r = lockstepSuccess;
    while (r == lockstepSuccess && nowMs() - t0 < 20000)
      r = lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comm, nullptr);
    const double ms = nowMs() - t0;
    const std::string msg = lockstepGetLastError(comm);
    lockstepCommAbort(comm);
    return report(r != lockstepSuccess && ms < 5000 && msg.find(victimName) != std::string::npos,
                  "result " + std::to_string(r) + " after " + std::to_string(ms) + " ms: " + msg);
  }
  if (mode == "split-death") {
    // Split by parity; the victim dies (tests/mp/die_at_connect.c) at its first connect after
    // the split's exchange, on its way to its new communicator's rendezvous. The other member of
    // its color is told at once, naming it (it once waited out its whole timeout, blaming a rank
    // number of the new communicator); the other color's communicator forms and works.
    if (rank == victim) setenv("LOCKSTEP_TEST_DIE_AT_CONNECT", op == "exit" ? "exit" : "1", 1);
    lockstepComm_t child = nullptr;
    const double t0 = nowMs();
    const lockstepResult_t r = lockstepCommSplit(comm, rank % 2, rank, &child);
    const double ms = nowMs() - t0;
    const std::string msg = lockstepGetLastError(nullptr);
    if (rank % 2 == victim % 2) {
      lockstepCommAbort(comm);
      // The new communicator's numbers are told apart from this one's (a split's setup once said
      // "rank 1 never connected" of the new rank 1, a healthy rank 1 of the other color here).
      std::string numbering = "numbered anew: ";
      for (int q = victim % 2, i = 0; q < n; q += 2, ++i) {
        numbering += (i ? ", " : "") + std::to_string(i) + " is rank " + std::to_string(q);
      }
      return report(r == lockstepRemoteError && ms < 5000 && msg.find(victimName) != std::string::npos &&
                        msg.find(numbering) != std::string::npos,
                    "result " + std::to_string(r) + " after " + std::to_string(ms) + " ms: " + msg);
    }
    if (r != lockstepSuccess) return report(false, "the other color's split failed: " + msg);
    int one = 1, sum = 0;
    const lockstepResult_t ar = lockstepAllReduce(&one, &sum, 1, lockstepInt32, lockstepSum, child, nullptr);
    lockstepCommDestroy(child);
    lockstepCommAbort(comm);
    return report(ar == lockstepSuccess && sum == n / 2, "all-reduce on the new communicator: " + std::to_string(sum));
  }
  if (mode == "out-of-order") {
    // The victim receives from the next rank where the others broadcast from rank 0 (the victim):
    // a deadlock, which each rank sees at its timeout. Sends and receives take no number, so the
    // watchdog once could say only that the victim "has not arrived", and the victim was told to
    // group its exchanges: now each side names where the other is.
    std::vector<float> buf(100, 1.0f);
    const int from = (victim + 1) % n;
    const lockstepResult_t r =
        rank == victim ? lockstepRecv(buf.data(), buf.size(), lockstepFloat32, from, comm, nullptr)
                       : lockstepBroadcast(buf.data(), buf.data(), buf.size(), lockstepFloat32, victim, comm, nullptr);
    const std::string msg = lockstepGetLastError(comm);
    lockstepCommDestroy(comm);
    // Whichever side times out first tells the others its message: either names both sides.
    const bool receiverSide =
        msg.find("inside a collective this rank has not called (calls in another order?): ") != std::string::npos &&
        msg.find("broadcast #1") != std::string::npos;
    const bool collectiveSide = msg.find("in a receive from rank " + std::to_string(from)) != std::string::npos;
    return report(r == lockstepTimeout && (receiverSide || collectiveSide) &&
                      msg.find("must progress together") == std::string::npos,
                  "result " + std::to_string(r) + ": " + msg);
  }

  if (mode == "split-root-out-of-fds") {
    float x = 1, y = 0;
    if (lockstepAllReduce(&x, &y, 1, lockstepFloat32, lockstepSum, comm, nullptr) != lockstepSuccess)
      return report(false, std::string("first all-reduce: ") + lockstepGetLastError(comm));
    rlimit before{};
    getrlimit(RLIMIT_NOFILE, &before);
    if (rank == 0) {
      rlimit none = before;
      const int lowest = dup(0);  // descriptors are taken lowest first: none fits under this limit
      close(lowest);
      none.rlim_cur = static_cast<rlim_t>(lowest);
      setrlimit(RLIMIT_NOFILE, &none);
    }
    const double t0 = nowMs();
    lockstepComm_t child = nullptr;
    const lockstepResult_t r = lockstepCommSplit(comm, 0, rank, &child);
    const double ms = nowMs() - t0;
    const std::string msg = lockstepGetLastError(comm);
    bool ok;
    if (rank == 0) {
      // A program that catches the error and goes on: its exit would tell the others by itself.
      std::this_thread::sleep_for(std::chrono::seconds(5));
      setrlimit(RLIMIT_NOFILE, &before);
      ok = r == lockstepSystemError && msg.find("ulimit -n") != std::string::npos;
    } else {
      ok = r != lockstepSuccess && ms < 3000 &&
           msg.find("rank 0, the new communicator's first rank, could not start its rendezvous") != std::string::npos;
    }
    // The split failed for its color alone: the communicator goes on to its destroy.
    const lockstepResult_t destroyed = lockstepCommDestroy(comm);
    return report(ok && destroyed == lockstepSuccess, "result " + std::to_string(r) + " after " + std::to_string(ms) +
                                                          " ms: " + msg + "; destroy " + std::to_string(destroyed));
  }

  if (mode == "exit-on-failure") {
    std::vector<float> buf(1 << 16, 1.0f);
    if (lockstepAllReduce(buf.data(), buf.data(), buf.size(), lockstepFloat32, lockstepSum, comm, nullptr) !=
        lockstepSuccess)
      return report(false, std::string("first all-reduce: ") + lockstepGetLastError(comm));
    lockstepRedOp_t redOp = lockstepSum;
    if (field == "timeout") {
      if (rank == victim) std::this_thread::sleep_for(std::chrono::seconds(6));
      if (rank != victim && rank != 0) std::this_thread::sleep_for(std::chrono::seconds(1));
    } else if (rank == victim) {
      redOp = lockstepMax;
    }
    const lockstepResult_t r =
        lockstepAllReduce(buf.data(), buf.data(), buf.size(), lockstepFloat32, redOp, comm, nullptr);
    const std::string msg = lockstepGetLastError(comm);
    const bool named = field == "timeout" ? r == lockstepTimeout &&
                                                msg.find("not arrived at op #2: " + victimName) != std::string::npos
                                          : r == lockstepMismatch && msg.find("float32, max") != std::string::npos &&
                                                msg.find("first difference: reduction op") != std::string::npos;
    const int code =
        report(named && msg.find("no goodbye") == std::string::npos, "result " + std::to_string(r) + ": " + msg);
    _exit(code);
  }

  if (mode == "finish-alone-and-leave") {
    // Its peers once heard only its goodbye, which carried no op: they said it "left the
    // communicator", and over shm, with it alive, waited out their timeout (helper-54).
    std::vector<float> buf(1000, 1.0f);
    if (lockstepAllReduce(buf.data(), buf.data(), buf.size(), lockstepFloat32, lockstepSum, comm, nullptr) !=
        lockstepSuccess)
      return report(false, std::string("first all-reduce: ") + lockstepGetLastError(comm));
    const double t0 = nowMs();
    const lockstepResult_t r = lockstepBroadcast(buf.data(), buf.data(), rank == victim ? 0 : buf.size(),
                                                 lockstepFloat32, victim, comm, nullptr);
    const double ms = nowMs() - t0;
    const std::string msg = lockstepGetLastError(comm);
    const lockstepResult_t destroyed = lockstepCommDestroy(comm);
    if (rank == victim) {
      if (op == "exit") _exit(r == lockstepSuccess ? 0 : 1);
      std::this_thread::sleep_for(std::chrono::seconds(3));
      return report(r == lockstepSuccess && destroyed == lockstepSuccess, "result " + std::to_string(r));
    }
    return report(r == lockstepMismatch && ms < 10000 && msg.find("first difference: count") != std::string::npos,
                  "result " + std::to_string(r) + " after " + std::to_string(static_cast<int>(ms)) + " ms: " + msg);
  }

  if (mode == "destroy-beside-stopped") {
    std::vector<lockstepComm_t> comms{comm};
    for (int i = 0; i < 3; ++i) {
      lockstepComm_t c = nullptr;
      if (lockstepCommSplit(comm, 0, rank, &c) != lockstepSuccess)
        return report(false, std::string("split: ") + lockstepGetLastError(nullptr));
      comms.push_back(c);
    }
    if (allReduceOne(comm) != lockstepSuccess)
      return report(false, std::string("all-reduce: ") + lockstepGetLastError(comm));
    if (rank == victim) {
      raise(SIGSTOP);  // killed by the test
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    const double t0 = nowMs();
    for (lockstepComm_t c : comms) lockstepCommDestroy(c);
    const double ms = nowMs() - t0;
    return report(rank != 0 || ms < 1000,
                  "destroyed 4 communicators in " + std::to_string(static_cast<int>(ms)) + " ms beside a stopped rank");
  }

  if (mode == "leave-cascade") {
    if (allReduceOne(comm) != lockstepSuccess) return report(false, std::string("op 1: ") + lockstepGetLastError(comm));
    if (rank == victim) return report(true, "leaving without a destroy");
    if (rank == 0) std::this_thread::sleep_for(std::chrono::seconds(1));
    const lockstepResult_t r = allReduceOne(comm);
    const std::string msg = lockstepGetLastError(comm);
    if (rank != 0) return report(r == lockstepRemoteError, "op 2, then leaving without a destroy: " + msg);
    return report(r == lockstepRemoteError && msg.find(victimName) != std::string::npos,
                  "op 2 after the others left: " + msg);
  }

  if (mode == "abort-after-its-op") {
    if (allReduceOne(comm) != lockstepSuccess)
      return report(false, std::string("first all-reduce: ") + lockstepGetLastError(comm));
    std::vector<float> buf(1000, rank == victim ? 7.0f : 0.0f);
    if (rank == victim) {
      const lockstepResult_t r =
          lockstepBroadcast(buf.data(), buf.data(), buf.size(), lockstepFloat32, victim, comm, nullptr);
      lockstepCommAbort(comm);
      if (op == "exit") _exit(r == lockstepSuccess ? 0 : 1);
      std::this_thread::sleep_for(std::chrono::seconds(3));
      return report(r == lockstepSuccess, "broadcast result " + std::to_string(r));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const lockstepResult_t r =
        lockstepBroadcast(buf.data(), buf.data(), buf.size(), lockstepFloat32, victim, comm, nullptr);
    if (r != lockstepSuccess)
      return report(false, "the broadcast rank R finished failed: " + std::string(lockstepGetLastError(comm)));
    for (float v : buf) {
      if (v != 7.0f) return report(false, "the broadcast rank R finished delivered " + std::to_string(v));
    }
    const double t0 = nowMs();
    const lockstepResult_t next = allReduceOne(comm);
    const double ms = nowMs() - t0;
    const std::string msg = lockstepGetLastError(comm);
    lockstepCommDestroy(comm);
    return report(
        next == lockstepRemoteError && ms < 5000 && msg.find(victimName) != std::string::npos &&
            msg.find("aborted its communicator") != std::string::npos,
        "next call: result " + std::to_string(next) + " after " + std::to_string(static_cast<int>(ms)) + " ms: " + msg);
  }

  if (mode == "mismatch") {
    std::vector<float> buf(1000, 1.0f);
    lockstepResult_t r;
    if (field == "root") {
      // Everyone broadcasts; the victim names another root. A rooted op lets a rank finish without
      // hearing from every other (rank 0 only sends): such a rank may return success, with the
      // root's data, and then every later call fails naming the disagreement (README, "Mismatched
      // calls"). The victim, and any rank that exchanges data with it, returns the mismatch itself.
      for (float& x : buf) x = static_cast<float>(rank + 1);
      r = lockstepBroadcast(buf.data(), buf.data(), buf.size(), lockstepFloat32, rank == victim ? 1 : 0, comm, nullptr);
      std::string msg = lockstepGetLastError(comm);
      if (r == lockstepSuccess && rank != victim) {
        for (float x : buf) {
          if (x != 1.0f) return report(false, "broadcast succeeded with data not from root 0");
        }
        r = lockstepAllReduce(buf.data(), buf.data(), buf.size(), lockstepFloat32, lockstepSum, comm, nullptr);
        msg = std::string("(broadcast succeeded; the next call:) ") + lockstepGetLastError(comm);
        lockstepResult_t async = lockstepSuccess;
        lockstepCommGetAsyncError(comm, &async);
        if (async != lockstepMismatch) return report(false, "async error " + std::to_string(async) + ": " + msg);
      }
      lockstepCommDestroy(comm);
      // The victim may instead meet a rank that already moved on to the next op: no message of
      // broadcast #1 with the other root reached it, so it names the sequence number and shows
      // its own call (root 1); that report is what every rank then returns.
      bool named = msg.find("first difference: root") != std::string::npos ||
                   (msg.find("first difference: sequence number") != std::string::npos &&
                    msg.find("broadcast #1 (count 1000, float32, root 1") != std::string::npos);
      return report(r == lockstepMismatch && named, "result " + std::to_string(r) + ": " + msg);
    } else if (field == "kind, no data") {
      // Ops with nothing to move exchange no message, so each returns success: only the
      // watchdog, comparing what the ranks entered, can tell. It must, before the next call.
      r = rank == victim ? lockstepReduce(buf.data(), buf.data(), 0, lockstepInt8, lockstepProd, 1, comm, nullptr)
                         : lockstepAllGather(buf.data(), buf.data(), 0, lockstepFloat32, comm, nullptr);
      if (r != lockstepSuccess) {
        // A rank that comes late finds the mismatch its peers' watchdogs already reported.
        std::string msg = lockstepGetLastError(comm);
        lockstepCommDestroy(comm);
        return report(r == lockstepMismatch && msg.find("first difference: kind") != std::string::npos,
                      "the call itself: " + msg);
      }
      lockstepResult_t async = lockstepSuccess;
      const double end = nowMs() + 5000;
      while (async == lockstepSuccess && nowMs() < end) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        lockstepCommGetAsyncError(comm, &async);
      }
      r = lockstepAllReduce(buf.data(), buf.data(), buf.size(), lockstepFloat32, lockstepSum, comm, nullptr);
      std::string msg = lockstepGetLastError(comm);
      lockstepCommDestroy(comm);
      return report(
          async == lockstepMismatch && r == lockstepMismatch && msg.find("first difference: kind") != std::string::npos,
          "async " + std::to_string(async) + ", next call " + std::to_string(r) + ": " + msg);
    } else if (field == "count 0, three times") {
      // The victim makes three count-0 all-reduces where the others make one of 1000: its calls
      // move nothing and return success, and it is two ops past the others, whose watchdogs
      // compare only its last two. Its own watchdog compares their op #1 with its own #1: every
      // rank must learn of the mismatch well before the timeout (it once took all of it).
      const double t0 = nowMs();
      if (rank == victim) {
        r = lockstepSuccess;
        for (int k = 0; k < 3 && r == lockstepSuccess; ++k) {
          r = lockstepAllReduce(buf.data(), buf.data(), 0, lockstepFloat32, lockstepSum, comm, nullptr);
        }
        lockstepResult_t async = lockstepSuccess;
        while (r == lockstepSuccess && async == lockstepSuccess && nowMs() - t0 < 10000) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          lockstepCommGetAsyncError(comm, &async);
        }
        if (r == lockstepSuccess) r = async;
      } else {
        r = lockstepAllReduce(buf.data(), buf.data(), buf.size(), lockstepFloat32, lockstepSum, comm, nullptr);
      }
      const double ms = nowMs() - t0;
      std::string msg = r == lockstepSuccess ? "" : lockstepGetLastError(comm);
      lockstepCommDestroy(comm);
      // The victim learns it from lockstepCommGetAsyncError, which must leave the reason for
      // lockstepGetLastError (it once kept an unrelated earlier message, or none).
      return report(r == lockstepMismatch && ms < 10000 && msg.find("first difference: count") != std::string::npos,
                    "result " + std::to_string(r) + " after " + std::to_string(static_cast<int>(ms)) + " ms: " + msg);
    } else if (field == "count 0, in steady steps") {
      // One op every 60 ms; #10 is a count-0 all-reduce, of int32 on the victim. Nothing moves:
      // only the watchdogs can tell, from the ops the heartbeats name. A heartbeat of a rank
      // making progress goes every 500 ms, and named only its last two ops: the mismatch went
      // unreported in most runs (helper-103).
      constexpr int kOps = 40, kOdd = 10;
      const double t0 = nowMs();
      r = lockstepSuccess;
      lockstepResult_t async = lockstepSuccess;
      int at = 0;
      while (r == lockstepSuccess && async == lockstepSuccess && ++at <= kOps) {
        const bool odd = at == kOdd;
        r = lockstepAllReduce(buf.data(), buf.data(), odd ? 0 : buf.size(),
                              odd && rank == victim ? lockstepInt32 : lockstepFloat32, lockstepSum, comm, nullptr);
        std::this_thread::sleep_for(std::chrono::milliseconds(60));
        lockstepCommGetAsyncError(comm, &async);
      }
      if (r == lockstepSuccess) r = async;
      const double ms = nowMs() - t0;
      std::string msg = r == lockstepSuccess ? "" : lockstepGetLastError(comm);
      lockstepCommDestroy(comm);
      return report(r == lockstepMismatch && msg.find("first difference: datatype") != std::string::npos,
                    "result " + std::to_string(r) + " at op " + std::to_string(at) + " of " + std::to_string(kOps) +
                        " after " + std::to_string(static_cast<int>(ms)) + " ms: " + msg);
    } else if (field == "split") {
      // The victim splits where the others all-reduce: every rank names the split, the victim
      // too (whose exchange may first see a peer close its connection).
      lockstepComm_t child = nullptr;
      const double t0 = nowMs();
      r = rank == victim
              ? lockstepCommSplit(comm, 0, 0, &child)
              : lockstepAllReduce(buf.data(), buf.data(), buf.size(), lockstepFloat32, lockstepSum, comm, nullptr);
      std::string msg = lockstepGetLastError(rank == victim ? nullptr : comm);
      const double ms = nowMs() - t0;
      lockstepCommDestroy(comm);
      return report(r == lockstepMismatch && msg.find("lockstepCommSplit #1") != std::string::npos && ms < 10000,
                    "result " + std::to_string(r) + " after " + std::to_string(static_cast<int>(ms)) + " ms: " + msg);
    } else if (rank != victim) {
      r = lockstepAllReduce(buf.data(), buf.data(), buf.size(), lockstepFloat32, lockstepSum, comm, nullptr);
    } else if (field == "kind") {
      r = lockstepBroadcast(buf.data(), buf.data(), buf.size(), lockstepFloat32, 0, comm, nullptr);
    } else if (field == "count") {
      r = lockstepAllReduce(buf.data(), buf.data(), 999, lockstepFloat32, lockstepSum, comm, nullptr);
    } else if (field == "datatype") {
      r = lockstepAllReduce(buf.data(), buf.data(), buf.size(), lockstepInt32, lockstepSum, comm, nullptr);
    } else {  // "reduction op"
      r = lockstepAllReduce(buf.data(), buf.data(), buf.size(), lockstepFloat32, lockstepMax, comm, nullptr);
    }
    std::string msg = lockstepGetLastError(comm);
    lockstepCommDestroy(comm);
    return report(r == lockstepMismatch && msg.find("first difference: " + field) != std::string::npos,
                  "result " + std::to_string(r) + ": " + msg);
  }

  // A split's victim stops just before its call (below), so that the others wait in the exchange.
  if (rank == victim && mode != "leave" && !(mode == "stop" && op == "split")) {
    std::thread([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(afterMs));
      if (mode == "kill") {
        if (FILE* f = std::fopen(stamp.c_str(), "w")) {
          std::fprintf(f, "%.3f\n", nowMs());
          std::fclose(f);
        }
        raise(SIGKILL);
      }
      raise(SIGSTOP);
    }).detach();
  }
  std::mt19937 rng(1234);  // same sequence of sizes on every rank
  std::vector<float> buf(1 << 20, 1.0f);
  lockstepResult_t r = lockstepSuccess;
  uint64_t ops = 0;
  std::vector<float> in(buf.size());
  const auto start = std::chrono::steady_clock::now();
  while (r == lockstepSuccess) {
    size_t count = 1 + rng() % buf.size();
    if (mode == "leave" && rank == victim &&
        std::chrono::steady_clock::now() - start > std::chrono::milliseconds(afterMs)) {
      // Leaves cleanly and lives on: only its goodbye tells the others (over shared memory its
      // links stay up).
      lockstepCommDestroy(comm);
      std::this_thread::sleep_for(std::chrono::seconds(10));
      return report(true, "left after " + std::to_string(ops) + " ops");
    }
    if (op == "split") {
      if (mode == "stop" && rank == victim &&
          std::chrono::steady_clock::now() - start > std::chrono::milliseconds(afterMs))
        raise(SIGSTOP);
      lockstepComm_t child = nullptr;
      r = lockstepCommSplit(comm, 0, rank, &child);
      if (child) lockstepCommDestroy(child);
    } else if (op == "sendrecv") {
      lockstepGroupStart();
      lockstepSend(buf.data(), count, lockstepFloat32, (rank + 1) % n, comm, nullptr);
      lockstepRecv(in.data(), count, lockstepFloat32, (rank + n - 1) % n, comm, nullptr);
      r = lockstepGroupEnd();
    } else {
      r = lockstepAllReduce(buf.data(), buf.data(), count, lockstepFloat32, lockstepMax, comm, nullptr);
    }
    ++ops;
  }
  double detected = nowMs();
  std::string msg = lockstepGetLastError(comm);
  if (op == "split") {
    // The ranks are out of step after a failed split: the next call fails at once, saying why.
    const double before = nowMs();
    const lockstepResult_t next =
        lockstepAllReduce(buf.data(), buf.data(), 1, lockstepFloat32, lockstepMax, comm, nullptr);
    const double took = nowMs() - before;
    if (next == lockstepSuccess || took > 500) {
      return report(false, "after the failed split, the next call returned " + std::to_string(next) + " after " +
                               std::to_string(took) + " ms: " + lockstepGetLastError(comm));
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  lockstepCommDestroy(comm);
  double destroyMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  bool named = msg.find(victimName) != std::string::npos;
  if (mode == "stop" && rank == victim) {
    // Continued (SIGCONT) by the test once the others had failed: its own wait timed out while it
    // did not run, which is no fault of its peers. It once called them silent for as long as it
    // had been stopped, judging them before its watchdog read what they had sent meanwhile.
    for (int q = 0; q < n; ++q) {
      if (q != victim && std::regex_search(msg, std::regex("rank " + std::to_string(q) + " \\([^)]*\\) silent")))
        return report(false, "blames rank " + std::to_string(q) + ": " + msg);
    }
    return report(r != lockstepSuccess, "result " + std::to_string(r) + ": " + msg);
  }
  if (mode == "kill") {
    double killed = 0;
    if (FILE* f = std::fopen(stamp.c_str(), "r")) {
      if (std::fscanf(f, "%lf", &killed) != 1) killed = 0;
      std::fclose(f);
    }
    double latency = killed > 0 ? detected - killed : -1;
    char line[160];
    std::snprintf(line, sizeof(line), "detected after %.1f ms (%llu ops), destroy took %.1f ms: ", latency,
                  static_cast<unsigned long long>(ops), destroyMs);
    return report(r == lockstepRemoteError && named && latency >= 0 && latency < 5000 && destroyMs < 2000, line + msg);
  }
  if (mode == "leave") {
    const bool left =
        msg.find(victimName) != std::string::npos && msg.find("left the communicator") != std::string::npos;
    return report(r == lockstepRemoteError && left, "result " + std::to_string(r) + ": " + msg);
  }
  return report(r == lockstepTimeout && named && destroyMs < 2000, "result " + std::to_string(r) + ": " + msg);
}
