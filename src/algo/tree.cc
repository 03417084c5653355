// Trees. Terms: a heap-shaped binary tree puts position p's children at 2p+1 and 2p+2, so its
// depth is log2(N). Reduce: leaves send their (scaled) input up; an interior node combines what
// its children send with its own input and sends the partial result up; the root finishes it.
// Broadcast: the root sends down; interior nodes receive, keep a copy and forward to their
// children at once. Everything is cut into slices that flow through the tree in a pipeline.
//
// The double binary tree (as in NCCL) runs two such trees, each carrying half of the buffer: tree
// A over ranks in order (leaves: the upper half of the ranks), tree B over ranks roughly in
// reverse (leaves: the lower half; see secondTree). Each rank is a leaf in one tree and interior
// in the other, so the send and receive load is balanced. Each tree's up and down halves run as
// lanes of their own, so slices stream up and down both trees at once. Each value is reduced
// once, at its tree's root, then broadcast: every rank ends bit-identical.
#include "src/algo/tree.h"

#include <utility>
#include <vector>

#include "src/algo/ring_math.h"

namespace lockstep {
namespace {

Step make(Prim prim, int sendPeer, int recvPeer, uint32_t src, Range r, bool finish = false) {
  Step s;
  s.prim = prim;
  s.sendPeer = sendPeer;
  s.recvPeer = recvPeer;
  s.src = src;
  s.dst = kOutput;
  s.srcOffset = s.dstOffset = r.offset;
  s.count = r.count;
  s.finish = finish;
  return s;
}

// The reduce half of a tree, for the node at `pos`; toRank maps positions to ranks. The root's
// result stays in its output (all-reduce and reduce); the caller broadcasts it.
void reduceUp(int pos, const std::vector<int>& toRank, Range r, Schedule* out) {
  const int n = static_cast<int>(toRank.size());
  TreeNode t = heapTreeNode(pos, n);
  const int parent = t.parent >= 0 ? toRank[t.parent] : -1;
  if (t.nchildren == 0) {
    if (parent < 0) {
      out->add(make(Prim::kCopy, -1, -1, kInput, r, /*finish=*/true));  // a tree of one
    } else {
      out->add(make(Prim::kSend, parent, -1, kInput, r));
    }
    return;
  }
  // First child: combine with my raw input (scaled once for a floating avg).
  const int c0 = toRank[t.children[0]];
  if (t.nchildren == 1) {
    out->add(parent >= 0 ? make(Prim::kRecvReduceSend, parent, c0, kInput, r)
                         : make(Prim::kRecvReduceCopy, -1, c0, kInput, r, /*finish=*/true));
    return;
  }
  out->add(make(Prim::kRecvReduceCopy, -1, c0, kInput, r));
  const int c1 = toRank[t.children[1]];
  out->add(parent >= 0 ? make(Prim::kRecvReduceSend, parent, c1, kOutput, r)
                       : make(Prim::kRecvReduceCopy, -1, c1, kOutput, r, /*finish=*/true));
}

// The broadcast half: the root's output reaches every node's output.
void broadcastDown(int pos, const std::vector<int>& toRank, Range r, uint32_t rootSrc, Schedule* out) {
  const int n = static_cast<int>(toRank.size());
  TreeNode t = heapTreeNode(pos, n);
  if (t.parent < 0) {
    if (rootSrc != kOutput) out->add(make(Prim::kCopy, -1, -1, rootSrc, r));
    for (int i = 0; i < t.nchildren; ++i) out->add(make(Prim::kSend, toRank[t.children[i]], -1, kOutput, r));
    return;
  }
  const int parent = toRank[t.parent];
  if (t.nchildren == 0) {
    out->add(make(Prim::kRecv, -1, parent, kOutput, r));
    return;
  }
  out->add(make(Prim::kRecvCopySend, toRank[t.children[0]], parent, kOutput, r));
  if (t.nchildren == 2) out->add(make(Prim::kSend, toRank[t.children[1]], -1, kOutput, r));
}

// Positions to ranks for a tree rooted at `root`, ranks in order from there.
std::vector<int> rotated(int n, int root) {
  std::vector<int> toRank(static_cast<size_t>(n));
  for (int p = 0; p < n; ++p) toRank[static_cast<size_t>(p)] = (p + root) % n;
  return toRank;
}

int positionOf(const std::vector<int>& toRank, int rank) {
  for (size_t p = 0; p < toRank.size(); ++p) {
    if (toRank[p] == rank) return static_cast<int>(p);
  }
  return -1;
}

}  // namespace

std::vector<int> secondTree(int n) {
  // Tree A is the heap over ranks in order: ranks a and b are linked iff one is the other's heap
  // parent. Start tree B as its mirror (rank n-1-p at position p), which makes the two
  // complementary (for even n exactly; for odd n one rank is interior in both).
  auto linkedInA = [](int a, int b) { return (b > 0 && a == (b - 1) / 2) || (a > 0 && b == (a - 1) / 2); };
  std::vector<int> toRank(static_cast<size_t>(n));
  for (int p = 0; p < n; ++p) toRank[static_cast<size_t>(p)] = n - 1 - p;
  auto at = [&](int p) { return toRank[static_cast<size_t>(p)]; };
  // Edges of B as (child position): each conflicts if A links the same two ranks.
  auto conflict = [&](int p) { return p > 0 && linkedInA(at(p), at((p - 1) / 2)); };
  // The B edges that touch positions p or q (a swap changes only those).
  auto around = [&](int p, int q) {
    const int edges[6] = {p, 2 * p + 1, 2 * p + 2, q, 2 * q + 1, 2 * q + 2};
    int count = 0;
    for (int i = 0; i < 6; ++i) {
      bool seen = false;
      for (int j = 0; j < i; ++j) seen |= edges[j] == edges[i];
      if (!seen && edges[i] < n) count += conflict(edges[i]);
    }
    return count;
  };
  // The mirror shares a few edges with A. Fix each by swapping its node with another position of
  // the same kind (leaf or interior: complementarity stays) where that removes the conflict
  // without making one nearby; deterministic, so every rank builds the same tree.
  for (int round = 0; round < 64; ++round) {
    int bad = -1;
    for (int p = 1; p < n && bad < 0; ++p) {
      if (conflict(p)) bad = p;
    }
    if (bad < 0) break;
    // Either end of the shared edge may move; try the child first, then its parent.
    bool fixed = false;
    for (int p : {bad, (bad - 1) / 2}) {
      const bool leaf = 2 * p + 1 >= n;
      for (int q = 1; q < n && !fixed; ++q) {
        if (q == p || (2 * q + 1 >= n) != leaf) continue;
        const int before = around(p, q);
        std::swap(toRank[static_cast<size_t>(p)], toRank[static_cast<size_t>(q)]);
        if (around(p, q) < before) {
          fixed = true;
        } else {
          std::swap(toRank[static_cast<size_t>(p)], toRank[static_cast<size_t>(q)]);
        }
      }
      if (fixed) break;
    }
    if (!fixed) break;  // small n: the lanes that share a link are merged below
  }
  return toRank;
}

TreeNode heapTreeNode(int p, int n) {
  TreeNode t;
  t.parent = p == 0 ? -1 : (p - 1) / 2;
  for (int c : {2 * p + 1, 2 * p + 2}) {
    if (c < n) t.children[t.nchildren++] = c;
  }
  return t;
}

void doubleTreeAllReduce(int rank, int nranks, size_t count, Schedule* out) {
  if (count == 0) return;
  // Four candidate lanes: tree A up, A down, B up, B down. Up and down run as separate lanes so
  // slices stream up and down at once (a rank does not wait for slice j to come back down before
  // sending slice j+1 up). A root keeps both in one lane: its down sends read what its up steps
  // wrote.
  const Range half[2] = {chunkRange(count, 2, 0), chunkRange(count, 2, 1)};  // on grains (ring_math.h)
  const std::vector<int> first = rotated(nranks, 0), second = secondTree(nranks);
  std::vector<Step> lanes[4];
  for (int tree = 0; tree < 2; ++tree) {
    if (half[tree].count == 0) continue;
    const std::vector<int>& toRank = tree == 0 ? first : second;
    const int pos = positionOf(toRank, rank);
    Schedule up, down;
    reduceUp(pos, toRank, half[tree], &up);
    broadcastDown(pos, toRank, half[tree], kOutput, &down);
    std::vector<Step>& u = lanes[2 * tree];
    std::vector<Step>& d = heapTreeNode(pos, nranks).parent < 0 ? u : lanes[2 * tree + 1];
    u.insert(u.end(), up.steps.begin(), up.steps.end());
    d.insert(d.end(), down.steps.begin(), down.steps.end());
  }
  // Two lanes must never use the same directed link (their messages would interleave in no agreed
  // order), and the trees may share an edge: merge such lanes. Both ends of a link see the same
  // two lanes on it and merge them, keeping the order A up, A down, B up, B down in each slice.
  auto links = [&](const std::vector<Step>& lane) {
    std::vector<std::pair<int, int>> l;  // (from, to)
    for (const Step& s : lane) {
      if (s.sendPeer >= 0) l.push_back({rank, s.sendPeer});
      if (s.recvPeer >= 0) l.push_back({s.recvPeer, rank});
    }
    return l;
  };
  int group[4] = {0, 1, 2, 3};
  auto find = [&](int x) {
    while (group[x] != x) x = group[x];
    return x;
  };
  for (int i = 0; i < 4; ++i) {
    for (int j = i + 1; j < 4; ++j) {
      bool shared = false;
      for (auto& a : links(lanes[i])) {
        for (auto& b : links(lanes[j])) shared |= a == b;
      }
      if (shared) group[find(j)] = find(i);
    }
  }
  for (int g = 0; g < 4; ++g) {
    for (int i = 0; i < 4; ++i) {
      if (find(i) != g) continue;
      for (const Step& s : lanes[i]) out->add(s);
    }
    out->endLane();
  }
}

void treeBroadcast(int rank, int nranks, int root, size_t count, Schedule* out) {
  if (count == 0) return;
  const std::vector<int> toRank = rotated(nranks, root);
  broadcastDown(positionOf(toRank, rank), toRank, Range{0, count}, kInput, out);
  out->endLane();
}

void treeReduce(int rank, int nranks, int root, size_t count, Schedule* out) {
  if (count == 0) return;
  const std::vector<int> toRank = rotated(nranks, root);
  reduceUp(positionOf(toRank, rank), toRank, Range{0, count}, out);
  out->endLane();
}

}  // namespace lockstep
