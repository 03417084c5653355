#include "src/core/group.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <string>
#include <thread>

#include "src/algo/collective.h"
#include "src/core/comm_handle.h"
#include "src/core/communicator.h"
#include "src/core/errors.h"
#include "src/core/keep.h"
#include "src/core/thread_name.h"
#include "src/exec/backoff.h"

namespace lockstep {

Group& Group::current() {
  thread_local Group group;
  return group;
}

void Group::add(lockstepComm_t comm, const OpDesc& op, std::shared_ptr<RequestSlot> request, bool onStream,
                void* stream) {
  for (const Call& c : calls_) {
    if (c.comm != comm) continue;
    // One communicator's share of a group runs as one sequence: on one stream, or on none.
    if (c.onStream != onStream || c.stream != stream) {
      throw InvalidUsage(std::string("a group's calls on one communicator must all use the same CUDA stream (") +
                         (c.onStream ? "an earlier call used a stream" : "an earlier call used none") +
                         (onStream ? ", this one a different one)" : ", this one none)"));
    }
    break;
  }
  calls_.push_back(Call{comm, op, std::move(request), onStream, stream});
}

void Group::recordFailure(lockstepResult_t code, const std::string& message) {
  if (failure_ != lockstepSuccess) return;
  failure_ = code;
  failureText_ = message;
}

bool Group::uses(lockstepComm_t comm) const {
  return std::any_of(calls_.begin(), calls_.end(), [&](const Call& c) { return c.comm == comm; });
}

void Group::addInit(lockstepComm_t shell, std::function<std::unique_ptr<Communicator>()> build, uint64_t commKey,
                    int rank, std::string what) {
  // The group's ranks of one communicator share a flag: an abort of one ends the others' builds
  // too, which would otherwise wait for it in the rendezvous to the timeout (helper-70).
  for (const Init& i : inits_) {
    if (i.commKey == commKey) shell->groupCancel = i.shell->groupCancel;
  }
  if (!shell->groupCancel) shell->groupCancel = std::make_shared<std::atomic<bool>>(false);
  // Numbered: two ids in one group each have a rank 0.
  what = "communicator #" + std::to_string(inits_.size()) + " of the group (" + what + ")";
  inits_.push_back(Init{shell, std::move(build), commKey, rank, std::move(what)});
}

void Group::end() {
  if (depth_ == 0) throw InvalidUsage("lockstepGroupEnd without a matching lockstepGroupStart");
  if (--depth_ > 0) return;
  std::vector<Call> calls;
  calls.swap(calls_);
  std::vector<Init> inits;
  inits.swap(inits_);
  if (failure_ != lockstepSuccess) {
    // Launch nothing: the ranks would no longer post matching calls.
    auto code = failure_;
    std::string text = "group discarded, nothing was launched: a call in it failed: " + failureText_;
    failure_ = lockstepSuccess;
    failureText_.clear();
    failInits(inits, code, text);
    failRequests(calls, code, text);
    throw Error(code, text);
  }
  if (!inits.empty()) {
    try {
      runInits(std::move(inits));
    } catch (const Error& e) {
      // The calls may be on the communicators that failed, or meant to pair with them.
      const std::string text = std::string("group's calls not launched: ") + e.what();
      failRequests(calls, e.code(), text);
      if (calls.empty()) throw;
      throw Error(e.code(), text);
    }
  }
  launch(std::move(calls));
}

namespace {

// Takes a recorded handle from kPending to `to`; false if it left kPending already (destroyed).
bool claim(lockstepComm_t shell, lockstepComm::Init to) {
  lockstepComm::Init pending = lockstepComm::Init::kPending;
  return shell->init.compare_exchange_strong(pending, to, std::memory_order_acq_rel);
}

}  // namespace

void Group::failInits(const std::vector<Init>& inits, lockstepResult_t code, const std::string& why) {
  for (const Init& i : inits) {
    // Claimed first, so that a destroy on another thread does not write initError beside us.
    if (!claim(i.shell, lockstepComm::Init::kBuilding)) continue;
    i.shell->initError = why;
    i.shell->initCode = code;
    i.shell->init.store(lockstepComm::Init::kFailed, std::memory_order_release);
  }
}

void Group::runInits(std::vector<Init> inits) {
  std::vector<lockstepResult_t> codes(inits.size(), lockstepSuccess);
  // Ends a handle in kBuilding as failed, or, where another thread aborted it meanwhile
  // (kCancelled), as aborted: the abort frees it, as any abort does, with what was built.
  auto settle = [&](size_t k, lockstepResult_t code, const std::string& why) {
    lockstepComm_t shell = inits[k].shell;
    shell->initError = why;  // before the state that publishes it; no other thread writes it
    shell->initCode = code;
    lockstepComm::Init building = lockstepComm::Init::kBuilding;
    if (shell->init.compare_exchange_strong(building, lockstepComm::Init::kFailed, std::memory_order_acq_rel)) {
      shell->impl.reset();
      codes[k] = code;
      return;
    }
    if (shell->impl) shell->impl->abort();
    shell->impl.reset();
    codes[k] = lockstepAborted;
    shell->initError = "aborted (lockstepCommAbort) while its group's end initialised it";
    shell->aborted.store(true);
    shell->closing.store(true);
    shell->magic.store(kDeadMagic);
    keepForever(shell);
  };
  auto build = [&](size_t k) {
    lockstepComm_t shell = inits[k].shell;
    std::unique_ptr<Communicator> impl;
    lockstepResult_t code = lockstepSuccess;
    std::string why;
    try {
      impl = inits[k].build();
    } catch (const Error& e) {
      code = e.code();
      why = e.what();
    } catch (const std::exception& e) {
      code = lockstepInternalError;
      why = e.what();
    }
    if (impl) {
      // Not seen by any other thread before the state says kDone (CommUse reads the state first).
      shell->abortFlag = impl->abortFlag();
      shell->impl = std::move(impl);
    }
    lockstepComm::Init building = lockstepComm::Init::kBuilding;
    if (code == lockstepSuccess &&
        shell->init.compare_exchange_strong(building, lockstepComm::Init::kDone, std::memory_order_acq_rel)) {
      return;
    }
    settle(k, code == lockstepSuccess ? lockstepAborted : code, why);
  };
  // A handle destroyed before the group ended is not built; the group's other ranks of its
  // communicator fail at once instead of waiting for it to the timeout.
  std::vector<bool> claimed(inits.size());
  for (size_t k = 0; k < inits.size(); ++k) claimed[k] = claim(inits[k].shell, lockstepComm::Init::kBuilding);
  std::vector<size_t> todo;
  for (size_t k = 0; k < inits.size(); ++k) {
    if (!claimed[k]) continue;
    auto gone = std::find_if(inits.begin(), inits.end(), [&](const Init& i) {
      return !claimed[&i - inits.data()] && i.commKey == inits[k].commKey;
    });
    if (gone == inits.end()) {
      todo.push_back(k);
    } else {
      settle(k, lockstepInvalidUsage,
             "rank " + std::to_string(gone->rank) +
                 " of this communicator, created in the same group, was destroyed before the group ended: the "
                 "communicator cannot form");
    }
  }
  // At once: the ranks of one communicator wait for each other in its rendezvous.
  std::vector<std::thread> threads;
  for (size_t i = 1; i < todo.size(); ++i) {
    const size_t k = todo[i];
    try {
      threads.emplace_back([&build, k] {
        nameThisThread("lockstep-init");  // not build's: it runs on the caller's thread too
        build(k);
      });
    } catch (const std::system_error& e) {
      settle(k, lockstepSystemError, std::string("no thread to initialise it on: ") + e.what());
    }
  }
  if (!todo.empty()) build(todo[0]);
  for (std::thread& t : threads) t.join();
  // The cause before its effects: a rank that failed by itself (no thread, a bad setting) left
  // the others to time out waiting for it.
  size_t first = inits.size();
  for (size_t k = 0; k < inits.size(); ++k) {
    if (codes[k] == lockstepSuccess) continue;
    if (first == inits.size() || (codes[first] == lockstepTimeout && codes[k] != lockstepTimeout)) first = k;
  }
  if (first < inits.size()) {
    throw Error(codes[first], inits[first].what + " failed: " + inits[first].shell->initError);
  }
}

void Group::failRequests(const std::vector<Call>& calls, lockstepResult_t code, const std::string& text) {
  for (const Call& c : calls) {
    if (!c.request) continue;
    // A Work planned for it but never queued (a later communicator's planning failed) may
    // already be in another thread's lockstepWait: it is completed, not replaced, or that wait
    // would last for ever (helper-80, by reading).
    if (std::shared_ptr<Work> planned = c.request->work.load()) {
      if (!planned->done.load()) {
        planned->result = code;
        planned->error = text;
        planned->markDone();
      }
      continue;
    }
    auto w = std::make_shared<Work>();
    w->result = code;
    w->error = text;
    w->done.store(true);
    c.request->work.store(std::move(w));
  }
}

void Group::launch(std::vector<Call> calls) {
  // Per communicator, in order of first appearance, each held while this thread may still use it
  // or wait for its blocking calls (then released: see the wait below).
  std::vector<lockstepComm_t> comms;
  for (const Call& c : calls) {
    if (std::find(comms.begin(), comms.end(), c.comm) == comms.end()) comms.push_back(c.comm);
  }
  std::deque<std::optional<CommUse>> held;
  // And marked as driven by this thread, as every call is (PostGuard): another thread's call on
  // one of them while the group's ops are planned and run would share their plans.
  std::deque<std::optional<PostGuard>> driving;
  try {
    for (lockstepComm_t comm : comms) held.emplace_back(std::in_place, comm);
  } catch (const Error& e) {
    const std::string text = std::string(
                                 "group not launched: a communicator in it was destroyed or aborted after "
                                 "its calls were recorded: ") +
                             e.what();
    failRequests(calls, e.code(), text);
    throw Error(e.code(), text);
  }
  try {
    for (lockstepComm_t comm : comms) driving.emplace_back(std::in_place, comm);
  } catch (const Error& e) {
    const std::string text = std::string("group not launched: ") + e.what();
    failRequests(calls, e.code(), text);
    throw Error(e.code(), text);
  }
  struct Planned {
    size_t index;  // in comms
    Communicator* comm;
    std::vector<std::shared_ptr<Work>> works;
    std::vector<bool> blocking;  // does a blocking call wait on works[i]
  };
  std::vector<Planned> plans;
  bool anyRequest = false;
  try {
    for (size_t k = 0; k < comms.size(); ++k) {
      Communicator* comm = &**held[k];
      // Every send and receive runs in one fused Work, at the place of the first of them;
      // collectives keep their posted order around it. Fused, sends and receives cannot
      // deadlock whatever order each rank posted them in, also with a collective between them,
      // when every rank groups its calls alike. A peer that posts the same calls outside a group
      // runs them in the same order only if no collective comes between the group's sends and
      // receives (posted order would serve that peer, and split the grouped ranks' instead).
      std::vector<const Call*> mine;
      for (const Call& c : calls) {
        if (c.comm == comms[k]) mine.push_back(&c);
      }
      auto firstP2P = std::find_if(mine.begin(), mine.end(), [](const Call* c) { return isPointToPoint(c->op.kind); });
      std::stable_partition(firstP2P, mine.end(), [](const Call* c) { return isPointToPoint(c->op.kind); });
      std::vector<OpDesc> ops;
      for (const Call* c : mine) ops.push_back(c->op);
      if (mine[0]->onStream) {
        // Stream-ordered: queued now, completed through the stream; nothing here waits for it.
        comm->postOnStream(ops, mine[0]->stream);
        continue;
      }
      std::vector<size_t> workOf;
      Planned p{k, comm, comm->planGroup(ops, &workOf), {}};
      p.blocking.assign(p.works.size(), false);
      for (size_t i = 0; i < mine.size(); ++i) {
        if (mine[i]->request) {
          mine[i]->request->work.store(p.works[workOf[i]]);
          anyRequest = true;
        } else {
          p.blocking[workOf[i]] = true;
        }
      }
      plans.push_back(std::move(p));
    }
  } catch (const std::exception& e) {
    // Nothing planned here was queued yet (stream-ordered calls before this one were, and carry
    // no requests): its requests would otherwise wait for work that never runs.
    const auto* error = dynamic_cast<const Error*>(&e);
    failRequests(calls, error ? error->code() : lockstepInternalError,
                 std::string("group not launched on every communicator: ") + e.what());
    throw;
  }
  if (plans.empty()) return;
  if (plans.size() == 1 && !anyRequest) {
    // One communicator, all blocking: run inline, no thread hand-off.
    for (auto& w : plans[0].works) plans[0].comm->runNow(*w);
    return;
  }
  // Every communicator's thread first: one the system refuses fails the whole group before any
  // of it is queued (a group that ran in part, then failed, would have its retry pair with the
  // peers' next calls).
  try {
    for (auto& p : plans) p.comm->startProgress();
  } catch (const Error& e) {
    for (auto& p : plans) p.comm->abandon(p.works, e);
    throw;
  }
  // Each communicator is let go as soon as none of its blocking calls is left: its queue owns
  // the rest. Held while the others run, it kept lockstepCommAbort of it waiting for them (up to
  // their timeout), so a watchdog aborting a group's communicators one by one never reached the
  // next; and another thread could not call on it though its part was over. Hence a poll over
  // all the works, not a wait on each in turn (each op is bounded by its own deadline).
  std::vector<bool> waiting(comms.size(), false);
  for (const auto& p : plans)
    waiting[p.index] = std::find(p.blocking.begin(), p.blocking.end(), true) != p.blocking.end();
  // This thread waits for the blocking calls from now: counted before their ops start, so the
  // progress threads yield to nobody in particular rather than sleep (a group of two blocking
  // 16-float all-reduces took 45-55 us, 21-22 before background ops slept: helper-86).
  std::optional<CallerWaits> waits;
  if (std::find(waiting.begin(), waiting.end(), true) != waiting.end()) waits.emplace();
  for (auto& p : plans) p.comm->enqueue(p.works);
  auto release = [&](size_t k) {
    driving[k].reset();
    held[k].reset();
  };
  size_t left = 0;
  for (size_t k = 0; k < comms.size(); ++k) {
    if (waiting[k]) {
      ++left;
    } else {
      release(k);
    }
  }
  Backoff backoff;
  while (left > 0) {
    for (const auto& p : plans) {
      if (!waiting[p.index]) continue;
      bool done = true;
      for (size_t i = 0; i < p.works.size() && done; ++i) {
        done = !p.blocking[i] || p.works[i]->done.load(std::memory_order_acquire);
      }
      if (!done) continue;
      waiting[p.index] = false;
      release(p.index);
      --left;
    }
    if (left > 0) backoff.pause();
  }
  for (const auto& p : plans) {
    for (size_t i = 0; i < p.works.size(); ++i) {
      if (p.blocking[i] && p.works[i]->result != lockstepSuccess) throw Error(p.works[i]->result, p.works[i]->error);
    }
  }
}

}  // namespace lockstep
