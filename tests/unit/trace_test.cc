// The flight recorder and lockstep-trace: a rank that never enters an op is named.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "src/core/communicator.h"
#include "src/core/flight_recorder.h"
#include "tests/common/subprocess.h"
#include "tests/common/thread_comms.h"

namespace lockstep {
namespace {

using testing::onThreads;

TEST(FlightRecorder, DumpsOnTimeoutAndLockstepTraceNamesTheAbsentRank) {
  std::string dir = "/tmp/lockstep-trace-test-" + std::to_string(getpid());
  ASSERT_EQ(system(("mkdir -p " + dir).c_str()), 0);
  setenv("LOCKSTEP_TRACE", (dir + "/t.%r.json").c_str(), 1);
  setenv("LOCKSTEP_TIMEOUT", "1", 1);
  setenv("LOCKSTEP_ALGO", "recursive_doubling", 1);  // the forced algorithm is recorded with each op
  auto comms = testing::initThreadComms(3);
  unsetenv("LOCKSTEP_TRACE");
  unsetenv("LOCKSTEP_TIMEOUT");
  unsetenv("LOCKSTEP_ALGO");
  onThreads(3, [&](int r) {
    float x = 1;
    for (int k = 0; k < 5; ++k)
      ASSERT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr), 0);
    if (r == 2) return;  // rank 2 skips op #6
    EXPECT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr), lockstepTimeout);
  });
  testing::destroyAll(comms);  // LOCKSTEP_TRACE: every rank dumps at destroy
  std::ifstream in(dir + "/t.0.json");
  std::stringstream json;
  json << in.rdbuf();
  EXPECT_NE(json.str().find("\"traceEvents\""), std::string::npos);
  EXPECT_NE(json.str().find("\"allreduce #6\""), std::string::npos) << json.str();
  EXPECT_NE(json.str().find("\"algorithm\":\"recursive_doubling\""), std::string::npos);
  EXPECT_NE(json.str().find("\"job\":\"rank 0 ("), std::string::npos) << json.str();
  // With 3 ranks, recursive doubling folds rank 0 into rank 1: its only peer.
  EXPECT_NE(json.str().find("\"peers\":[1]"), std::string::npos) << json.str();
  testing::ProcResult r = testing::run(
      {LOCKSTEP_TRACE_PATH, "-o", dir + "/merged.json", dir + "/t.0.json", dir + "/t.1.json", dir + "/t.2.json"}, {},
      30);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("op #6 (allreduce): entered by rank(s) 0, 1; never entered by rank 2"), std::string::npos)
      << r.output;
  std::ifstream merged(dir + "/merged.json");
  EXPECT_TRUE(merged.good());
  system(("rm -rf " + dir).c_str());
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A split's child writes its own dumps: its rank r is not its parent's rank r (often in another
// process), and the two once wrote the same file, the last one to be destroyed winning.
TEST(FlightRecorder, ASplitChildDumpsApartFromItsParentAndLockstepTraceKeepsThemApart) {
  char tmp[] = "/tmp/lockstep-trace-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmp), nullptr);
  const std::string dir = tmp;
  setenv("LOCKSTEP_TRACE", (dir + "/s.%r.json").c_str(), 1);
  auto comms = testing::initThreadComms(4);
  unsetenv("LOCKSTEP_TRACE");
  std::vector<lockstepComm_t> children(4);
  onThreads(4, [&](int r) {
    // Colors by parity, keys reversed: the parent's rank 2 is color 0's rank 0.
    ASSERT_EQ(lockstepCommSplit(comms[r], r % 2, -r, &children[r]), lockstepSuccess);
    float x = 1;
    for (int k = 0; k < 3; ++k)
      ASSERT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr), 0);
    ASSERT_EQ(lockstepBroadcast(&x, &x, 1, lockstepFloat32, 0, children[r], nullptr), 0);
  });
  testing::destroyAll(children);
  testing::destroyAll(comms);
  for (const char* name : {"s.0.json", "s.1.json", "s.2.json", "s.3.json"}) {
    const std::string json = readFile(dir + "/" + name);
    EXPECT_NE(json.find("\"allreduce #3\""), std::string::npos) << name << ": " << json;
    EXPECT_EQ(json.find("broadcast"), std::string::npos) << name << ": " << json;
  }
  for (const char* name : {"s.0.split1c0.json", "s.1.split1c0.json", "s.0.split1c1.json", "s.1.split1c1.json"}) {
    const std::string json = readFile(dir + "/" + name);
    EXPECT_NE(json.find("\"broadcast #1\""), std::string::npos) << name << ": " << json;
    EXPECT_NE(json.find("\"comm\":\"split1c"), std::string::npos) << name << ": " << json;
  }
  auto trace = [&](std::vector<std::string> files) {
    std::vector<std::string> args{LOCKSTEP_TRACE_PATH};
    for (auto& f : files) args.push_back(dir + "/" + f);
    return testing::run(args, {}, 30);
  };
  testing::ProcResult r = trace({"s.0.split1c0.json", "s.1.split1c0.json"});
  EXPECT_EQ(r.code, 0) << r.output;
  r = trace({"s.0.json", "s.0.split1c0.json"});
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("come from 2 communicators"), std::string::npos) << r.output;
  // Rank 3 left no dump: the ring's ops on ranks 0 and 2 name it as a peer.
  r = trace({"s.0.json", "s.1.json", "s.2.json"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("rank 3: no dump"), std::string::npos) << r.output;
  { std::ofstream(dir + "/garbage.json") << "{}\n"; }
  r = trace({"garbage.json"});
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("is not a Lockstep flight-recorder dump"), std::string::npos) << r.output;
  system(("rm -rf " + dir).c_str());
}

