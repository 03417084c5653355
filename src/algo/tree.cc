// Trees. Terms: a heap-shaped binary tree puts position p's children at 2p+1 and 2p+2, so its
// depth is log2(N). Reduce: leaves send their (scaled) input up; an interior node combines what
// its children send with its own input and sends the partial result up; the root finishes it.
// Broadcast: the root sends down; interior nodes receive, keep a copy and forward to their
// children at once. Everything is cut into slices that flow through the tree in a pipeline.
//
// The double binary tree (as in NCCL) runs two such trees, each carrying half of the buffer: tree
// A over ranks in order (leaves: the upper half of the ranks), tree B over ranks in reverse
// (leaves: the lower half). Each rank is a leaf in one tree and interior in the other, so the
// send and receive load is balanced. Both trees share one lane, slice by slice (A then B), so
// links they share carry their messages in one agreed order. Each value is reduced once, at
// its tree's root, then broadcast: every rank ends bit-identical.
#include "src/algo/tree.h"

#include <utility>
#include <vector>

namespace lockstep {
namespace {

struct Range {
  size_t offset, count;
};

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

// The reduce half of a tree, for the node at `pos`; toRank maps positions to ranks. If `keep`,
// the root's result stays in the output (all-reduce and reduce); the caller broadcasts it.
void reduceUp(int pos, int n, int (*toRank)(int, int, int), int shift, Range r, Schedule* out) {
  TreeNode t = heapTreeNode(pos, n);
  auto rank = [&](int p) { return toRank(p, n, shift); };
  const int parent = t.parent >= 0 ? rank(t.parent) : -1;
  if (t.nchildren == 0) {
    if (parent < 0) {
      out->add(make(Prim::kCopy, -1, -1, kInput, r, /*finish=*/true));  // a tree of one
    } else {
      out->add(make(Prim::kSend, parent, -1, kInput, r));
    }
    return;
  }
  // First child: combine with my raw input (scaled once for a floating avg).
  const int c0 = rank(t.children[0]);
  if (t.nchildren == 1) {
    out->add(parent >= 0 ? make(Prim::kRecvReduceSend, parent, c0, kInput, r)
                         : make(Prim::kRecvReduceCopy, -1, c0, kInput, r, /*finish=*/true));
    return;
  }
  out->add(make(Prim::kRecvReduceCopy, -1, c0, kInput, r));
  const int c1 = rank(t.children[1]);
  out->add(parent >= 0 ? make(Prim::kRecvReduceSend, parent, c1, kOutput, r)
                       : make(Prim::kRecvReduceCopy, -1, c1, kOutput, r, /*finish=*/true));
}

// The broadcast half: the root's output reaches every node's output.
void broadcastDown(int pos, int n, int (*toRank)(int, int, int), int shift, Range r, uint32_t rootSrc, Schedule* out) {
  TreeNode t = heapTreeNode(pos, n);
  auto rank = [&](int p) { return toRank(p, n, shift); };
  if (t.parent < 0) {
    if (rootSrc != kOutput) out->add(make(Prim::kCopy, -1, -1, rootSrc, r));
    for (int i = 0; i < t.nchildren; ++i) out->add(make(Prim::kSend, rank(t.children[i]), -1, kOutput, r));
    return;
  }
  const int parent = rank(t.parent);
  if (t.nchildren == 0) {
    out->add(make(Prim::kRecv, -1, parent, kOutput, r));
    return;
  }
  out->add(make(Prim::kRecvCopySend, rank(t.children[0]), parent, kOutput, r));
  if (t.nchildren == 2) out->add(make(Prim::kSend, rank(t.children[1]), -1, kOutput, r));
}

int forward(int pos, int n, int shift) { return (pos + shift) % n; }
int backward(int pos, int n, int shift) { return (n - 1 - pos + shift) % n; }
int positionForward(int rank, int n, int shift) { return (rank - shift + n) % n; }
int positionBackward(int rank, int n, int shift) { return (n - 1 - rank + shift + n) % n; }

}  // namespace

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
  const Range half[2] = {{0, count / 2}, {count / 2, count - count / 2}};
  std::vector<Step> lanes[4];
  for (int tree = 0; tree < 2; ++tree) {
    if (half[tree].count == 0) continue;
    int pos = tree == 0 ? positionForward(rank, nranks, 0) : positionBackward(rank, nranks, 0);
    auto toRank = tree == 0 ? forward : backward;
    Schedule up, down;
    reduceUp(pos, nranks, toRank, 0, half[tree], &up);
    broadcastDown(pos, nranks, toRank, 0, half[tree], kOutput, &down);
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
  broadcastDown(positionForward(rank, nranks, root), nranks, forward, root, Range{0, count}, kInput, out);
  out->endLane();
}

void treeReduce(int rank, int nranks, int root, size_t count, Schedule* out) {
  if (count == 0) return;
  reduceUp(positionForward(rank, nranks, root), nranks, forward, root, Range{0, count}, out);
  out->endLane();
}

}  // namespace lockstep
