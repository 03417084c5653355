// Nothing leaks: after communicators are destroyed, normally or after a failure, this process has
// the same threads, open descriptors and /dev/shm entries as before.
#include <dirent.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "tests/common/thread_comms.h"
#include "transport/shm/shm_segment.h"

namespace lockstep {
namespace {

using testing::initThreadComms;
using testing::onThreads;

int countEntries(const char* dir, const char* prefix = "") {
  int n = 0;
  if (DIR* d = opendir(dir)) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.' && std::strncmp(e->d_name, prefix, std::strlen(prefix)) == 0) ++n;
    }
    closedir(d);
  }
  return n;
}

// Sanitizer runtimes start a helper thread of their own with the first thread the program
// creates: start (and join) one before counting, so only Lockstep's threads are compared.
int warmUp() {
  std::thread([] {}).join();
  return 0;
}

// A joined thread can still be listed in /proc/self/task for a moment: pthread_join returns when
// the kernel clears the thread's tid, before the task is reaped. Read until two readings agree.
int settledThreadCount() {
  int n = countEntries("/proc/self/task");
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    int again = countEntries("/proc/self/task");
    if (again == n) break;
    n = again;
  }
  return n;
}

struct Snapshot {
  int warm = warmUp();
  int threads = settledThreadCount();
  int fds = countEntries("/proc/self/fd");
  int segments = countEntries("/dev/shm", "lockstep-");
};

// The rendezvous thread of lockstepGetUniqueId exits once everyone has arrived; give it a moment.
void expectBackTo(const Snapshot& before) {
  Snapshot after;
  for (int i = 0; i < 100 && (after.threads != before.threads || after.fds != before.fds); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    after = Snapshot();
  }
  EXPECT_EQ(after.threads, before.threads) << "threads leaked";
  EXPECT_EQ(after.fds, before.fds) << "descriptors (sockets, pidfds, eventfds) leaked";
  EXPECT_EQ(after.segments, before.segments) << "shared-memory segments leaked";
}

TEST(Leaks, NoneAfterANormalLifetime) {
  Snapshot before;
  {
    auto comms = initThreadComms(4);
    onThreads(4, [&](int r) {
      float x = 1;
      lockstepRequest_t req;
      ASSERT_EQ(lockstepIallReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], &req), lockstepSuccess);
      ASSERT_EQ(lockstepWait(&req, -1), lockstepSuccess);
      lockstepComm_t half;
      ASSERT_EQ(lockstepCommSplit(comms[r], r % 2, r, &half), lockstepSuccess);
      ASSERT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, half, nullptr), lockstepSuccess);
      ASSERT_EQ(lockstepCommDestroy(half), lockstepSuccess);
    });
    testing::destroyAll(comms);
  }
  expectBackTo(before);
}

TEST(Leaks, NoneAfterAFailureAndAbort) {
  Snapshot before;
  {
    setenv("LOCKSTEP_TIMEOUT", "20", 1);
    auto comms = initThreadComms(3);
    unsetenv("LOCKSTEP_TIMEOUT");
    // Rank 2 aborts; ranks 0 and 1 are in an all-reduce that can no longer complete.
    onThreads(3, [&](int r) {
      float x = 1;
      if (r == 2) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        EXPECT_EQ(lockstepCommAbort(comms[r]), lockstepSuccess);
        return;
      }
      auto t0 = std::chrono::steady_clock::now();
      EXPECT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr), lockstepRemoteError);
      auto t1 = std::chrono::steady_clock::now();
      EXPECT_EQ(lockstepCommDestroy(comms[r]), lockstepSuccess);
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
      EXPECT_LT(ms, 1000) << "destroy after an error must be prompt";
      EXPECT_LT(std::chrono::duration<double>(t1 - t0).count(), 5) << "the abort is noticed, not waited out";
    });
  }
  expectBackTo(before);
}

long residentMiB() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * sysconf(_SC_PAGESIZE) >> 20;
}

// A rank's link to itself is rarely used: it takes memory only when a message to itself does.
// Its slots were once zeroed at init, LOCKSTEP_SLOTS x LOCKSTEP_SLOT_BYTES per communicator (up
// to 4 GiB), and at the largest settings the out-of-memory killer ended the init.
TEST(Leaks, ARanksLinkToItselfTakesNoMemoryUntilUsed) {
  setenv("LOCKSTEP_SLOTS", "16", 1);
  setenv("LOCKSTEP_SLOT_BYTES", "64M", 1);  // 1 GiB of slots
  const long before = residentMiB();
  auto comms = initThreadComms(1);
  unsetenv("LOCKSTEP_SLOTS");
  unsetenv("LOCKSTEP_SLOT_BYTES");
  ASSERT_NE(comms[0], nullptr);
  EXPECT_LT(residentMiB() - before, 128) << "MiB resident after creating a one-rank communicator";
  // It still carries messages to itself.
  std::vector<int> out(1000, 7), in(1000, 0);
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  ASSERT_EQ(lockstepSend(out.data(), out.size(), lockstepInt32, 0, comms[0], nullptr), lockstepSuccess);
  ASSERT_EQ(lockstepRecv(in.data(), in.size(), lockstepInt32, 0, comms[0], nullptr), lockstepSuccess);
  ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess) << lockstepGetLastError(comms[0]);
  EXPECT_EQ(in, out);
  testing::destroyAll(comms);
}

// A process killed while its shared-memory segments were still named in /dev/shm (between their
// creation and its peers' mapping them) leaves them there; the next process to create segments
// removes them. A live process's segments stay.
TEST(Leaks, SegmentsOfADeadProcessAreSweptAway) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ShmSegment seg = ShmSegment::create(4096);
    (void)!write(fds[1], seg.name().c_str(), seg.name().size() + 1);
    _exit(0);  // as if killed: no destructor unlinks it
  }
  close(fds[1]);
  char name[256] = {0};
  ASSERT_GT(read(fds[0], name, sizeof(name) - 1), 0);
  close(fds[0]);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  const std::string path = std::string("/dev/shm") + name;
  ASSERT_EQ(access(path.c_str(), F_OK), 0) << "the dead child's segment should be left over: " << path;
  ShmSegment mine = ShmSegment::create(4096);
  EXPECT_GE(sweepDeadSegments(), 0);
  EXPECT_NE(access(path.c_str(), F_OK), 0) << path << " outlived its creator";
  EXPECT_EQ(access((std::string("/dev/shm") + mine.name()).c_str(), F_OK), 0) << "a live process's segment was removed";
}

}  // namespace
}  // namespace lockstep
