// Peers named in an error message, bounded. The first few are named in full (rank, host, pid and
// what is said of each); the rest are counted and given as ranges of ranks, grouped by what is
// said of them: "..., and 994 more: ranks 7-999 (last completed op #0)". A timeout among 1000
// ranks once named every laggard in full, a 50 KB message of which a relay kept the head and the
// tail (helper-91).
#pragma once

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace lockstep {

class NamedPeers {
 public:
  static constexpr size_t kNamed = 6;   // named in full
  static constexpr size_t kGroups = 8;  // then at most this many groups; the rest said as "other"
  static constexpr size_t kRuns = 16;   // and at most this many runs of ranks in a group

  // `name`: "rank 3 (host:pid)" and anything said of this rank alone ("silent for 900 ms");
  // `said`: what it shares with others, kept in the summary (" (last completed op #4)"), or
  // nothing.
  void add(int rank, std::string name, std::string said) { items_.push_back({rank, std::move(name), std::move(said)}); }
  bool empty() const { return items_.empty(); }

  std::string str() const {
    std::string out;
    for (size_t i = 0; i < items_.size() && i < kNamed; ++i) {
      out += (i ? ", " : "") + items_[i].name + items_[i].said;
    }
    if (items_.size() <= kNamed) return out;
    // The rest by what is said of them, in order of first appearance; past kGroups, one group
    // said to be "in other states" (each rank's own wait, say, can differ).
    struct Group {
      std::string said;
      std::vector<int> ranks;
      bool other = false;
    };
    std::vector<Group> groups;
    for (size_t i = kNamed; i < items_.size(); ++i) {
      auto g = std::find_if(groups.begin(), groups.end(),
                            [&](const Group& x) { return !x.other && x.said == items_[i].said; });
      if (g == groups.end()) {
        if (groups.size() >= kGroups) {
          g = std::find_if(groups.begin(), groups.end(), [](const Group& x) { return x.other; });
          if (g == groups.end()) g = groups.insert(groups.end(), Group{std::string(), {}, true});
        } else {
          g = groups.insert(groups.end(), Group{items_[i].said, {}, false});
        }
      }
      g->ranks.push_back(items_[i].rank);
    }
    out += ", and " + std::to_string(items_.size() - kNamed) + " more:";
    for (size_t k = 0; k < groups.size(); ++k) {
      std::vector<int>& ranks = groups[k].ranks;
      std::sort(ranks.begin(), ranks.end());
      out += std::string(k ? ", " : " ") + (ranks.size() > 1 ? "ranks " : "rank ") + ranges(ranks) +
             (groups[k].other ? " (in other states)" : groups[k].said);
    }
    return out;
  }

 private:
  // Sorted ranks as "3-7, 9, 12-13", the first kRuns runs of them: every other rank of 4096 late
  // made 12 KB of them (helper-99).
  static std::string ranges(const std::vector<int>& ranks) {
    std::string out;
    size_t runs = 0;
    for (size_t i = 0; i < ranks.size();) {
      if (runs++ == kRuns) {
        out += " and " + std::to_string(ranks.size() - i) + " more";
        break;
      }
      size_t j = i;
      while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
      // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive) on "-" + to_string().
      if (i) out += ", ";
      out += std::to_string(ranks[i]);
      if (j > i) {
        out += '-';
        out += std::to_string(ranks[j]);
      }
      i = j + 1;
    }
    return out;
  }

  struct Item {
    int rank;
    std::string name, said;
  };
  std::vector<Item> items_;
};

}  // namespace lockstep
