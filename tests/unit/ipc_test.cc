// The cuda_ipc engine without a GPU: schedules lowered into Programs (transport/cuda_ipc) and run
// by host threads over ordinary memory, every rank's program at once, with the same interpreter
// and the same flag protocol as the kernel. Results are checked bit for bit against the
// simulator (which shares the host executor's primitives), across algorithms, collectives, rank
// counts, odd sizes and worker counts, over FIFOs that wrap many times; then the failures:
// a rank that never comes, an abort, ranks that disagree about the op.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <thread>

#include "kernels/dtype.h"
#include "src/algo/registry.h"
#include "src/algo/simulator.h"
#include "src/exec/fingerprint.h"
#include "transport/cuda_ipc/ipc_host_runner.h"
#include "transport/cuda_ipc/ipc_lowering.h"

namespace lockstep {
namespace ipc {
namespace {

// N ranks' segments in one process, as cuda_ipc maps them (here: plain host memory).
struct World {
  Geometry g;
  std::vector<std::unique_ptr<char, decltype(&std::free)>> memory;
  std::vector<char*> segments;
  std::vector<Counters> counters;
  std::vector<ErrorRecord> errors;
  std::vector<uint32_t> abortFlags;
  uint32_t workers = 1;
  uint64_t timeoutNs = 20'000'000'000ull;

  // Lanes of at most `maxWorkers` workers; each op uses `workers` (every rank the same number).
  World(int n, int slots, size_t slotBytes, uint32_t w, int maxWorkers = 0) : errors(n), abortFlags(n, 0), workers(w) {
    g = Geometry{n, slots, slotBytes, maxWorkers ? maxWorkers : static_cast<int>(w)};
    for (int r = 0; r < n; ++r) {
      const size_t bytes = (g.bytes() + 4095) & ~size_t(4095);
      memory.emplace_back(static_cast<char*>(std::aligned_alloc(4096, bytes)), &std::free);
      std::memset(memory.back().get(), 0, bytes);
      segments.push_back(memory.back().get());
      counters.emplace_back(n);
    }
  }

  std::vector<uint64_t> lowerFor(int r, const Schedule& s, const std::vector<char*>& bufs, lockstepDataType_t dtype,
                                 lockstepRedOp_t op, const MessageTag& tag) {
    LowerArgs a{};
    a.schedule = &s;
    a.buffers = bufs;
    a.dtype = dtype;
    a.op = op;
    a.rank = r;
    a.geometry = g;
    a.segments = segments;
    a.workers = workers;
    for (int i = 0; i < 3; ++i) a.tag[i] = tag.words[i];
    a.timeoutNs = timeoutNs;
    a.state = g.state(segments[r]);
    a.abortFlag = &abortFlags[r];
    a.error = &errors[r];
    std::vector<uint64_t> blob;
    EXPECT_TRUE(lower(a, counters[r], blob));
    return blob;
  }