// Three thread ranks with LOCKSTEP_TRACE and a 1 s timeout make 5 all-reduces, then run
// `sixth(rank, comm)`; they are destroyed (each dumps) and lockstep-trace reads their dumps.
testing::ProcResult traceAfterSixthOp(const std::function<void(int, lockstepComm_t)>& sixth) {
  char tmp[] = "/tmp/lockstep-trace-test-XXXXXX";
  if (!mkdtemp(tmp)) return {};
  const std::string dir = tmp;
  setenv("LOCKSTEP_TRACE", (dir + "/l.%r.json").c_str(), 1);
  setenv("LOCKSTEP_TIMEOUT", "1", 1);
  auto comms = testing::initThreadComms(3);
  unsetenv("LOCKSTEP_TRACE");
  unsetenv("LOCKSTEP_TIMEOUT");
  onThreads(3, [&](int r) {
    float x = 1;
    for (int k = 0; k < 5; ++k)
      ASSERT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr), 0);
    sixth(r, comms[r]);
  });
  testing::destroyAll(comms);
  testing::ProcResult r =
      testing::run({LOCKSTEP_TRACE_PATH, dir + "/l.0.json", dir + "/l.1.json", dir + "/l.2.json"}, {}, 30);
  system(("rm -rf " + dir).c_str());
  return r;
}

// A rank that entered an op only after the others had timed out waiting for it is named late.
// Its own record of the op (failed at once, with the others' report) made it count as entered,
// and lockstep-trace said every rank had entered every collective.
TEST(FlightRecorder, LockstepTraceNamesARankThatEnteredOnlyAfterTheOthersTimedOut) {
  testing::ProcResult r = traceAfterSixthOp([](int rank, lockstepComm_t comm) {
    float x = 1;
    if (rank == 2) std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // late for op #6
    EXPECT_NE(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comm, nullptr), lockstepSuccess);
  });
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("op #6 (allreduce): entered by rank 2 ("), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("only after rank(s) 0, 1 had timed out waiting for it"), std::string::npos) << r.output;
}

// Ranks that called different collectives under one number: lockstep-trace said "every rank
// entered every collective" and left the odd rank to be found in the errors' text.
TEST(FlightRecorder, LockstepTraceNamesTheRankWhoseCallDiffers) {
  testing::ProcResult r = traceAfterSixthOp([](int rank, lockstepComm_t comm) {
    float x[3] = {1, 1, 1};
    EXPECT_EQ(rank == 1 ? lockstepAllReduce(x, x, 3, lockstepFloat32, lockstepMax, comm, nullptr)
                        : lockstepAllReduce(x, x, 3, lockstepFloat32, lockstepSum, comm, nullptr),
              lockstepMismatch);
  });
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("op #6: the ranks' calls differ: rank(s) 1 called allreduce (count 3, float32, max); "
                          "rank(s) 0, 2 called allreduce (count 3, float32, sum); the odd one(s): rank(s) 1"),
            std::string::npos)
      << r.output;
}

