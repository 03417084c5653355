// Data-parallel gradient synchronisation over the C ABI (header-only, like lockstep.hpp).
//
//   lockstep::Comm comm = lockstep::Comm::fromEnv();
//   lockstep::ddp::GradientSync sync(comm);              // 25 MiB buckets, fp32 on the wire
//   for (Layer& l : layers) sync.registerParameter(l.name, l.w, l.dw, l.n);
//   sync.broadcastParameters();                          // everyone starts from rank 0's values
//   for (step...) {
//     forward();
//     for (Layer& l : reversed(layers)) { l.backward(); sync.markReady(l.w); }  // buckets start here
//     sync.finish();                                     // waits; gradients now hold the average
//     optimizer.step();
//   }
//
// How it works. Gradients are copied into buckets (flat buffers of about bucketBytes each) as
// markReady reports them. A bucket whose gradients are all ready starts a non-blocking all-reduce
// (lockstepIallReduce, avg) at once, so communication runs on the communicator's progress thread
// while the caller computes the rest of the backward pass. Buckets start strictly in plan order,
// the same on every rank. finish() launches what is left, waits, and copies the averages back.
//
// Plan: first in reverse registration order (later layers' gradients come first in backward);
// after the first synchronised iteration, once, by the order rank 0 observed (broadcast, so every
// rank uses the same plan). A parameter never marked ready in an iteration counts as a zero
// gradient on that rank for that iteration, with a warning once per parameter: every rank still
// launches the same all-reduces, so nothing hangs. One that no rank marked gets zero as its
// average, unless Options::findUnusedParameters is set: then finish() also agrees on which
// parameters some rank used (one more small all-reduce) and leaves the gradients of those no rank
// used untouched, as PyTorch DDP does with find_unused_parameters=True (unusedEverywhere() lists
// them, for an optimizer that should skip them as PyTorch's skips a None gradient).
//
// Options: bf16/fp16 wire compression of fp32 gradients; ZeRO-1 (each bucket is reduce-scattered,
// rank r receives the average of block r only and updates that shard; allGatherParameters() then
// gives every rank every updated parameter). Gradient accumulation: micro-batches inside a
// noSync() scope only accumulate locally; the last one, outside it, synchronises. Every rank must
// accumulate the same micro-batches: finish() checks the noSync() scopes entered since the last
// finish() (one 16-byte all-reduce before the buckets) and fails with lockstepMismatch on every
// rank where they differ, where a rank's accumulated step used to be averaged with another's
// plain one. (A scope around several micro-batches counts once: enter one per micro-batch, as
// PyTorch's no_sync() is used, for the check to see them.)
//
// Memory: host memory only for now. The collectives take device buffers, but this layer packs and
// unpacks gradients with the CPU; registering with Memory::kDevice is an error, and a device
// pointer registered as host memory cannot be detected without CUDA (it would fault on the copy).
//
// Its own communicator. The constructor is collective over `comm`: it splits off a communicator
// for the gradient traffic (its own links, progress thread and buffers: LOCKSTEP_SLOTS x
// LOCKSTEP_SLOT_BYTES per peer, as any communicator). Each rank starts a bucket when its own
// gradients complete it, which is not the same moment on every rank (ready orders differ, unused
// parameters wait for finish()): a collective the program made on `comm` meanwhile (logging the
// loss before finish(), another model's GradientSync) would pair with some rank's bucket on the
// shared sequence, silently when the shapes match. On a communicator of its own, nothing else
// runs between the buckets. lockstepCommAbort(comm) aborts it too (a split child is aborted
// with its parent), so a watchdog that aborts the program's communicator stops finish().
//
// One thread drives a GradientSync (as a communicator). Errors throw lockstep::Exception; after a
// communication error the object, like its communicator, is unusable.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "ddp/bucket_plan.h"
#include "ddp/param_registry.h"
#include "ddp/wire_format.h"
#include "ddp/zero1_shard.h"
#include "lockstep/lockstep.hpp"

