// Tree algorithms: latency grows with log N instead of N.
#pragma once

#include <vector>

#include "src/algo/schedule.h"

namespace lockstep {

// A heap-shaped binary tree over positions 0..n-1 (position 0 the root).
struct TreeNode {
  int parent = -1;
  int children[2] = {-1, -1};
  int nchildren = 0;
};
TreeNode heapTreeNode(int position, int n);

// The double binary tree's second tree, as the rank at each heap position: the mirror of the
// first (rank p at position p), with swaps so that no two ranks are linked in both trees where
// that is possible (n >= 7): then the four lanes (each tree up and down) never share a link and
// pipeline independently.
std::vector<int> secondTree(int n);

// Double binary tree all-reduce: two complementary trees (a rank that is a leaf in one is
// interior in the other), each reducing then broadcasting half of the buffer, pipelined.
void doubleTreeAllReduce(int rank, int nranks, size_t count, Schedule* out);
// Pipelined binary-tree broadcast and reduce rooted at `root`.
void treeBroadcast(int rank, int nranks, int root, size_t count, Schedule* out);
void treeReduce(int rank, int nranks, int root, size_t count, Schedule* out);

}  // namespace lockstep