// Two runs of a job writing to one LOCKSTEP_TRACE path: a rank killed in the second leaves the
// first run's dump there, which lockstep-trace once read as the second's (blaming the healthy
// ranks). Each dump names its run (the communicator's rank 0, host and pid); mixed runs are
// refused.
TEST(FlightRecorder, LockstepTraceRefusesDumpsOfDifferentRuns) {
  char tmp[] = "/tmp/lockstep-trace-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmp), nullptr);
  const std::string dir = tmp;
  FlightRecorder track;
  ASSERT_TRUE(FlightRecorder::dump(dir + "/r.0.json", 0, "rank 0 (vm:200)", "", "rank 0 (vm:200)", {&track}));
  ASSERT_TRUE(FlightRecorder::dump(dir + "/r.1.json", 1, "rank 1 (vm:201)", "", "rank 0 (vm:200)", {&track}));
  ASSERT_TRUE(FlightRecorder::dump(dir + "/old.1.json", 1, "rank 1 (vm:101)", "", "rank 0 (vm:100)", {&track}));
  testing::ProcResult r = testing::run({LOCKSTEP_TRACE_PATH, dir + "/r.0.json", dir + "/r.1.json"}, {}, 30);
  EXPECT_EQ(r.code, 0) << r.output;
  r = testing::run({LOCKSTEP_TRACE_PATH, dir + "/r.0.json", dir + "/old.1.json"}, {}, 30);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("these dumps come from 2 communicators, or runs of one"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 0 (vm:100) (" + dir + "/old.1.json)"), std::string::npos) << r.output;
  system(("rm -rf " + dir).c_str());
}

// Dumps go to predictable names in /tmp: a symlink planted there must not redirect the write.
TEST(FlightRecorder, ADumpNeverFollowsASymlink) {
  char dir[] = "/tmp/lockstep-trace-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string victim = std::string(dir) + "/victim", link = std::string(dir) + "/dump.json";
  { std::ofstream(victim) << "precious"; }
  ASSERT_EQ(symlink(victim.c_str(), link.c_str()), 0);
  FlightRecorder track;
  EXPECT_FALSE(FlightRecorder::dump(link, 0, "test", "", "", {&track}));
  std::ifstream in(victim);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "precious");
  const std::string real = std::string(dir) + "/real.json";
  EXPECT_TRUE(FlightRecorder::dump(real, 0, "test", "", "", {&track}));
  struct stat st {};
  ASSERT_EQ(stat(real.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  for (const std::string& f : {victim, link, real}) std::remove(f.c_str());
  rmdir(dir);
}

// A dump that cannot be written whole (a full disk; here a file-size limit) is removed and said
// to have failed: an empty file was once left, and the log said "written".
TEST(FlightRecorder, ADumpThatCannotBeWrittenWholeIsRemoved) {
  char dir[] = "/tmp/lockstep-trace-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/cut.json";
  FlightRecorder track;
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &before), 0);
  void (*oldHandler)(int) = signal(SIGXFSZ, SIG_IGN);  // a write past the limit fails with EFBIG instead
  rlimit small = before;
  small.rlim_cur = 16;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const bool written = FlightRecorder::dump(path, 0, "test", "", "", {&track});
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &before), 0);
  signal(SIGXFSZ, oldHandler);
  EXPECT_FALSE(written);
  struct stat st {};
  EXPECT_NE(stat(path.c_str(), &st), 0) << "the cut file is left";
  EXPECT_TRUE(FlightRecorder::dump(path, 0, "test", "", "", {&track}));
  std::remove(path.c_str());
  rmdir(dir);
}