namespace lockstep::ddp {

struct Options {
  size_t bucketBytes = size_t{25} << 20;  // PyTorch DDP's default
  Compression compression = Compression::kNone;
  bool zero1 = false;
  bool rebucket = true;  // re-plan once, after the first synchronised iteration
  // Leave the gradients of parameters that no rank marked in an iteration untouched (instead of
  // writing zero, their average), at the price of one more all-reduce (a byte per parameter) in
  // each finish(); see unusedEverywhere().
  bool findUnusedParameters = false;
  // Compare the parameters' names across ranks at registration, besides counts and dtypes: two
  // parameters of one size registered in a different order on some rank would otherwise be
  // averaged with each other, silently. Off where ranks name parameters differently on purpose.
  bool checkNames = true;
  // Receives warnings (unused parameters); by default they go to stderr. An exception it throws
  // is dropped: a logger must not break the iteration half way (on this rank only).
  std::function<void(const std::string&)> warn;
};

// What the last finish() did, for benchmarks and tests.
struct IterationStats {
  size_t buckets = 0;
  size_t launchedEarly = 0;  // buckets launched by markReady, before finish() was called
  size_t unready = 0;        // parameters this rank never marked ready (counted as zero)
};

class GradientSync {
 public:
  // Collective over `comm` (see "Its own communicator" above).
  GradientSync(lockstepComm_t comm, Options options = {}) : options_(std::move(options)) {
    check(lockstepCommUserRank(comm, &rank_));
    check(lockstepCommCount(comm, &nranks_));
    if (lockstepResult_t r = lockstepCommSplit(comm, 0, rank_, &own_.comm); r != lockstepSuccess) {
      // The split is this constructor's: say so, since the program never called it.
      throw Exception(r, std::string("lockstep ddp: GradientSync's constructor is collective over its communicator "
                                     "(every rank constructs it at the same point of its calls): ") +
                             lockstepGetErrorString(r) + ": " + lockstepGetLastError(nullptr));
    }
    comm_ = own_.comm;
    if (!options_.warn) options_.warn = [](const std::string& m) { std::fprintf(stderr, "%s\n", m.c_str()); };
  }
  explicit GradientSync(const Comm& comm, Options options = {}) : GradientSync(comm.get(), std::move(options)) {}
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;
  // Launched all-reduces are waited for (their Request members do it) before buffers go, and
  // the communicator (destroyed last) goes after them.
  ~GradientSync() = default;

  // Registers a parameter and its gradient buffer (count elements of dtype, host memory). Every
  // rank must register the same parameters, in the same order, before the first collective call
  // (broadcastParameters, markReady or finish). Returns the parameter's index.
  size_t registerParameter(std::string name, void* data, void* grad, size_t count, lockstepDataType_t dtype,
                           Memory memory = Memory::kHost) {
    if (frozen_) {
      throw Exception(lockstepInvalidUsage, "lockstep ddp: registerParameter('" + name +
                                                "') after training started: register every parameter before the "
                                                "first broadcastParameters(), markReady() or finish()");
    }
    return registry_.add({std::move(name), data, grad, count, dtype}, memory);
  }
  template <typename T>
  size_t registerParameter(std::string name, T* data, T* grad, size_t count, Memory memory = Memory::kHost) {
    return registerParameter(std::move(name), static_cast<void*>(data), static_cast<void*>(grad), count,
                             dataTypeOf<T>(), memory);
  }

  // Collective: every parameter takes rank 0's values (one group of in-place broadcasts).
  void broadcastParameters() {
    freeze();
    requireBetweenIterations("broadcastParameters()");
    agree();
    sticky([&] {
      ownCollective("broadcastParameters()", [&] {
        group([&] {
          for (size_t i = 0; i < registry_.size(); ++i) {
            const Param& p = registry_[i];
            check(lockstepBroadcast(p.data, p.data, p.count, p.dtype, 0, comm_, nullptr));
          }
        });
      });
    });
  }

  // The gradient of parameter `param` (an index, or its data pointer) is final for this
  // iteration. A parameter with no elements has nothing to reduce: it never holds its bucket back
  // and need not be marked (by index if it is; it has no memory to name it by).
  // Copies it into its bucket; if that completes the next buckets in plan order, starts their
  // all-reduces without waiting for them. Inside noSync() it only checks the parameter.
  void markReady(size_t param) {
    if (param >= registry_.size()) {
      throw Exception(lockstepInvalidArgument, "lockstep ddp: markReady(#" + std::to_string(param) + "): only " +
                                                   std::to_string(registry_.size()) + " parameters are registered");
    }
    freeze();
    if (noSyncDepth_ > 0) {
      usedInWindow_[param] = 1;
      return;
    }
    if (ready_[param]) {
      throw Exception(lockstepInvalidUsage, "lockstep ddp: markReady('" + registry_[param].name +
                                                "') twice in one iteration: mark each gradient once between finish() "
                                                "calls (or finish() was not called after an exception in the last "
                                                "iteration: call it on every rank then, and discard that step)");
    }
    ready_[param] = 1;
    ++readyCount_;
    if (recordingOrder()) observed_.push_back(param);
    if (registry_[param].count == 0) return;  // not counted in its bucket's pending
    sticky([&] {
      pack(param);
      // Before the registration check has passed, buckets wait for finish() (see agree()).
      if (--buckets_[plan_.bucketOf[param]].pending == 0 && agreed_) launchReady();
    });
  }
  void markReady(const void* data) { markReady(registry_.find(data)); }

