// Lockstep's threads carry names (top -H, gdb, /proc/<pid>/task/*/comm), and the caller's own
// thread keeps its name: work the library runs on the caller's thread (a grouped init's first
// communicator, a single mesh) must not rename it.
#include <dirent.h>
#include <gtest/gtest.h>
#include <pthread.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "lockstep/lockstep.h"
#include "tests/common/thread_comms.h"

namespace lockstep {
namespace {

// How many of this process's threads bear each name.
std::map<std::string, int> threadNames() {
  std::map<std::string, int> names;
  DIR* dir = opendir("/proc/self/task");
  if (!dir) return names;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string name;
    if (std::getline(comm, name)) ++names[name];
  }
  closedir(dir);
  return names;
}

std::string ownName() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof(name));
  return name;
}

TEST(ThreadNames, EachCommunicatorsWatchdogAndProgressThreadAreNamed) {
  pthread_setname_np(pthread_self(), "trainer-main");
  const int before = threadNames()["lockstep-watch"];
  std::vector<lockstepComm_t> comms(3, nullptr);
  lockstepUniqueId id;
  ASSERT_EQ(lockstepGetUniqueId(&id), lockstepSuccess);
  // One thread makes all three in a group: the first is built on this thread, as NCCL's
  // grouped init does.
  ASSERT_EQ(lockstepGroupStart(), lockstepSuccess);
  for (int r = 0; r < 3; ++r) ASSERT_EQ(lockstepCommInitRank(&comms[r], 3, id, r), lockstepSuccess);
  ASSERT_EQ(lockstepGroupEnd(), lockstepSuccess);
  EXPECT_EQ(ownName(), "trainer-main");
  // A non-blocking call starts the communicator's progress thread.
  float x[3] = {1, 2, 3};
  std::vector<lockstepRequest_t> requests(3, nullptr);
  for (int r = 0; r < 3; ++r) {
    ASSERT_EQ(lockstepIallReduce(&x[r], &x[r], 1, lockstepFloat32, lockstepSum, comms[r], &requests[r]),
              lockstepSuccess);
  }
  for (auto& q : requests) EXPECT_EQ(lockstepWait(&q, 30000), lockstepSuccess);
  for (float v : x) EXPECT_EQ(v, 6.0f);
  std::map<std::string, int> names = threadNames();
  EXPECT_EQ(names["lockstep-watch"] - before, 3) << "one watchdog per communicator";
  EXPECT_GE(names["lockstep-prog"], 3) << "one progress thread per communicator";
  EXPECT_EQ(ownName(), "trainer-main");
  testing::destroyAll(comms);
}

}  // namespace
}  // namespace lockstep