// Where no file can be made beside the dump's name (here a name at NAME_MAX, whose temporary
// name would be longer), it is written in place: the rename-into-place alone failed it (helper-70).
TEST(FlightRecorder, ADumpThatCannotBeRenamedIntoPlaceIsWrittenInPlace) {
  char tmp[] = "/tmp/lockstep-trace-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmp), nullptr);
  const std::string path = std::string(tmp) + "/" + std::string(250, 'd') + ".json";  // 255 bytes
  FlightRecorder track;
  EXPECT_TRUE(FlightRecorder::dump(path, 0, "test", "", "", {&track}));
  EXPECT_NE(readFile(path).find("\"displayTimeUnit\""), std::string::npos);
  std::filesystem::remove_all(tmp);
}

// Out of space for a file beside it, a dump fails and leaves the earlier one whole: it used to
// fall back to the in-place write, which truncated the earlier dump, then removed it (helper-72).
TEST(FlightRecorder, ADumpWithNoRoomForItsTemporaryFileLeavesTheEarlierOneWhole) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root, to mount a small tmpfs in a mount namespace";
  char tmp[] = "/tmp/lockstep-trace-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmp), nullptr);
  const std::string dir = tmp;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // 1: no mount namespace here (skip); 2: the first dump failed; 3: the second succeeded;
    // 4: the first is not whole afterwards.
    if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=64k,nr_inodes=4") != 0) {
      std::_Exit(1);
    }
    FlightRecorder track;
    const std::string path = dir + "/t.0.json";
    if (!FlightRecorder::dump(path, 0, "test", "", "", {&track})) std::_Exit(2);
    const std::string first = readFile(path);
    for (int i = 0; i < 16; ++i) std::ofstream(dir + "/fill" + std::to_string(i));  // every inode
    if (FlightRecorder::dump(path, 0, "test", "", "", {&track})) std::_Exit(3);
    std::_Exit(readFile(path) == first && !first.empty() ? 0 : 4);
  }
  int status = 0;
  waitpid(child, &status, 0);
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 1) GTEST_SKIP() << "no mount namespace here";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: first dump failed; 3: second succeeded; 4: the first was cut or removed";
}

// LOCKSTEP_TRACE naming a pipe nobody reads: the dump fails at once, where its open blocked the
// failed op or the destroy behind it for ever (helper-72). With a reader, the reader gets it all.
TEST(FlightRecorder, ADumpToAPipeWithNoReaderFailsAtOnce) {
  char tmp[] = "/tmp/lockstep-trace-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmp), nullptr);
  const std::string fifo = std::string(tmp) + "/pipe";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  FlightRecorder track;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(FlightRecorder::dump(fifo, 0, "test", "", "", {&track}));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 1.0);
  std::string got;
  std::thread reader([&] { got = readFile(fifo); });
  // The reader's open may come after the dump's: retry until it is there (bounded).
  bool written = false;
  for (int i = 0; i < 200 && !written; ++i) {
    written = FlightRecorder::dump(fifo, 0, "test", "", "", {&track});
    if (!written) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  reader.join();
  EXPECT_TRUE(written);
  EXPECT_NE(got.find("\"displayTimeUnit\""), std::string::npos) << got;
  std::filesystem::remove_all(tmp);
}

// A hand-written dump of rank `rank`: one op per entry of `ops` ("seq state").
std::string dumpText(int rank, const std::vector<std::pair<std::string, std::string>>& ops, bool closed = true) {
  std::string t = "{\"traceEvents\":[\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":" + std::to_string(rank) +
                  ",\"tid\":0,\"args\":{\"name\":\"rank " + std::to_string(rank) +
                  " (vm:1)\",\"comm\":\"\",\"job\":\"rank 0 (vm:1)\"}}";
  for (const auto& [seq, state] : ops) {
    t += ",\n{\"name\":\"op\",\"cat\":\"lockstep\",\"ph\":\"X\",\"pid\":" + std::to_string(rank) +
         ",\"tid\":0,\"ts\":1,\"dur\":1,\"args\":{\"rank\":" + std::to_string(rank) + ",\"seq\":" + seq +
         ",\"kind\":\"" + (seq == "0" ? "send/recv group" : "allreduce") +
         "\",\"count\":4,\"dtype\":\"float32\",\"op\":\"sum\",\"root\":-1,\"algorithm\":\"ring\",\"path\":\"host\","
         "\"peers\":[" +
         std::to_string(1 - rank) + "],\"queued_us\":1,\"state\":\"" + state + "\"}}";
  }
  return t + (closed ? "\n],\"displayTimeUnit\":\"ms\"}\n" : "\n");
}