  // Ends a synchronised iteration: gradients marked in none of its micro-batches (this one, or
  // those inside noSync() since the last finish()) count as zero (warned once each), the
  // remaining buckets start, and every bucket is waited for. Then every gradient holds the
  // average over ranks (ZeRO-1: only the elements of shard() do; the others keep local values).
  void finish() {
    if (noSyncDepth_ > 0) {
      throw Exception(lockstepInvalidUsage,
                      "lockstep ddp: finish() inside a noSync() scope: gradients are not synchronised there; leave "
                      "the scope for the last micro-batch, then call finish()");
    }
    freeze();
    agree();
    sticky([&] {
      stats_ = {};
      stats_.buckets = plan_.buckets.size();
      stats_.launchedEarly = nextBucket_;
      for (size_t i = 0; i < registry_.size(); ++i) {
        if (ready_[i] || registry_[i].count == 0) continue;
        // Marked in an earlier micro-batch of this window (inside noSync): what it accumulated
        // is its gradient, as PyTorch DDP counts a parameter used in any micro-batch.
        if (usedInWindow_[i]) {
          pack(i);
        } else {
          ++stats_.unready;
          warnUnready(i);
          zeroSlot(i);
        }
        --buckets_[plan_.bucketOf[i]].pending;
      }
      launchReady();
      unusedEverywhere_.clear();
      if (options_.findUnusedParameters) launchUsedMap();
      if (!windowLaunched_) launchWindowCheck();  // no bucket (every parameter empty)
      checkWindowsAgree();
      const bool sharded = reduceScatterNow();
      for (size_t b = 0; b < plan_.buckets.size(); ++b) {
        waitFor(b, sharded ? "finish(): the reduce-scatter of" : "finish(): the all-reduce of");
        if (!sharded) {
          // One this rank did not use waits for the used map (after the last bucket): it may be
          // unused everywhere, and then keeps its gradient.
          for (size_t p : plan_.buckets[b].params) {
            if (usedHere(p) || !options_.findUnusedParameters) unpack(p, 0, registry_[p].count);
          }
        }
      }
      if (options_.findUnusedParameters) {
        ownCollective("finish(): the all-reduce of the used-parameter map", [&] { usedRequest_.wait(); });
        for (size_t i = 0; i < registry_.size(); ++i) {
          if (!usedMap_[i]) {
            unusedEverywhere_.push_back(i);
          } else if (!usedHere(i) && !sharded) {
            unpack(i, 0, registry_[i].count);
          }
        }
      }
      if (sharded) {
        for (const ShardPiece& s : shard_) {
          if (!options_.findUnusedParameters || usedMap_[s.param]) unpack(s.param, s.paramOffset, s.count);
        }
      }
      if (recordingOrder()) rebucket();
      resetIteration();
      ++iteration_;
    });
  }

  // With Options::findUnusedParameters: the parameters that no rank marked in the last finish()'s
  // iteration (in any of its micro-batches), whose gradients finish() left untouched.
  const std::vector<size_t>& unusedEverywhere() const { return unusedEverywhere_; }

  // Gradient accumulation: while a NoSync is alive, markReady only validates its argument and
  // notes the parameter as used in this window (finish() then synchronises it even if the last
  // micro-batch does not mark it); nothing is communicated, and gradients keep accumulating in
  // the caller's buffers. Enter it before the first markReady of an iteration.
  class NoSync {
   public:
    explicit NoSync(GradientSync* s) : s_(s) {
      ++s_->noSyncDepth_;
      ++s_->windowScopes_;
    }
    NoSync(NoSync&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;
    NoSync& operator=(NoSync&&) = delete;
    ~NoSync() {
      if (s_) --s_->noSyncDepth_;
    }

   private:
    GradientSync* s_;
  };
  [[nodiscard]] NoSync noSync() {
    if (readyCount_ > 0) {
      throw Exception(lockstepInvalidUsage,
                      "lockstep ddp: noSync() after markReady() in the same iteration: enter it before the "
                      "micro-batch's backward pass");
    }
    return NoSync(this);
  }

  // ZeRO-1: the elements this rank owns (its optimizer state is shardCount() elements, piece by
  // piece). Known once registration is complete; final after the first finish(), never changing
  // after that.
  const std::vector<ShardPiece>& shard() const {
    requireZero1("shard()");
    requireFrozen("shard()");
    return shard_;
  }
  size_t shardCount() const { return ddp::shardCount(shard()); }

  // ZeRO-1, collective: after each rank updated the parameters of its shard, every rank receives
  // every parameter (one in-place all-gather per bucket).
  void allGatherParameters() {
    requireZero1("allGatherParameters()");
    freeze();
    requireBetweenIterations("allGatherParameters()");
    agree();
    sticky([&] { gatherShards(); });
  }

