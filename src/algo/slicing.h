// The order in which a lane's work is done. Every step's range is cut into slices of at most
// sliceElems elements.
//   Slice-major (collectives): all steps' slice 0 run first, then all steps' slice 1, and so on,
//   skipping steps that have no slice j. Both ends of a hop cut the same range the same way, so
//   the messages on every link come in the order the receiver wants them, and step s+1 of slice j
//   overlaps step s of slice j+1 on the neighbours: that is the pipeline.
//   A step flagged `phase` starts a new slice-major group: everything before it is done first.
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
    if (stepMajor_) {
      skipEmpty();
    } else {
      loadPhase();
    }
  }

  bool done() const { return index_ >= steps_.size(); }
  const Step& step() const { return steps_[index_]; }
  size_t first() const { return slice_ * sliceElems_; }  // first element of the slice within the step
  size_t count() const { return std::min(sliceElems_, steps_[index_].count - first()); }
  void advance() {
    if (stepMajor_) {
      if (++slice_ * sliceElems_ < steps_[index_].count) return;  // an empty message's one slice ends here
      slice_ = 0;
      ++index_;
      skipEmpty();
      return;
    }
    ++index_;
    nextSliceMajor();
  }

 private:
  // Steps of no elements have no slice, except an empty message, which has one of no elements.
  static bool hasSlice(const Step& s, size_t slice, size_t sliceElems) {
    return slice * sliceElems < s.count || (slice == 0 && s.emptyMessage);
  }
  void skipEmpty() {
    while (index_ < steps_.size() && !hasSlice(steps_[index_], 0, sliceElems_)) ++index_;
  }
  // Slice-major within a phase: [begin_, end_) holds the steps up to the next phase start.
  void loadPhase() {
    end_ = begin_ + 1;
    while (end_ < steps_.size() && !steps_[end_].phase) ++end_;
    end_ = std::min(end_, steps_.size());
    slices_ = 0;
    // A step that fits one slice (every step of a small op) needs no division.
    for (size_t i = begin_; i < end_; ++i) {
      const size_t n = steps_[i].count;
      slices_ = std::max(
          slices_, n <= sliceElems_ ? size_t{n > 0 || steps_[i].emptyMessage} : (n + sliceElems_ - 1) / sliceElems_);
    }
    slice_ = 0;
    index_ = begin_;
    nextSliceMajor();
  }
  void nextSliceMajor() {
    for (; slice_ < slices_; ++slice_, index_ = begin_) {
      for (; index_ < end_; ++index_) {
        if (hasSlice(steps_[index_], slice_, sliceElems_)) return;
      }
    }
    // This phase is done: the next one, or the end.
    begin_ = end_;
    if (begin_ >= steps_.size()) {
      index_ = steps_.size();
      return;
    }
    loadPhase();
  }
  std::span<const Step> steps_;
  size_t sliceElems_ = 1;
  bool stepMajor_ = false;
  size_t begin_ = 0, end_ = 0;
  size_t slices_ = 0, slice_ = 0, index_ = 0;
};

}  // namespace lockstep