  // Lowers and runs every rank's schedule at once; ranks listed in `absent` do not take part.
  void run(const std::vector<Schedule>& s, const std::vector<std::vector<char*>>& bufs, lockstepDataType_t dtype,
           lockstepRedOp_t op, const std::vector<MessageTag>& tags, const std::vector<int>& absent = {}) {
    const int n = g.nranks;
    std::vector<std::vector<uint64_t>> blobs(n);
    for (int r = 0; r < n; ++r) {
      if (std::find(absent.begin(), absent.end(), r) != absent.end()) continue;
      blobs[r] = lowerFor(r, s[r], bufs[r], dtype, op, tags[r]);
    }
    std::vector<std::thread> ranks;
    for (int r = 0; r < n; ++r) {
      if (blobs[r].empty()) continue;
      ranks.emplace_back([&, r] { runOnHostThreads(reinterpret_cast<const ProgramHeader*>(blobs[r].data())); });
    }
    for (auto& t : ranks) t.join();
  }
};

MessageTag tagOf(OpKind kind, size_t count, uint64_t seq) {
  Fingerprint fp;
  fp.kind = static_cast<uint8_t>(kind);
  fp.count = count;
  fp.seq = seq;
  return fp.tag();
}

struct Case {
  OpKind kind;
  Algorithm algorithm;
};

// Input and output sizes in elements of rank r's buffers for NCCL's count argument.
size_t inputElems(OpKind k, size_t count, int n) {
  return k == OpKind::kReduceScatter || k == OpKind::kAllToAll ? count * n : count;
}
size_t outputElems(OpKind k, size_t count, int n) {
  return k == OpKind::kAllGather || k == OpKind::kAllToAll ? count * n : count;
}

// Runs one collective through the engine and through the simulator and compares every byte.
// With `workersPerRep`, repetition i runs with workersPerRep[i % size] workers per lane.
void checkAgainstSimulator(Case c, int n, size_t count, lockstepDataType_t dtype, lockstepRedOp_t op, uint32_t workers,
                           int slots, size_t slotBytes, int repeats = 1, std::vector<uint32_t> workersPerRep = {}) {
  const size_t elem = dataTypeSize(dtype);
  const int root = n > 1 ? 1 : 0;
  uint32_t most = workers;
  for (uint32_t w : workersPerRep) most = std::max(most, w);
  World world(n, slots, slotBytes, workers, static_cast<int>(most));
  for (int rep = 0; rep < repeats; ++rep) {
    if (!workersPerRep.empty()) world.workers = workersPerRep[rep % workersPerRep.size()];
    std::mt19937 rng(n * 131 + count + rep);
    std::vector<std::vector<unsigned char>> in(n), outIpc(n), outSim(n);
    std::vector<Schedule> s(n);
    std::vector<std::vector<char*>> bIpc(n), bSim(n);
    for (int r = 0; r < n; ++r) {
      in[r].resize(inputElems(c.kind, count, n) * elem + 1);
      // Small integers in every byte pattern's place: sums of floats stay exact enough to be
      // meaningful, and integer types wrap the same way everywhere.
      for (auto& b : in[r]) b = static_cast<unsigned char>(rng() % 7);
      outIpc[r].assign(outputElems(c.kind, count, n) * elem + 1, 0xee);
      outSim[r] = outIpc[r];
      buildSchedule(c.algorithm, c.kind, r, n, count, root, &s[r]);
      bIpc[r] = {reinterpret_cast<char*>(in[r].data()), reinterpret_cast<char*>(outIpc[r].data())};
      bSim[r] = {reinterpret_cast<char*>(in[r].data()), reinterpret_cast<char*>(outSim[r].data())};
    }
    std::vector<MessageTag> tags(n, tagOf(c.kind, count, rep + 1));
    world.run(s, bIpc, dtype, op, tags);
    simulate(s, bSim, dtype, op, slotBytes, slots);
    for (int r = 0; r < n; ++r) {
      ASSERT_EQ(world.errors[r].code, kOk)
          << "rank " << r << " failed with code " << world.errors[r].code << " peer " << world.errors[r].peer;
      ASSERT_EQ(std::memcmp(outIpc[r].data(), outSim[r].data(), outIpc[r].size()), 0)
          << opKindName(c.kind) << "/" << algorithmName(c.algorithm) << " n=" << n << " count=" << count << " "
          << dataTypeName(dtype) << " " << redOpName(op) << " workers=" << workers << " rank " << r << " rep " << rep;
    }
  }
}

const Case kCases[] = {
    {OpKind::kAllReduce, Algorithm::kRing},
    {OpKind::kAllReduce, Algorithm::kTree},
    {OpKind::kAllReduce, Algorithm::kRecursiveDoubling},
    {OpKind::kAllReduce, Algorithm::kRabenseifner},
    {OpKind::kAllReduce, Algorithm::kOrdered},
    {OpKind::kReduceScatter, Algorithm::kRing},
    {OpKind::kReduceScatter, Algorithm::kOrdered},
    {OpKind::kAllGather, Algorithm::kRing},
    {OpKind::kBroadcast, Algorithm::kTree},
    {OpKind::kBroadcast, Algorithm::kChain},
    {OpKind::kReduce, Algorithm::kTree},
    {OpKind::kReduce, Algorithm::kChain},
    {OpKind::kReduce, Algorithm::kOrdered},
    {OpKind::kAllToAll, Algorithm::kDirect},
    {OpKind::kAllReduce, Algorithm::kDirect},
};

TEST(IpcEngine, EveryCollectiveMatchesTheSimulatorBitForBit) {
  for (const Case& c : kCases) {
    for (int n : {1, 2, 3, 4, 5}) {
      for (size_t count : {size_t(1), size_t(97), size_t(3001)}) {
        checkAgainstSimulator(c, n, count, lockstepFloat32, lockstepSum, /*workers=*/2, /*slots=*/2, 1024);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(IpcEngine, EveryDtypeAndOpOnTheRing) {
  for (int t = 0; t < lockstepNumTypes; ++t) {
    for (int o = 0; o < lockstepNumOps; ++o) {
      checkAgainstSimulator({OpKind::kAllReduce, Algorithm::kRing}, 3, 1001, static_cast<lockstepDataType_t>(t),
                            static_cast<lockstepRedOp_t>(o), 3, 2, 512);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(IpcEngine, WorkerCountsSplitSlicesAnywhere) {
  for (uint32_t workers : {1u, 2u, 3u, 7u}) {
    checkAgainstSimulator({OpKind::kAllReduce, Algorithm::kTree}, 4, 12345, lockstepBfloat16, lockstepAvg, workers, 3,
                          4096);
    if (HasFatalFailure()) return;
  }
}

// Ops back to back on one set of segments: the message numbers and barrier counts continue
// where the last op left them, and FIFOs of two slots wrap hundreds of times.
TEST(IpcEngine, CountersContinueAcrossOps) {
  checkAgainstSimulator({OpKind::kAllReduce, Algorithm::kRing}, 4, 20000, lockstepInt32, lockstepSum, 2, 2, 256,
                        /*repeats=*/6);
}

// Consecutive ops split their slices between different numbers of workers: a slot filled by
// three workers in one op is refilled by one in the next only once all three have released it.
TEST(IpcEngine, OpsWithDifferentWorkerCountsShareTheFifos) {
  checkAgainstSimulator({OpKind::kAllReduce, Algorithm::kRing}, 3, 7001, lockstepFloat32, lockstepSum, 3, 2, 4096,
                        /*repeats=*/8, {3, 1, 2, 4, 1, 4, 3, 2});
  if (HasFatalFailure()) return;
  checkAgainstSimulator({OpKind::kAllReduce, Algorithm::kRabenseifner}, 5, 3001, lockstepInt32, lockstepSum, 2, 2, 4096,
                        /*repeats=*/4, {2, 5, 1, 3});
}

// Every rank's lowering numbers its messages on each link 1, 2, 3... as its peer's lowering does,
// with the same sizes, so the two ends of every hop agree without talking.
TEST(IpcLowering, BothEndsOfEveryLinkNumberMessagesAlike) {
  for (const Case& c : kCases) {
    const int n = 6;
    const size_t count = 777;
    World world(n, 3, 256, 1);
    std::vector<std::vector<uint64_t>> blobs(n);
    std::vector<Schedule> s(n);
    std::vector<char> dummy(64);
    for (int r = 0; r < n; ++r) {
      buildSchedule(c.algorithm, c.kind, r, n, count, 0, &s[r]);
      blobs[r] = world.lowerFor(r, s[r], {dummy.data(), dummy.data()}, lockstepFloat32, lockstepSum, {});
    }
    // sent[r][p]: the element counts of r's messages to p, in order; received likewise.
    std::vector<std::vector<std::vector<uint64_t>>> sent(n, std::vector<std::vector<uint64_t>>(n)), received = sent;
    for (int r = 0; r < n; ++r) {
      if (blobs[r].empty()) continue;
      auto* h = reinterpret_cast<const ProgramHeader*>(blobs[r].data());
      const uint32_t* lanes = laneTable(h);
      const Instr* code = instructions(h);
      for (uint32_t i = 0; i < lanes[h->lanes]; ++i) {
        const Instr& in = code[i];
        if (in.flags & kSends) {
          auto& v = sent[r][in.sendPeer];
          ASSERT_EQ(in.outSeq, v.size() + 1) << "messages to a peer are numbered in lane order";
          ASSERT_EQ(in.outCredit, in.outSeq > 3 ? in.outSeq - 3 : 0);
          ASSERT_EQ(in.outHeader, world.g.header(world.segments[in.sendPeer], r, in.outSeq));
          v.push_back(in.elems);
        }
        if (in.flags & kRecvs) {
          auto& v = received[in.recvPeer][r];
          ASSERT_EQ(in.inSeq, v.size() + 1);
          ASSERT_EQ(in.inTail, world.g.tail(world.segments[in.recvPeer], r));
          v.push_back(in.elems);
        }
      }
    }
    for (int r = 0; r < n; ++r) {
      for (int p = 0; p < n; ++p) {
        EXPECT_EQ(sent[r][p], received[r][p])
            << opKindName(c.kind) << "/" << algorithmName(c.algorithm) << ": link " << r << "->" << p;
      }
    }
  }
}

// The kernels move 16-byte vectors only where the operand, the slot and the destination agree
// modulo 16 (kernels/cuda_elementwise.cuh). Slots are aligned and cudaMalloc's buffers are, so
// every piece of a whole-buffer collective must start on 16 bytes, whatever the count: the
// algorithms cut on grains (src/algo/ring_math.h), never an element off.
TEST(IpcLowering, WholeBufferCollectivesCutOnSixteenBytes) {
  for (const Case& c : kCases) {
    if (c.kind == OpKind::kReduceScatter || c.kind == OpKind::kAllGather || c.kind == OpKind::kAllToAll) continue;
    for (int n : {2, 3, 5, 6, 8}) {
      for (size_t count : {size_t(777), size_t(12345), size_t(100003)}) {
        for (lockstepDataType_t dtype : {lockstepInt8, lockstepBfloat16, lockstepFloat32, lockstepFloat64}) {
          World world(n, 3, 4096, 1);
          alignas(256) static char in[1], out[1];  // addresses only: nothing runs
          for (int r = 0; r < n; ++r) {
            Schedule s;
            buildSchedule(c.algorithm, c.kind, r, n, count, 0, &s);
            const std::vector<uint64_t> blob = world.lowerFor(r, s, {in, out}, dtype, lockstepSum, {});
            if (blob.empty()) continue;
            auto* h = reinterpret_cast<const ProgramHeader*>(blob.data());
            const Instr* code = instructions(h);
            for (uint32_t i = 0; i < laneTable(h)[h->lanes]; ++i) {
              for (const char* p : {code[i].src, static_cast<const char*>(code[i].dst), code[i].inData,
                                    static_cast<const char*>(code[i].outData)}) {
                ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u)
                    << opKindName(c.kind) << "/" << algorithmName(c.algorithm) << " n=" << n << " count=" << count
                    << " " << dataTypeName(dtype) << " rank " << r << " instruction " << i;
              }
            }
          }
        }
      }
    }
  }
}

TEST(IpcLowering, TooManyLanesIsRefusedWithNothingAdvanced) {
  Schedule s;
  for (uint32_t i = 0; i <= kMaxLanes; ++i) {
    s.add(Step{Prim::kCopy, -1, -1, kInput, kOutput, 0, 0, 1});
    s.endLane();
  }
  World world(1, 2, 256, 1);
  char buf[8] = {};
  LowerArgs a{};
  a.schedule = &s;
  std::vector<char*> bufs{buf, buf + 4};
  a.buffers = bufs;
  a.dtype = lockstepFloat32;
  a.op = lockstepSum;
  a.geometry = world.g;
  a.segments = world.segments;
  a.workers = 1;
  std::vector<uint64_t> blob;
  EXPECT_FALSE(lower(a, world.counters[0], blob));
  EXPECT_EQ(world.counters[0].ops, 0u);
}

// Two ranks where one never arrives: the other fails within its timeout, naming the missing peer.
TEST(IpcFaults, AbsentPeerTimesOutNamingIt) {
  const int n = 3;
  World world(n, 2, 1024, 2);
  world.timeoutNs = 200'000'000;  // 200 ms
  std::vector<float> in(1000 * n, 1.0f), out(1000 * n);
  std::vector<Schedule> s(n);
  std::vector<std::vector<char*>> bufs(n);
  for (int r = 0; r < n; ++r) {
    buildSchedule(Algorithm::kRing, OpKind::kAllReduce, r, n, 1000, -1, &s[r]);
    bufs[r] = {reinterpret_cast<char*>(in.data() + r * 1000), reinterpret_cast<char*>(out.data() + r * 1000)};
  }
  auto t0 = std::chrono::steady_clock::now();
  world.run(s, bufs, lockstepFloat32, lockstepSum, std::vector<MessageTag>(n), /*absent=*/{2});
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 5.0);
  for (int r = 0; r < 2; ++r) {
    const ErrorRecord& e = world.errors[r];
    EXPECT_TRUE(e.code == kRecvTimeout || e.code == kCreditTimeout) << "rank " << r << " code " << e.code;
  }
  // Rank 0 receives from rank 2 on the ring (2 -> 0): it names it.
  EXPECT_EQ(world.errors[0].peer, 2);
}

TEST(IpcFaults, AbortStopsEveryWorkerQuickly) {
  const int n = 2;
  World world(n, 2, 1024, 3);
  world.timeoutNs = 60'000'000'000ull;  // only the abort can end this op
  std::vector<float> in(4000 * n, 1.0f), out(4000 * n);
  std::vector<Schedule> s(n);
  std::vector<std::vector<char*>> bufs(n);
  for (int r = 0; r < n; ++r) {
    buildSchedule(Algorithm::kRing, OpKind::kAllReduce, r, n, 4000, -1, &s[r]);
    bufs[r] = {reinterpret_cast<char*>(in.data() + r * 4000), reinterpret_cast<char*>(out.data() + r * 4000)};
  }
  std::thread aborter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    __atomic_store_n(&world.abortFlags[0], 1u, __ATOMIC_RELEASE);
  });
  auto t0 = std::chrono::steady_clock::now();
  // Rank 1 is absent, so rank 0 waits until the abort.
  world.run(s, bufs, lockstepFloat32, lockstepSum, std::vector<MessageTag>(n), /*absent=*/{1});
  aborter.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(world.errors[0].code, kAborted);
  EXPECT_LT(secs, 2.0);
}

TEST(IpcFaults, RanksRunningDifferentOpsAreToldApart) {
  const int n = 2;
  std::vector<float> in(256 * n, 1.0f), out(256 * n);
  std::vector<Schedule> s(n);
  std::vector<std::vector<char*>> bufs(n);
  for (int r = 0; r < n; ++r) {
    buildSchedule(Algorithm::kRing, OpKind::kAllReduce, r, n, 256, -1, &s[r]);
    bufs[r] = {reinterpret_cast<char*>(in.data() + r * 256), reinterpret_cast<char*>(out.data() + r * 256)};
  }
  {
    World world(n, 2, 1024, 1);
    world.timeoutNs = 500'000'000;
    world.run(s, bufs, lockstepFloat32, lockstepSum,
              {tagOf(OpKind::kAllReduce, 256, 1), tagOf(OpKind::kAllReduce, 256, 2)});
    EXPECT_EQ(world.errors[0].code, kTagMismatch);
    EXPECT_EQ(world.errors[0].peer, 1);
    EXPECT_EQ(world.errors[1].code, kTagMismatch);
  }
  {
    // Rank 1 thinks the buffer is shorter: rank 0 sees a message of the wrong size.
    World world(n, 2, 1024, 1);
    world.timeoutNs = 500'000'000;
    buildSchedule(Algorithm::kRing, OpKind::kAllReduce, 1, n, 200, -1, &(s[1] = Schedule{}));
    world.run(s, bufs, lockstepFloat32, lockstepSum, std::vector<MessageTag>(n));
    EXPECT_EQ(world.errors[0].code, kSizeMismatch);
    EXPECT_EQ(world.errors[0].peer, 1);
  }
}

}  // namespace
}  // namespace ipc
}  // namespace lockstep
