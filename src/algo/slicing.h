// The order in which a lane's work is done. Every step's range is cut into slices of at most
// sliceElems elements.
//   Slice-major (collectives): all steps' slice 0 run first, then all steps' slice 1, and so on,
//   skipping steps that have no slice j. Both ends of a hop cut the same range the same way, so
//   the messages on every link come in the order the receiver wants them, and step s+1 of slice j
//   overlaps step s of slice j+1 on the neighbours: that is the pipeline.
//   Step-major (send/recv): every slice of a step before the next step, so consecutive messages
//   to one peer arrive whole and in order, whether or not the other end posted them in a group.
#pragma once

#include <algorithm>
#include <span>

#include "src/algo/schedule.h"

namespace lockstep {

class SliceWalker {
 public:
  SliceWalker() = default;
  SliceWalker(std::span<const Step> steps, size_t sliceElems, LaneOrder order = LaneOrder::kSliceMajor)
      : steps_(steps), sliceElems_(sliceElems), stepMajor_(order == LaneOrder::kStepMajor) {
    for (const Step& s : steps_) slices_ = std::max(slices_, (s.count + sliceElems - 1) / sliceElems);
    skipEmpty();
  }

  bool done() const { return stepMajor_ ? index_ >= steps_.size() : slice_ >= slices_; }
  const Step& step() const { return steps_[index_]; }
  size_t first() const { return slice_ * sliceElems_; }  // first element of the slice within the step
  size_t count() const { return std::min(sliceElems_, steps_[index_].count - first()); }
  void advance() {
    if (stepMajor_) {
      if (++slice_ * sliceElems_ < steps_[index_].count) return;
      slice_ = 0;
    }
    ++index_;
    skipEmpty();
  }

 private:
  void skipEmpty() {
    if (stepMajor_) {
      while (index_ < steps_.size() && steps_[index_].count == 0) ++index_;
      return;
    }
    for (; slice_ < slices_; ++slice_, index_ = 0) {
      for (; index_ < steps_.size(); ++index_) {
        if (slice_ * sliceElems_ < steps_[index_].count) return;
      }
    }
  }
  std::span<const Step> steps_;
  size_t sliceElems_ = 1;
  bool stepMajor_ = false;
  size_t slices_ = 0, slice_ = 0, index_ = 0;
};

}  // namespace lockstep