 private:
  void gatherShards() {
    for (const ShardPiece& s : shard_) {
      const Param& p = registry_[s.param];
      const size_t es = elementSize(p.dtype);
      std::memcpy(stage(s.bucket) + (plan_.offsetOf[s.param] + s.paramOffset) * es,
                  static_cast<const unsigned char*>(p.data) + s.paramOffset * es, s.count * es);
    }
    for (size_t b = 0; b < plan_.buckets.size(); ++b) {
      const Bucket& bucket = plan_.buckets[b];
      const size_t block = bucket.paddedCount / static_cast<size_t>(nranks_);
      unsigned char* base = stage(b);
      check(lockstepIallGather(base + static_cast<size_t>(rank_) * block * elementSize(bucket.dtype), base, block,
                               bucket.dtype, comm_, buckets_[b].request.out()));
    }
    for (size_t b = 0; b < plan_.buckets.size(); ++b) {
      waitFor(b, "allGatherParameters(): the all-gather of");
      const Bucket& bucket = plan_.buckets[b];
      const size_t es = elementSize(bucket.dtype);
      for (size_t k = 0; k < bucket.params.size(); ++k) {
        const Param& p = registry_[bucket.params[k]];
        if (p.count > 0) std::memcpy(p.data, stage(b) + bucket.offsets[k] * es, p.count * es);
      }
    }
  }

 public:
  const BucketPlan& plan() const { return plan_; }
  size_t iteration() const { return iteration_; }  // synchronised iterations finished
  bool rebucketed() const { return rebucketed_; }
  const IterationStats& lastStats() const { return stats_; }
  size_t parameterCount() const { return registry_.size(); }
  const Param& parameter(size_t i) const { return registry_[i]; }
  int rank() const { return rank_; }
  int size() const { return nranks_; }

 private:
  struct BucketState {
    std::vector<unsigned char> wire;   // the gradients as sent (wire dtype, paddedCount elements)
    std::vector<unsigned char> stage;  // ZeRO-1 parameter all-gather, when wire is compressed
    size_t pending = 0;                // parameters not yet packed this iteration
    Request request;                   // declared last: destroyed (waited for) before the buffers
  };

  // Registration is complete: make the first plan (from this rank's registry alone; agree()
  // checks the ranks hold the same one before any bucket travels).
  // Also the gate of every collective entry point: after a failure, each rethrows it.
  void freeze() {
    if (failed_ != lockstepSuccess) {
      throw Exception(failed_, "lockstep ddp: this GradientSync is unusable after an earlier failure: " + failedWhy_);
    }
    if (frozen_) return;
    frozen_ = true;
    sticky([&] {
      shapes_ = registry_.shapes();
      ready_.assign(registry_.size(), 0);
      usedInWindow_.assign(registry_.size(), 0);
      setPlan(planBuckets(shapes_, reverseRegistrationOrder(registry_.size()), options_.bucketBytes, padMultiple()));
    });
  }

  // The registration check, once: collective and blocking, so it runs at a rank's first blocking
  // entry point (broadcastParameters, allGatherParameters or finish), which every rank reaches
  // at the same place among its calls. markReady does not run it: a rank's first markReady comes
  // wherever its backward pass first finishes a gradient, maybe before a collective of the
  // program's own on which another rank, not yet marking, waits (both then waited out the
  // timeout). Until the check passes, markReady only packs: the first iteration's buckets start
  // in finish(), after it. If the ranks disagree, every later call fails the same way instead of
  // using a plan that was never agreed on.
  void agree() {
    if (agreed_) return;
    sticky([&] { checkRanksAgree(); });
    agreed_ = true;
  }

  // Runs the communicating part of an entry point. Its first failure sticks: the iteration is
  // left half done (buckets launched or not, requests consumed), so every later call rethrows
  // it, with its code, instead of handing back this rank's own gradients as if averaged (a
  // second finish() once did) or blaming a registration check that passed.
  template <typename F>
  void sticky(F&& body) {
    try {
      body();
    } catch (const Exception& e) {
      failed_ = e.code();
      failedWhy_ = e.what();
      throw;
    } catch (const std::exception& e) {
      failed_ = lockstepInternalError;
      failedWhy_ = e.what();
      throw;
    }
  }

