// The order in which a lane's work is done: slice-major. Every step's range is cut into slices of
// at most sliceElems elements; all steps' slice 0 run first, then all steps' slice 1, and so on,
// skipping steps that have no slice j. Both ends of a hop cut the same range the same way, so the
// messages on every link come in the order the receiver wants them, and step s+1 of slice j
// overlaps step s of slice j+1 on the neighbours: that is the pipeline.
#pragma once

#include <algorithm>
#include <span>

#include "src/algo/schedule.h"

namespace lockstep {

class SliceWalker {
 public:
  SliceWalker() = default;
  SliceWalker(std::span<const Step> steps, size_t sliceElems) : steps_(steps), sliceElems_(sliceElems) {
    for (const Step& s : steps_) slices_ = std::max(slices_, (s.count + sliceElems - 1) / sliceElems);
    skipEmpty();
  }

  bool done() const { return slice_ >= slices_; }
  const Step& step() const { return steps_[index_]; }
  size_t first() const { return slice_ * sliceElems_; }  // first element of the slice within the step
  size_t count() const { return std::min(sliceElems_, steps_[index_].count - first()); }
  void advance() {
    ++index_;
    skipEmpty();
  }

 private:
  void skipEmpty() {
    for (; slice_ < slices_; ++slice_, index_ = 0) {
      for (; index_ < steps_.size(); ++index_) {
        if (slice_ * sliceElems_ < steps_[index_].count) return;
      }
    }
  }
  std::span<const Step> steps_;
  size_t sliceElems_ = 1;
  size_t slices_ = 0, slice_ = 0, index_ = 0;
};

}  // namespace lockstep
