// Memory deliberately never freed, because something this process does not control may still
// touch it: a CUDA stream that has not run yet, or a handle the user may pass again. Kept
// reachable, so that a leak checker tells it from a real leak.
#pragma once

#include <mutex>
#include <vector>

namespace lockstep {

inline void keepForever(const void* p) {
  static std::mutex mu;
  static auto* kept = new std::vector<const void*>;  // never destroyed: reachable until exit
  std::lock_guard<std::mutex> lock(mu);
  kept->push_back(p);
}

}  // namespace lockstep