  void checkRanksAgree() {
    const uint64_t n = registry_.size();
    // max(x) == ~max(~x) (that is, max == min) exactly when every rank has the same x.
    constexpr int kFields = 7;
    const uint64_t mine[kFields] = {n,
                                    options_.bucketBytes,
                                    static_cast<uint64_t>(options_.compression),
                                    static_cast<uint64_t>(options_.zero1),
                                    static_cast<uint64_t>(options_.rebucket),
                                    static_cast<uint64_t>(options_.findUnusedParameters),
                                    static_cast<uint64_t>(options_.checkNames)};
    uint64_t head[2 * kFields];
    for (int k = 0; k < kFields; ++k) head[2 * k] = mine[k], head[2 * k + 1] = ~mine[k];
    ownCollective(
        "the registration check (at every rank's first broadcastParameters(), allGatherParameters() or "
        "finish(), comparing what each registered)",
        [&] { check(lockstepAllReduce(head, head, 2 * kFields, lockstepUint64, lockstepMax, comm_, nullptr)); });
    // Every rank sees the same difference, so every rank takes part in naming who differs.
    if (head[0] != ~head[1]) {
      throw Exception(lockstepMismatch, "lockstep ddp: ranks registered different numbers of parameters: " +
                                            whoHas({n, 0}, [](const uint64_t* v) { return std::to_string(v[0]); }));
    }
    const char* names[kFields] = {"",         "bucketBytes",          "compression", "zero1",
                                  "rebucket", "findUnusedParameters", "checkNames"};
    for (int k = 1; k < kFields; ++k) {
      if (head[2 * k] != ~head[2 * k + 1]) {
        const bool compression = k == 2;  // named, not numbered ("bf16 on rank 0, fp16 on rank 1")
        throw Exception(lockstepMismatch,
                        std::string("lockstep ddp: ranks use different options: ") + names[k] + " is " +
                            whoHas({mine[k], 0}, [compression](const uint64_t* v) {
                              return compression ? std::string(compressionName(static_cast<Compression>(v[0])))
                                                 : std::to_string(v[0]);
                            }));
      }
    }
    // Counts and dtypes, then (checkNames) names: 2m hashes and their complements.
    std::vector<uint64_t> sig = registry_.signature();
    if (options_.checkNames) {
      const std::vector<uint64_t> names = registry_.nameSignature();
      sig.insert(sig.end(), names.begin(), names.end());
    }
    const size_t m = sig.size();
    sig.resize(2 * m);
    for (size_t i = 0; i < m; ++i) sig[m + i] = ~sig[i];
    ownCollective("the registration check (comparing every parameter's count and dtype)", [&] {
      check(lockstepAllReduce(sig.data(), sig.data(), sig.size(), lockstepUint64, lockstepMax, comm_, nullptr));
    });
    for (size_t i = 0; i < n; ++i) {
      if (sig[i] != ~sig[m + i]) {
        const Param& p = registry_[i];
        throw Exception(lockstepMismatch,
                        "lockstep ddp: parameter #" + std::to_string(i) + " ('" + p.name + "' on rank " +
                            std::to_string(rank_) + ") differs between ranks in count or dtype: " +
                            whoHas({p.count, static_cast<uint64_t>(p.dtype)}, [](const uint64_t* v) {
                              return std::to_string(v[0]) + " x " + typeName(static_cast<lockstepDataType_t>(v[1]));
                            }));
      }
    }
    for (size_t i = 0; i < m - n; ++i) {
      if (sig[n + i] != ~sig[m + n + i]) {
        throw Exception(lockstepMismatch, "lockstep ddp: parameter #" + std::to_string(i) +
                                              " differs between ranks in name: " + whoIsNamed(i) +
                                              " (registered in another order? Options::checkNames = false where "
                                              "ranks name parameters differently on purpose)");
      }
    }
  }

  // As whoHas, for a parameter's name: "'fc.w' on ranks 0-2, 'fc.b' on rank 3". Ranks are told
  // apart by the whole name's hash; the names are gathered whole up to kMaxName bytes (one more
  // all-gather of the longest one's size), a longer one cut there and marked "...".
  std::string whoIsNamed(size_t param) {
    constexpr size_t kMaxName = 512;
    const std::string& name = registry_[param].name;
    std::vector<uint64_t> keys(2 * static_cast<size_t>(nranks_));
    uint64_t mine[2] = {registry_.nameSignature()[param], name.size()};
    ownCollective("naming the ranks that differ in the registration check",
                  [&] { check(lockstepAllGather(mine, keys.data(), 2, lockstepUint64, comm_, nullptr)); });
    size_t width = 1;
    for (int r = 0; r < nranks_; ++r)
      width = std::max<size_t>(width, std::min<uint64_t>(keys[2 * r + 1], kMaxName) + 1);
    std::vector<char> text(width, 0), all(width * static_cast<size_t>(nranks_));
    std::memcpy(text.data(), name.data(), std::min(name.size(), width - 1));
    ownCollective("naming the ranks that differ in the registration check",
                  [&] { check(lockstepAllGather(text.data(), all.data(), width, lockstepUint8, comm_, nullptr)); });
    std::string out;
    for (const std::vector<int>& ranks : groupsOf(keys)) {
      const int r = ranks.front();
      out.append(out.empty() ? "'" : ", '").append(&all[width * r]);
      if (keys[2 * r + 1] > kMaxName) out.append("...");
      out.append("' on ").append(rankList(ranks));
    }
    return out;
  }

  // The ranks grouped by the pair of words each holds in `all` (two per rank), rank 0's group
  // first, each in rank order.
  std::vector<std::vector<int>> groupsOf(const std::vector<uint64_t>& all) const {
    std::vector<std::vector<int>> groups;
    std::vector<char> told(static_cast<size_t>(nranks_), 0);
    for (int r = 0; r < nranks_; ++r) {
      if (told[r]) continue;
      groups.emplace_back();
      for (int q = r; q < nranks_; ++q) {
        if (all[2 * q] == all[2 * r] && all[2 * q + 1] == all[2 * r + 1]) {
          told[q] = 1;
          groups.back().push_back(q);
        }
      }
    }
    return groups;
  }