// What lockstep-trace must not analyse: a dump cut short (it read as a rank that never entered
// the ops after the cut), and sequence numbers Lockstep never writes (the analysis counted up to
// 2^64 - 1 and never ended). And what it must not call fine: a failed send/recv group, which
// takes no op number (it said "every rank entered every collective" and exited 0). helper-69.
TEST(FlightRecorder, LockstepTraceRefusesCutDumpsAndAbsurdNumbersAndReportsUnattributedFailures) {
  char tmp[] = "/tmp/lockstep-trace-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmp), nullptr);
  const std::string dir = tmp;
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
    return dir + "/" + name;
  };
  const std::string whole0 = write("w.0.json", dumpText(0, {{"1", "no error"}, {"2", "no error"}}));
  const std::string whole1 = write("w.1.json", dumpText(1, {{"1", "no error"}, {"2", "no error"}}));
  testing::ProcResult r = testing::run({LOCKSTEP_TRACE_PATH, whole0, whole1}, {}, 30);
  EXPECT_EQ(r.code, 0) << r.output;
  const std::string cut = write("c.1.json", dumpText(1, {{"1", "no error"}}, /*closed=*/false));
  r = testing::run({LOCKSTEP_TRACE_PATH, whole0, cut}, {}, 30);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("is a truncated dump"), std::string::npos) << r.output;
  for (const char* seq : {"18446744073709551615", "-1", "99999999999999999999", "7x"}) {
    const std::string bad = write("b.1.json", dumpText(1, {{"1", "no error"}, {seq, "no error"}}));
    r = testing::run({LOCKSTEP_TRACE_PATH, whole0, bad}, {}, 10);
    EXPECT_EQ(r.code, 2) << seq << ": " << r.output;
    EXPECT_NE(r.output.find("is not one Lockstep writes"), std::string::npos) << r.output;
  }
  // Times near INT64_MAX: adding a duration to one overflowed (signed overflow under UBSan,
  // helper-94). A time Lockstep never writes counts as 0.
  std::string huge = dumpText(1, {{"1", "no error"}, {"2", "no error"}});
  for (size_t at; (at = huge.find("\"ts\":1,")) != std::string::npos;)
    huge.replace(at, 7, "\"ts\":9223372036854775807,");
  r = testing::run({LOCKSTEP_TRACE_PATH, whole0, write("h.1.json", huge)}, {}, 30);
  EXPECT_EQ(r.code, 0) << r.output;
  const std::string p2p0 = write("p.0.json", dumpText(0, {{"1", "no error"}, {"0", "mismatch between ranks"}}));
  const std::string p2p1 = write("p.1.json", dumpText(1, {{"1", "no error"}, {"0", "mismatch between ranks"}}));
  r = testing::run({LOCKSTEP_TRACE_PATH, p2p0, p2p1}, {}, 30);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("yet ops failed on rank 0 (vm:1), rank 1 (vm:1)"), std::string::npos) << r.output;
  system(("rm -rf " + dir).c_str());
}

// A split is an op with a number: one rank calling a collective where the others split was read
// as the others never entering that collective, blaming them (helper-69).
TEST(FlightRecorder, ASplitIsRecordedAndARankThatCalledACollectiveInsteadIsTheOddOne) {
  char tmp[] = "/tmp/lockstep-trace-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmp), nullptr);
  const std::string dir = tmp;
  setenv("LOCKSTEP_TRACE", (dir + "/s.%r.json").c_str(), 1);
  setenv("LOCKSTEP_TIMEOUT", "2", 1);
  auto comms = testing::initThreadComms(3);
  unsetenv("LOCKSTEP_TRACE");
  unsetenv("LOCKSTEP_TIMEOUT");
  onThreads(3, [&](int r) {
    float x = 1;
    ASSERT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr), lockstepSuccess);
    lockstepComm_t child = nullptr;
    if (r == 1) {
      EXPECT_NE(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr), lockstepSuccess);
    } else {
      EXPECT_NE(lockstepCommSplit(comms[r], 0, r, &child), lockstepSuccess);
    }
  });
  // Every rank dumped at its failure, the split ones too: a program that exits on the error never
  // reaches its destroy (the watchdog's report of the cause once left the split before its dump).
  for (int rank = 0; rank < 3; ++rank) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/s." + std::to_string(rank) + ".json")) << "rank " << rank;
  }
  testing::destroyAll(comms);
  testing::ProcResult r =
      testing::run({LOCKSTEP_TRACE_PATH, dir + "/s.0.json", dir + "/s.1.json", dir + "/s.2.json"}, {}, 30);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("op #2: the ranks' calls differ: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank(s) 0, 2 called split"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("the odd one(s): rank(s) 1"), std::string::npos) << r.output;
  std::filesystem::remove_all(dir);
}

