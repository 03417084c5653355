// The tuner: which algorithm runs a collective. A pure function of the collective, the rank
// count, the size, a link cost model and the user's overrides, so every rank picks the same.
//
// The cost model is alpha-beta: a message costs alpha (latency) plus its bytes over the
// bandwidth. Each algorithm predicts its time from the number of sequential message steps on
// its critical path and the bytes a rank moves; the tuner takes the cheapest. The link cost is
// that of the slowest transport the communicator uses (defaults measured on the development
// machine, or LOCKSTEP_LINK_LATENCY_US / LOCKSTEP_LINK_GBPS).
#pragma once

#include <array>
#include <optional>
#include <string>

#include "src/algo/collective.h"

namespace lockstep {

struct LinkCost {
  double alphaUs;           // latency per message
  double gbps;              // bytes per nanosecond, i.e. GB/s
  double gapUs = 0;         // a rank's sending overhead per message (LogP's g): what one-shot algorithms pay N times
  double reduceGBps = 1e9;  // how fast a rank combines what it receives (GB/s)
  // The pipeline's unit on this link: a slot (LOCKSTEP_SLOT_BYTES), the simulator's slice. A
  // tree or chain forwards a slice only once it has all of it, so the first slice crosses every
  // hop before the last leaves: (hops - 1) slices of fill. 0: pipelined without fill.
  double sliceBytes = 0;
};

// Built-in costs per transport ("inproc", "shm", "socket").
LinkCost defaultLinkCost(const std::string& transport);

// A link that costs nothing: the starting point of slowerOf over a set of links.
constexpr LinkCost kFreeLink{0, 1e9, 0, 1e9};
// Field by field, the worse of two links (the communicator's tuner uses its slowest pair).
LinkCost slowerOf(const LinkCost& a, const LinkCost& b);

constexpr int kOpKinds = static_cast<int>(OpKind::kBarrier) + 1;

struct TunerSettings {
  std::array<std::optional<Algorithm>, kOpKinds> forced;  // LOCKSTEP_ALGO
  bool deterministic = false;                             // LOCKSTEP_DETERMINISTIC
};

// LOCKSTEP_ALGO: "tree" (every collective that has a tree), or "allreduce=ring,broadcast=tree".
// Throws InvalidArgument naming an unknown algorithm or collective.
TunerSettings parseTunerSettings(const std::string& algo, bool deterministic);

// Predicted microseconds for one call; bytes is the larger buffer (nccl-tests' size).
double predictUs(Algorithm a, OpKind kind, int nranks, size_t bytes, const LinkCost& link);

// The algorithm to run. A forced algorithm that does not implement `kind` is ignored for it. In
// deterministic mode reductions only run rank-ordered algorithms (a forced one maps to its
// rank-ordered counterpart: ring, tree, rabenseifner, chain -> ordered; recursive doubling ->
// direct, or ordered past the one-shot's 64 ranks).
Algorithm chooseAlgorithm(OpKind kind, int nranks, size_t bytes, const LinkCost& link, const TunerSettings& s);

}  // namespace lockstep