  // On a disagreement every rank found alike (so all of them call it): gathers each rank's two
  // words and says which ranks hold which value, rank 0's first: "10 x float32 on ranks 0-2, 9 x
  // float32 on rank 3".
  template <typename Format>
  std::string whoHas(std::array<uint64_t, 2> mine, Format format, const char* label = "the registration check") {
    std::vector<uint64_t> all(2 * static_cast<size_t>(nranks_));
    ownCollective(std::string("naming the ranks that differ in ") + label,
                  [&] { check(lockstepAllGather(mine.data(), all.data(), 2, lockstepUint64, comm_, nullptr)); });
    std::string out;
    for (const std::vector<int>& ranks : groupsOf(all)) {
      out += (out.empty() ? "" : ", ") + format(&all[2 * ranks.front()]) + " on " + rankList(ranks);
    }
    return out;
  }
  // "rank 3", "ranks 0-2", "ranks 0, 2, 5-7".
  static std::string rankList(const std::vector<int>& ranks) {
    std::string out = ranks.size() == 1 ? "rank " : "ranks ";
    for (size_t i = 0; i < ranks.size();) {
      size_t j = i;
      while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
      out.append(i ? ", " : "").append(std::to_string(ranks[i]));
      if (j > i) out.append("-").append(std::to_string(ranks[j]));  // appends: GCC 12 misread "-" + string
      i = j + 1;
    }
    return out;
  }

  size_t padMultiple() const { return options_.zero1 ? static_cast<size_t>(nranks_) : 1; }
  bool recordingOrder() const { return options_.rebucket && !rebucketed_; }
  // ZeRO-1 reduce-scatters once the plan is final; before that (the first iteration when
  // re-bucketing) it all-reduces, so the shard can follow the final plan from the first step.
  bool reduceScatterNow() const { return options_.zero1 && !recordingOrder(); }

  lockstepDataType_t wireTypeOf(const Bucket& b) const { return wireType(b.dtype, options_.compression); }
  bool compressed(const Bucket& b) const { return wireTypeOf(b) != b.dtype; }

  void setPlan(BucketPlan plan) {
    plan_ = std::move(plan);
    buckets_ = std::vector<BucketState>(plan_.buckets.size());
    for (size_t b = 0; b < plan_.buckets.size(); ++b) {
      const Bucket& bucket = plan_.buckets[b];
      buckets_[b].wire.assign(bucket.paddedCount * elementSize(wireTypeOf(bucket)), 0);
      if (options_.zero1 && compressed(bucket))
        buckets_[b].stage.assign(bucket.paddedCount * elementSize(bucket.dtype), 0);
      buckets_[b].pending = gradientsIn(bucket);
    }
    if (options_.zero1) shard_ = shardPieces(plan_, shapes_, rank_, nranks_);
  }

  // The parameters a bucket waits for: those with elements.
  size_t gradientsIn(const Bucket& bucket) const {
    size_t n = 0;
    for (size_t p : bucket.params) n += registry_[p].count > 0;
    return n;
  }

  unsigned char* stage(size_t b) {
    return buckets_[b].stage.empty() ? buckets_[b].wire.data() : buckets_[b].stage.data();
  }

  // Gradient -> bucket slot. Narrow wire types (bf16, fp16: compressed fp32 or native) are scaled
  // by 1/nranks here and summed on the wire; fp32 and fp64 are copied and averaged by the
  // library's avg. See "DDP" in docs/design-notes.md for why.
  void pack(size_t param) {
    const Param& p = registry_[param];
    if (p.count == 0) return;  // an empty parameter may have null pointers, which memcpy must not see
    const Bucket& bucket = plan_.buckets[plan_.bucketOf[param]];
    const lockstepDataType_t wt = wireTypeOf(bucket);
    unsigned char* slot = buckets_[plan_.bucketOf[param]].wire.data() + plan_.offsetOf[param] * elementSize(wt);
    const float scale = 1.0f / static_cast<float>(nranks_);
    if (!isNarrow(wt)) {
      std::memcpy(slot, p.grad, p.count * elementSize(p.dtype));
    } else if (wt == p.dtype) {
      rescale(static_cast<const uint16_t*>(p.grad), reinterpret_cast<uint16_t*>(slot), p.count, wt, scale);
    } else {
      encode(static_cast<const float*>(p.grad), reinterpret_cast<uint16_t*>(slot), p.count, wt, scale);
    }
  }

  // Bucket slot elements [offset, offset + count) -> the parameter's gradient.
  void unpack(size_t param, size_t offset, size_t count) {
    const Param& p = registry_[param];
    if (count == 0) return;
    const Bucket& bucket = plan_.buckets[plan_.bucketOf[param]];
    const lockstepDataType_t wt = wireTypeOf(bucket);
    const unsigned char* slot =
        buckets_[plan_.bucketOf[param]].wire.data() + (plan_.offsetOf[param] + offset) * elementSize(wt);
    if (wt == p.dtype) {
      std::memcpy(static_cast<unsigned char*>(p.grad) + offset * elementSize(p.dtype), slot,
                  count * elementSize(p.dtype));
    } else {
      decode(reinterpret_cast<const uint16_t*>(slot), static_cast<float*>(p.grad) + offset, count, wt);
    }
  }