// Two communicators made by init in one process have the same name ("") and rank: the second's
// dump replaced the first's, and lockstep-trace read dumps of the two as one (helper-69). The
// second now writes beside the first, and each dump's job names its communicator.
TEST(FlightRecorder, TwoCommunicatorsOfOneProcessDumpApartAndAreNotMixed) {
  char tmp[] = "/tmp/lockstep-trace-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmp), nullptr);
  const std::string dir = tmp;
  setenv("LOCKSTEP_TRACE", (dir + "/t.%r.json").c_str(), 1);
  auto a = testing::initThreadComms(1);
  auto b = testing::initThreadComms(1);
  unsetenv("LOCKSTEP_TRACE");
  testing::destroyAll(a);  // dumps at destroy (LOCKSTEP_TRACE)
  testing::destroyAll(b);
  std::vector<std::string> dumps;
  for (const auto& e : std::filesystem::directory_iterator(dir)) dumps.push_back(e.path().string());
  ASSERT_EQ(dumps.size(), 2u) << "one dump replaced the other, or a temporary file was left";
  testing::ProcResult r = testing::run({LOCKSTEP_TRACE_PATH, dumps[0], dumps[1]}, {}, 30);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("these dumps come from 2 communicators, or runs of one"), std::string::npos) << r.output;
  std::filesystem::remove_all(dir);
}

// Without %r, the rank goes before a final ".json" (t.json gave t.json.rank3.json: helper-83), and a
// split child's name before that.
TEST(FlightRecorder, APathWithoutTheRankGetsItBeforeItsJsonSuffix) {
  Config c;
  c.tracePath = "/x/t.json";
  EXPECT_EQ(tracePath(c, 3, ""), "/x/t.rank3.json");
  EXPECT_EQ(tracePath(c, 3, "split1c0"), "/x/t.rank3.split1c0.json");
  c.tracePath = "/x/t";
  EXPECT_EQ(tracePath(c, 3, ""), "/x/t.rank3.json");
  c.tracePath = "/x/t.%r.json";
  EXPECT_EQ(tracePath(c, 3, ""), "/x/t.3.json");
}

// Dumps nobody asked for (an abort's, without LOCKSTEP_TRACE) stop at a bound per process: a job
// that aborted and rebuilt communicators wrote one per communicator and rank, without end
// (helper-80).
TEST(FlightRecorder, DumpsNobodyAskedForAreBoundedPerProcess) {
  char tmp[] = "/tmp/lockstep-trace-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmp), nullptr);
  const std::string dir = tmp;
  const char* before = std::getenv("TMPDIR");
  const std::string saved = before ? before : "";
  setenv("TMPDIR", dir.c_str(), 1);
  unsetenv("LOCKSTEP_TRACE");
  const int aborts = Communicator::kMaxUnaskedDumps + 10;
  for (int i = 0; i < aborts; ++i) {
    auto one = testing::initThreadComms(1);
    ASSERT_EQ(lockstepCommAbort(one[0]), lockstepSuccess);
  }
  if (before)
    setenv("TMPDIR", saved.c_str(), 1);
  else
    unsetenv("TMPDIR");
  int dumps = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) dumps += e.path().extension() == ".json";
  // Exactly the bound in a process of its own (ctest's); fewer where earlier tests used some.
  EXPECT_LE(dumps, Communicator::kMaxUnaskedDumps);
  EXPECT_GT(dumps, 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lockstep
