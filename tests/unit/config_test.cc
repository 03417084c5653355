#include <gtest/gtest.h>

#include <map>

#include "src/core/config.h"
#include "src/core/errors.h"

namespace lockstep {
namespace {

Config fromMap(const std::map<std::string, std::string>& vars) {
  return Config::fromVariables([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

TEST(Config, DefaultsWhenNothingIsSet) {
  Config c = fromMap({});
  EXPECT_EQ(c.timeout, std::chrono::seconds(300));
  EXPECT_EQ(c.logLevel, LogLevel::kWarn);
  EXPECT_TRUE(c.transports.empty());
  EXPECT_TRUE(c.transportAllowed("shm"));
  EXPECT_FALSE(c.launch.rank.has_value());
}

TEST(Config, ReadsEveryVariable) {
  Config c = fromMap({{"LOCKSTEP_TIMEOUT", "1500ms"},
                      {"LOCKSTEP_DEBUG", "INFO"},
                      {"LOCKSTEP_TRANSPORTS", "socket"},
                      {"LOCKSTEP_SLOT_BYTES", "64K"},
                      {"LOCKSTEP_SLOTS", "4"},
                      {"LOCKSTEP_SOCKET_IFNAME", "^docker"},
                      {"LOCKSTEP_HOST_ID", "hostA"},
                      {"LOCKSTEP_RANK", "3"},
                      {"LOCKSTEP_WORLD_SIZE", "8"},
                      {"LOCKSTEP_LOCAL_RANK", "1"},
                      {"LOCKSTEP_ROOT", "10.0.0.1:29500"}});
  EXPECT_EQ(c.timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(c.logLevel, LogLevel::kInfo);
  EXPECT_TRUE(c.transportAllowed("socket"));
  EXPECT_FALSE(c.transportAllowed("shm"));
  EXPECT_EQ(c.slotBytes, 64u * 1024);
  EXPECT_EQ(c.slots, 4);
  EXPECT_EQ(c.socketIfname, "^docker");
  EXPECT_EQ(c.hostId, "hostA");
  EXPECT_EQ(*c.launch.rank, 3);
  EXPECT_EQ(*c.launch.worldSize, 8);
  EXPECT_EQ(*c.launch.localRank, 1);
  EXPECT_EQ(c.launch.root, "10.0.0.1:29500");
}

TEST(Config, DurationsAndSizes) {
  EXPECT_EQ(parseDuration("30", "X"), std::chrono::seconds(30));
  EXPECT_EQ(parseDuration("2m", "X"), std::chrono::minutes(2));
  EXPECT_EQ(parseDuration("0.5s", "X"), std::chrono::milliseconds(500));
  EXPECT_EQ(parseBytes("1M", "X"), 1u << 20);
  EXPECT_EQ(parseBytes("4096", "X"), 4096u);
}

TEST(Config, BadValuesNameTheVariable) {
  auto expectBad = [](const std::string& var, const std::string& value) {
    try {
      fromMap({{var, value}});
      ADD_FAILURE() << var << "=" << value << " was accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(var), std::string::npos) << e.what();
    }
  };
  expectBad("LOCKSTEP_TIMEOUT", "soon");
  expectBad("LOCKSTEP_TIMEOUT", "-1");
  expectBad("LOCKSTEP_DEBUG", "LOUD");
  expectBad("LOCKSTEP_TRANSPORTS", "carrier-pigeon");
  expectBad("LOCKSTEP_SLOT_BYTES", "12");
  expectBad("LOCKSTEP_SLOT_BYTES", "4097");
  expectBad("LOCKSTEP_SLOTS", "1");
  expectBad("LOCKSTEP_RANK", "x");
  expectBad("LOCKSTEP_WORLD_SIZE", "0");
}

TEST(Config, WireHashCoversWhatShapesTheWire) {
  Config a = fromMap({}), b = fromMap({{"LOCKSTEP_TIMEOUT", "5"}, {"LOCKSTEP_DEBUG", "TRACE"}});
  EXPECT_EQ(a.wireHash(), b.wireHash()) << "timeouts and logging may differ between ranks";
  Config c = fromMap({{"LOCKSTEP_SLOT_BYTES", "128K"}});
  EXPECT_NE(a.wireHash(), c.wireHash());
  Config d = fromMap({{"LOCKSTEP_TRANSPORTS", "socket"}});
  EXPECT_NE(a.wireHash(), d.wireHash());
}

}  // namespace
}  // namespace lockstep