  void zeroSlot(size_t param) {
    if (registry_[param].count == 0) return;
    const Bucket& bucket = plan_.buckets[plan_.bucketOf[param]];
    const size_t es = elementSize(wireTypeOf(bucket));
    std::memset(buckets_[plan_.bucketOf[param]].wire.data() + plan_.offsetOf[param] * es, 0,
                registry_[param].count * es);
  }

  // Starts every bucket that is complete and whose predecessors have all started.
  void launchReady() {
    while (nextBucket_ < plan_.buckets.size() && buckets_[nextBucket_].pending == 0) {
      launch(nextBucket_++);
    }
  }

  // Runs one of GradientSync's collectives. Its error names a collective the program never
  // called ("allreduce #10 (10 x float32) timed out ..."): it is said whose it is.
  template <typename F>
  void ownCollective(const std::string& what, F&& step) {
    try {
      step();
    } catch (const Exception& e) {
      throw Exception(e.code(), "lockstep ddp: " + what + " (on GradientSync's own communicator): " + e.what());
    }
  }
  template <typename F>
  void onBucket(size_t b, const char* what, F&& step) {
    ownCollective(
        std::string(what) + " bucket " + std::to_string(b + 1) + " of " + std::to_string(plan_.buckets.size()),
        std::forward<F>(step));
  }
  void waitFor(size_t b, const char* what) {
    onBucket(b, what, [&] { buckets_[b].request.wait(); });
  }

  void launch(size_t b) {
    if (!windowLaunched_) launchWindowCheck();
    const Bucket& bucket = plan_.buckets[b];
    BucketState& s = buckets_[b];
    const lockstepDataType_t wt = wireTypeOf(bucket);
    const lockstepRedOp_t op = isNarrow(wt) ? lockstepSum : lockstepAvg;  // narrow: pre-scaled in pack()
    if (reduceScatterNow()) {
      const size_t block = bucket.paddedCount / static_cast<size_t>(nranks_);
      unsigned char* mine = s.wire.data() + static_cast<size_t>(rank_) * block * elementSize(wt);
      onBucket(b, "starting the reduce-scatter of",
               [&] { check(lockstepIreduceScatter(s.wire.data(), mine, block, wt, op, comm_, s.request.out())); });
    } else {
      onBucket(b, "starting the all-reduce of", [&] {
        check(lockstepIallReduce(s.wire.data(), s.wire.data(), bucket.paddedCount, wt, op, comm_, s.request.out()));
      });
    }
  }

  // Once, at the end of the first synchronised iteration: re-plan by rank 0's observed order.
  void rebucket() {
    const size_t n = registry_.size();
    std::vector<uint64_t> order(n);
    if (rank_ == 0) {
      std::vector<size_t> full = completeOrder(observed_, n);
      for (size_t i = 0; i < n; ++i) order[i] = full[i];
    }
    ownCollective("finish(): re-bucketing after the first iteration (rank 0's ready order, broadcast)",
                  [&] { check(lockstepBroadcast(order.data(), order.data(), n, lockstepUint64, 0, comm_, nullptr)); });
    std::vector<size_t> chosen(order.begin(), order.end());
    BucketPlan next = planBuckets(shapes_, chosen, options_.bucketBytes, padMultiple());
    if (!samePlan(next, plan_)) setPlan(std::move(next));
    rebucketed_ = true;
    observed_.clear();
    observed_.shrink_to_fit();
  }

  void resetIteration() {
    std::fill(ready_.begin(), ready_.end(), 0);
    std::fill(usedInWindow_.begin(), usedInWindow_.end(), 0);
    windowScopes_ = 0;
    windowLaunched_ = false;
    readyCount_ = 0;
    nextBucket_ = 0;
    for (size_t b = 0; b < plan_.buckets.size(); ++b) buckets_[b].pending = gradientsIn(plan_.buckets[b]);
  }

  void warnUnready(size_t param) {
    if (warned_.empty()) warned_.assign(registry_.size(), 0);
    if (warned_[param]) return;
    warned_[param] = 1;
    try {
      options_.warn("lockstep ddp: rank " + std::to_string(rank_) + ": parameter '" + registry_[param].name + "' (#" +
                    std::to_string(param) + ") was not marked ready in iteration " + std::to_string(iteration_) +
                    "; its gradient counts as zero on this rank (reported once per parameter)");
    } catch (...) {
      // Thrown inside finish(), before the remaining buckets start: it made this GradientSync
      // unusable and left the other ranks waiting for this one's buckets until their timeout.
    }
  }

  bool usedHere(size_t param) const { return ready_[param] || usedInWindow_[param] || registry_[param].count == 0; }

