// The flight recorder and lockstep-trace: a rank that never enters an op is named.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

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

// Dumps go to predictable names in /tmp: a symlink planted there must not redirect the write.
TEST(FlightRecorder, ADumpNeverFollowsASymlink) {
  char dir[] = "/tmp/lockstep-trace-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string victim = std::string(dir) + "/victim", link = std::string(dir) + "/dump.json";
  { std::ofstream(victim) << "precious"; }
  ASSERT_EQ(symlink(victim.c_str(), link.c_str()), 0);
  FlightRecorder track;
  EXPECT_FALSE(FlightRecorder::dump(link, 0, "test", {&track}));
  std::ifstream in(victim);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "precious");
  const std::string real = std::string(dir) + "/real.json";
  EXPECT_TRUE(FlightRecorder::dump(real, 0, "test", {&track}));
  struct stat st {};
  ASSERT_EQ(stat(real.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  for (const std::string& f : {victim, link, real}) std::remove(f.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace lockstep
