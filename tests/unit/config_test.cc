#include <gtest/gtest.h>

#include <map>

#include "src/core/config.h"
#include "src/core/errors.h"
#include "src/net/socket.h"

namespace lockstep {
namespace {

Config fromMap(const std::map<std::string, std::string>& vars) {
  return Config::fromVariables([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

// What init from the environment reads: the launch variables' errors too, which fromVariables
// keeps for it (nothing else reads them).
Config forInit(const std::map<std::string, std::string>& vars) {
  Config c = fromMap(vars);
  if (!c.launch.error.empty()) throw InvalidArgument(c.launch.error);
  return c;
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
      forInit({{var, value}});
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
  // A number as written, nothing around it: " -18446744073709289472" was read as 256 KiB.
  expectBad("LOCKSTEP_SLOT_BYTES", " -18446744073709289472");
  expectBad("LOCKSTEP_SLOT_BYTES", " 65536");
  expectBad("LOCKSTEP_SLOTS", " 8");
  expectBad("LOCKSTEP_SLOTS", "8 ");
  // The tuner divides by it: a subnormal rate made every prediction infinite or NaN.
  expectBad("LOCKSTEP_LINK_GBPS", "1e-320");
  expectBad("LOCKSTEP_LINK_GBPS", "1e10");
  expectBad("LOCKSTEP_LINK_LATENCY_US", " 5");
  expectBad("LOCKSTEP_TIMEOUT", "0.0001");
  expectBad("LOCKSTEP_TIMEOUT", "-0");
  expectBad("LOCKSTEP_TRANSPORTS", ",,,");
  // Decimal only: strtod read "0x10" as 16 (helper-65).
  expectBad("LOCKSTEP_TIMEOUT", "0x10");
  expectBad("LOCKSTEP_LINK_GBPS", "0X1p3");
  expectBad("LOCKSTEP_DEBUG", "WARN,foo");  // was WARN, the rest dropped unsaid
}

// The rendezvous's port as written: "+29611" named the same port as "29611", but the secret
// derived from LOCKSTEP_ROOT's text differed between ranks that wrote it so (helper-65).
TEST(Config, ARendezvousPortIsDigitsOnly) {
  EXPECT_EQ(NetAddr::parse("127.0.0.1:29611").port, 29611);
  for (const char* bad : {"127.0.0.1:+29611", "127.0.0.1: 29611", "127.0.0.1:-1", "127.0.0.1:0x73AB"}) {
    EXPECT_THROW(NetAddr::parse(bad), InvalidArgument) << bad;
  }
}

TEST(Config, WireHashCoversWhatShapesTheWire) {
  Config a = fromMap({}), b = fromMap({{"LOCKSTEP_TIMEOUT", "5"}, {"LOCKSTEP_DEBUG", "TRACE"}});
  EXPECT_EQ(a.wireHash(), b.wireHash()) << "timeouts and logging may differ between ranks";
  Config c = fromMap({{"LOCKSTEP_SLOT_BYTES", "128K"}});
  EXPECT_NE(a.wireHash(), c.wireHash());
  Config d = fromMap({{"LOCKSTEP_TRANSPORTS", "socket"}});
  EXPECT_NE(a.wireHash(), d.wireHash());
}

// Ranks compare the hash, so two spellings of one setting must hash alike, and two settings
// must not.
TEST(Config, WireHashReadsWhatASettingMeansNotHowItIsSpelled) {
  auto hash = [](const char* var, const char* value) { return fromMap({{var, value}}).wireHash(); };
  EXPECT_EQ(hash("LOCKSTEP_TRANSPORTS", "shm,socket"), hash("LOCKSTEP_TRANSPORTS", "socket,shm"));
  EXPECT_EQ(hash("LOCKSTEP_TRANSPORTS", "socket,,socket"), hash("LOCKSTEP_TRANSPORTS", "socket"));
  EXPECT_NE(hash("LOCKSTEP_TRANSPORTS", "shm,socket"), hash("LOCKSTEP_TRANSPORTS", "socket"));
  EXPECT_EQ(hash("LOCKSTEP_ALGO", "allreduce=ring,broadcast=tree"),
            hash("LOCKSTEP_ALGO", "broadcast=tree,allreduce=ring"));
  EXPECT_EQ(hash("LOCKSTEP_ALGO", "rd"), hash("LOCKSTEP_ALGO", "recursive_doubling"));
  EXPECT_EQ(hash("LOCKSTEP_ALGO", "tree"),
            hash("LOCKSTEP_ALGO", "reduce=tree,broadcast=tree,barrier=tree,allreduce=tree"))
      << "a bare name forces every collective that has it";
  EXPECT_EQ(hash("LOCKSTEP_ALGO", "tree,allreduce=ring"),
            hash("LOCKSTEP_ALGO", "allreduce=ring,barrier=tree,broadcast=tree,reduce=tree"))
      << "a collective's own item wins over a bare name, as the tuner reads it";
  EXPECT_NE(hash("LOCKSTEP_ALGO", "allreduce=ring"), hash("LOCKSTEP_ALGO", "allreduce=tree"));
  EXPECT_NE(hash("LOCKSTEP_ALGO", "allreduce=ring"), fromMap({}).wireHash());
  EXPECT_NE(hash("LOCKSTEP_LINK_LATENCY_US", "99.99996"), hash("LOCKSTEP_LINK_LATENCY_US", "100.00004"))
      << "the tuner reads every digit";
  EXPECT_EQ(hash("LOCKSTEP_LINK_GBPS", "12.5"), hash("LOCKSTEP_LINK_GBPS", "12.50"));
  EXPECT_EQ(hash("LOCKSTEP_TRANSPORTS", "socket,inproc,shm"), fromMap({}).wireHash()) << "every transport is all";
  EXPECT_EQ(fromMap({{"LOCKSTEP_DETERMINISTIC", "1"}, {"LOCKSTEP_TUNER", "model"}}).wireHash(),
            hash("LOCKSTEP_DETERMINISTIC", "1"))
      << "deterministic mode measures nothing: the model tuner is what it runs anyway";
}

// Launchers: LOCKSTEP_* first (field by field), then torchrun, Slurm, OpenMPI, PMI, PMIx.
TEST(LaunchEnvTest, EachLauncherIsRecognised) {
  Config t = fromMap(
      {{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "10.1.2.3"}, {"MASTER_PORT", "29500"}});
  EXPECT_EQ(t.launch.launcher, "torchrun");
  EXPECT_EQ(*t.launch.rank, 3);
  EXPECT_EQ(*t.launch.worldSize, 8);
  EXPECT_EQ(*t.launch.localRank, 1);
  EXPECT_EQ(t.launch.root, "10.1.2.3:29501") << "MASTER_PORT itself belongs to torch's store";
  EXPECT_EQ(t.launch.rootFrom, "MASTER_ADDR/MASTER_PORT");
  EXPECT_EQ(fromMap({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "fe80::1"}, {"MASTER_PORT", "7"}}).launch.root,
            "[fe80::1]:8");

  Config s = fromMap({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "1"}});
  EXPECT_EQ(s.launch.launcher, "slurm");
  EXPECT_EQ(*s.launch.rank, 5);
  EXPECT_EQ(*s.launch.worldSize, 16);
  EXPECT_EQ(*s.launch.localRank, 1);
  EXPECT_TRUE(s.launch.root.empty()) << "srun gives no root address: LOCKSTEP_ROOT must";

  Config o = fromMap({{"OMPI_COMM_WORLD_RANK", "2"},
                      {"OMPI_COMM_WORLD_SIZE", "4"},
                      {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                      {"PMIX_RANK", "2"}});
  EXPECT_EQ(o.launch.launcher, "openmpi");
  EXPECT_EQ(*o.launch.rank, 2);
  EXPECT_EQ(*o.launch.worldSize, 4);
  EXPECT_EQ(*o.launch.localRank, 0);

  Config p = fromMap({{"PMI_RANK", "1"}, {"PMI_SIZE", "3"}, {"MPI_LOCALRANKID", "1"}});
  EXPECT_EQ(p.launch.launcher, "pmi");
  EXPECT_EQ(*p.launch.rank, 1);
  EXPECT_EQ(*p.launch.worldSize, 3);

  Config x = fromMap({{"PMIX_RANK", "6"}, {"LOCKSTEP_WORLD_SIZE", "7"}});
  EXPECT_EQ(x.launch.launcher, "lockstep+pmix");
  EXPECT_EQ(*x.launch.rank, 6);
  EXPECT_EQ(*x.launch.worldSize, 7);
}

TEST(LaunchEnvTest, PrecedenceLockstepTorchrunSlurmMpi) {
  const std::map<std::string, std::string> all = {
      {"RANK", "1"},        {"WORLD_SIZE", "10"},  {"SLURM_PROCID", "2"},         {"SLURM_NTASKS", "20"},
      {"PMI_RANK", "4"},    {"PMI_SIZE", "40"},    {"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "30"},
      {"MASTER_ADDR", "h"}, {"MASTER_PORT", "100"}};
  Config c = fromMap(all);
  EXPECT_EQ(c.launch.launcher, "torchrun");
  EXPECT_EQ(*c.launch.rank, 1);
  auto noTorch = all;
  noTorch.erase("RANK");
  c = fromMap(noTorch);
  EXPECT_EQ(c.launch.launcher, "slurm") << "a WORLD_SIZE alone is not torchrun";
  EXPECT_EQ(*c.launch.rank, 2);
  EXPECT_EQ(*c.launch.worldSize, 20);
  EXPECT_TRUE(c.launch.root.empty()) << "MASTER_ADDR only counts with torchrun";
  noTorch.erase("SLURM_PROCID");
  c = fromMap(noTorch);
  EXPECT_EQ(c.launch.launcher, "openmpi");
  EXPECT_EQ(*c.launch.rank, 3);
  // LOCKSTEP_* wins field by field, and LOCKSTEP_ROOT over MASTER_ADDR.
  auto mixed = all;
  mixed["LOCKSTEP_RANK"] = "7";
  mixed["LOCKSTEP_ROOT"] = "10.0.0.1:5000";
  c = fromMap(mixed);
  EXPECT_EQ(*c.launch.rank, 7);
  EXPECT_EQ(*c.launch.worldSize, 10);
  EXPECT_EQ(c.launch.launcher, "lockstep+torchrun");
  EXPECT_EQ(c.launch.root, "10.0.0.1:5000");
  EXPECT_EQ(c.launch.rootFrom, "LOCKSTEP_ROOT");
  EXPECT_FALSE(fromMap({{"RANK", "1"}}).launch.rank.has_value()) << "a stray RANK is not a launcher";
  // A MASTER_PORT that LOCKSTEP_ROOT or LOCKSTEP_UNIQUE_ID leaves unused is not parsed.
  auto unused = all;
  unused["MASTER_PORT"] = "not-a-port";
  unused["LOCKSTEP_ROOT"] = "10.0.0.1:5000";
  EXPECT_EQ(fromMap(unused).launch.root, "10.0.0.1:5000");
  unused.erase("LOCKSTEP_ROOT");
  unused["LOCKSTEP_UNIQUE_ID"] = "00";
  EXPECT_NO_THROW(forInit(unused));
  unused.erase("LOCKSTEP_UNIQUE_ID");
  EXPECT_THROW(forInit(unused), InvalidArgument) << "used, it is checked";
  EXPECT_NO_THROW(fromMap(unused)) << "only init from the environment reads the launch variables";
}

TEST(LaunchEnvTest, BadLauncherValuesNameTheVariable) {
  for (auto [var, other] : {std::pair<std::string, std::string>{"SLURM_PROCID", "SLURM_NTASKS"},
                            {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"},
                            {"WORLD_SIZE", "RANK"}}) {
    try {
      forInit({{var, "many"}, {other, "1"}});
      ADD_FAILURE() << var << " accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(var), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace lockstep
