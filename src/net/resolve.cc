#include "src/net/resolve.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "src/core/errors.h"
#include "src/core/logging.h"
#include "src/core/thread_name.h"

namespace lockstep {
namespace {

// One lookup, shared by the caller and the thread that makes it: whoever comes last frees it.
struct Lookup {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false, abandoned = false;
  int rc = EAI_AGAIN;
  addrinfo* result = nullptr;
};

int lookUp(const std::string& host, addrinfo** out) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  *out = nullptr;
  return getaddrinfo(host.c_str(), nullptr, &hints, out);
}

// getaddrinfo by `deadline`; EAI_AGAIN where it did not answer in time (the thread goes on alone
// and frees what it finds).
int lookUpBy(const std::string& host, Deadline deadline, addrinfo** out) {
  auto lookup = std::make_shared<Lookup>();
  try {
    std::thread([host, lookup] {
      nameThisThread("lockstep-dns");
      addrinfo* result = nullptr;
      const int rc = lookUp(host, &result);
      std::lock_guard<std::mutex> lock(lookup->mu);
      if (lookup->abandoned) {
        if (result) freeaddrinfo(result);
        return;
      }
      lookup->rc = rc;
      lookup->result = result;
      lookup->done = true;
      lookup->cv.notify_all();
    }).detach();
  } catch (const std::system_error&) {
    return lookUp(host, out);  // no thread to spare: on this one, unbounded as before
  }
  std::unique_lock<std::mutex> lock(lookup->mu);
  // A resolver that does not answer within seconds is said to, once: a long LOCKSTEP_TIMEOUT
  // otherwise passed with no word of why init waited.
  const Deadline soon = Deadline::after(std::chrono::seconds(5)).earlier(deadline);
  if (!lookup->cv.wait_until(lock, soon.at(), [&] { return lookup->done; }) && !deadline.expired()) {
    LS_WARN(-1, "resolving \"" << host
                               << "\": no answer from the resolver for 5 s; waiting until LOCKSTEP_TIMEOUT "
                                  "(is the DNS server up?)");
  }
  lookup->cv.wait_until(lock, deadline.at(), [&] { return lookup->done; });
  if (!lookup->done) {
    lookup->abandoned = true;
    *out = nullptr;
    return EAI_AGAIN;
  }
  *out = lookup->result;
  return lookup->rc;
}

}  // namespace

addrinfo* resolveHost(const std::string& host, Deadline deadline) {
  const bool bounded = deadline.at() != Clock::time_point::max();
  const auto start = Clock::now();
  auto backoff = std::chrono::milliseconds(50);
  for (;;) {
    addrinfo* result = nullptr;
    const int rc = bounded ? lookUpBy(host, deadline, &result) : lookUp(host, &result);
    if (rc == 0 && result) return result;
    if (result) freeaddrinfo(result);
    if (rc != EAI_AGAIN || !bounded) {
      throw InvalidArgument("cannot resolve host \"" + host + "\": " + gai_strerror(rc == 0 ? EAI_NONAME : rc));
    }
    if (deadline.expired()) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
      throw Timeout("cannot resolve host \"" + host + "\": no address from the resolver in " + std::to_string(ms) +
                    " ms (the last try: " + gai_strerror(rc) +
                    "; LOCKSTEP_TIMEOUT bounds the lookup: is the DNS server up, and /etc/resolv.conf right?)");
    }
    // Said once, so that a long LOCKSTEP_TIMEOUT spent on a resolver that is down (or a name
    // mistyped where no resolver answers) shows why init waits.
    if (backoff == std::chrono::milliseconds(50)) {
      LS_WARN(-1, "resolving \"" << host << "\": " << gai_strerror(rc)
                                 << "; trying again until LOCKSTEP_TIMEOUT (is the DNS server up?)");
    }
    std::this_thread::sleep_for(
        std::min<std::chrono::milliseconds>(backoff, std::chrono::milliseconds(deadline.remainingMs())));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

}  // namespace lockstep