  // After the last bucket, in call order: which parameters some rank used (max of a byte each).
  void launchUsedMap() {
    usedMap_.resize(registry_.size());
    for (size_t i = 0; i < registry_.size(); ++i) usedMap_[i] = usedHere(i) ? 1 : 0;
    ownCollective("finish(): starting the all-reduce of the used-parameter map", [&] {
      check(lockstepIallReduce(usedMap_.data(), usedMap_.data(), usedMap_.size(), lockstepUint8, lockstepMax, comm_,
                               usedRequest_.out()));
    });
  }

  // Do all ranks close the same accumulation window? Known once the first bucket of the
  // synchronised micro-batch starts, so it goes just before that bucket, in the same place of
  // every rank's calls, and is answered before any bucket is. What it compares is the noSync()
  // scopes entered: the parameters marked in them differ between ranks legitimately (a
  // mixture of experts routes each rank's micro-batches its own way), and a scope around several
  // micro-batches is one scope to it.
  void launchWindowCheck() {
    windowLaunched_ = true;
    windowAgree_[0] = windowScopes_;
    windowAgree_[1] = ~windowScopes_;
    ownCollective("finish(): starting the iteration's first collective", [&] {
      check(
          lockstepIallReduce(windowAgree_, windowAgree_, 2, lockstepUint64, lockstepMax, comm_, windowRequest_.out()));
    });
  }
  void checkWindowsAgree() {
    // Its failure, if the group failed meanwhile, belongs to no bucket: the iteration's first.
    ownCollective("finish(): the iteration's first collective", [&] { windowRequest_.wait(); });
    if (windowAgree_[0] == ~windowAgree_[1]) return;
    // Every rank sees the same difference: all of them name it, and none unpacks an average of
    // unlike steps.
    throw Exception(
        lockstepMismatch,
        "lockstep ddp: finish() of iteration " + std::to_string(iteration_) +
            ": ranks accumulated different numbers of micro-batches since the last finish(): " +
            whoHas(
                {windowScopes_, 0}, [](const uint64_t* v) { return std::to_string(v[0]) + " noSync() scope(s)"; },
                "the accumulation check") +
            "; every rank must run the same micro-batches inside noSync() before each finish()");
  }

  void requireZero1(const char* what) const {
    if (!options_.zero1) throw Exception(lockstepInvalidUsage, std::string("lockstep ddp: ") + what + " needs zero1");
  }
  void requireFrozen(const char* what) const {
    if (!frozen_) {
      throw Exception(lockstepInvalidUsage, std::string("lockstep ddp: ") + what +
                                                " is known once registration is complete (after the first "
                                                "broadcastParameters(), markReady() or finish())");
    }
  }
  void requireBetweenIterations(const char* what) const {
    if (readyCount_ > 0) {
      throw Exception(lockstepInvalidUsage,
                      std::string("lockstep ddp: ") + what + " in the middle of an iteration (call finish() first)");
    }
  }

  // Declared first, so destroyed last: after the requests that run on it.
  struct OwnComm {
    lockstepComm_t comm = nullptr;
    OwnComm() = default;
    OwnComm(const OwnComm&) = delete;
    OwnComm& operator=(const OwnComm&) = delete;
    ~OwnComm() {
      if (comm) lockstepCommDestroy(comm);
    }
  } own_;
  lockstepComm_t comm_ = nullptr;  // own_.comm
  Options options_;
  int rank_ = 0, nranks_ = 1;
  ParamRegistry registry_;
  std::vector<ParamShape> shapes_;
  bool frozen_ = false;
  bool agreed_ = false;                        // the registration check passed
  lockstepResult_t failed_ = lockstepSuccess;  // the first failure of a collective entry point (sticky)
  std::string failedWhy_;
  bool rebucketed_ = false;
  BucketPlan plan_;
  std::vector<BucketState> buckets_;
  std::vector<ShardPiece> shard_;
  std::vector<char> ready_;
  std::vector<char> usedInWindow_;  // marked inside noSync() since the last finish()
  uint64_t windowScopes_ = 0;       // noSync() scopes entered since the last finish()
  uint64_t windowAgree_[2] = {};    // its check: scopes, ~scopes (max)
  Request windowRequest_;           // the check's all-reduce (after windowAgree_)
  bool windowLaunched_ = false;     // this iteration's check has started
  std::vector<char> warned_;
  std::vector<size_t> observed_;  // ready order seen in the first synchronised iteration
  std::vector<size_t> unusedEverywhere_;
  std::vector<uint8_t> usedMap_;  // findUnusedParameters: 1 where some rank used the parameter
  Request usedRequest_;           // its all-reduce (after usedMap_: destroyed, so waited for, first)
  size_t readyCount_ = 0;
  size_t nextBucket_ = 0;  // buckets [0, nextBucket_) are launched this iteration
  size_t iteration_ = 0;
  int noSyncDepth_ = 0;
  IterationStats stats_;
};

}  // namespace lockstep::ddp
