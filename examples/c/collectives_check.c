/*
 * Every collective, knowing only <lockstep/lockstep.h>: each one alone, then all of them in one
 * group, then a non-blocking all-reduce, then all of it again on communicators split by rank
 * parity. Every element is checked. Start it with lockstep-run (any number of ranks up to ~100):
 *
 *   cc collectives_check.c $(pkg-config --cflags --libs lockstep) -o collectives_check
 *   lockstep-run -n 4 ./collectives_check
 */
#include <lockstep/lockstep.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT 1003

static int wrong = 0;

static void check(lockstepResult_t r, const char* what) {
  if (r != lockstepSuccess) {
    fprintf(stderr, "%s failed: %s: %s\n", what, lockstepGetErrorString(r), lockstepGetLastError(NULL));
    exit(2);
  }
}

static void expect(const char* what, const int32_t* got, int32_t (*want)(int, int, size_t), int rank, int n,
                   size_t count) {
  for (size_t i = 0; i < count; ++i) {
    if (got[i] != want(rank, n, i)) {
      fprintf(stderr, "rank %d: %s: element %zu is %d, expected %d\n", rank, what, i, (int)got[i],
              (int)want(rank, n, i));
      ++wrong;
      return;
    }
  }
}

/* Inputs and expected outputs, as functions of (this rank, size, element index). */
static int32_t arIn(int r, int n, size_t i) {
  (void)n;
  return (int32_t)(r + i);
}
static int32_t arOut(int r, int n, size_t i) {
  (void)r;
  return (int32_t)(n * i + n * (n - 1) / 2);
}
static int32_t rsOut(int r, int n, size_t i) { return (int32_t)(n * (r * COUNT + i) + n * (n - 1) / 2); }
static int32_t agIn(int r, int n, size_t i) {
  (void)n;
  return (int32_t)(r * 100000 + i);
}
static int32_t agOut(int r, int n, size_t j) {
  (void)r;
  (void)n;
  return (int32_t)((j / COUNT) * 100000 + j % COUNT);
}
static int32_t bcOut(int r, int n, size_t i) {
  (void)r;
  (void)n;
  return (int32_t)(5 * i + 1);
}
static int32_t srOut(int r, int n, size_t i) { return (int32_t)(((r + n - 1) % n) * 1000 + i); }
static int32_t a2aIn(int r, int n, size_t j) {
  (void)n;
  return (int32_t)(r * 1000000 + (j / COUNT) * 1000 + j % COUNT);
}
static int32_t a2aOut(int r, int n, size_t j) {
  (void)n;
  return (int32_t)((j / COUNT) * 1000000 + r * 1000 + j % COUNT);
}

struct Buffers {
  int32_t *ar, *arOut, *rs, *rsOut, *ag, *agOut, *bc, *red, *redOut, *snd, *rcv, *a2a, *a2aOut;
};

static void fill(int32_t* p, int32_t (*f)(int, int, size_t), int rank, int n, size_t count) {
  for (size_t i = 0; i < count; ++i) p[i] = f(rank, n, i);
}

static void prepare(struct Buffers* b, int rank, int n) {
  fill(b->ar, arIn, rank, n, COUNT);
  for (size_t j = 0; j < (size_t)n * COUNT; ++j) b->rs[j] = (int32_t)(rank + j);
  fill(b->ag, agIn, rank, n, COUNT);
  for (size_t i = 0; i < COUNT; ++i) b->bc[i] = rank == n - 1 ? (int32_t)(5 * i + 1) : -1;
  fill(b->red, arIn, rank, n, COUNT);
  for (size_t i = 0; i < COUNT; ++i) b->snd[i] = (int32_t)(rank * 1000 + i);
  fill(b->a2a, a2aIn, rank, n, (size_t)n * COUNT);
}

static void post(struct Buffers* b, lockstepComm_t comm, int rank, int n) {
  check(lockstepAllReduce(b->ar, b->arOut, COUNT, lockstepInt32, lockstepSum, comm, NULL), "allreduce");
  check(lockstepReduceScatter(b->rs, b->rsOut, COUNT, lockstepInt32, lockstepSum, comm, NULL), "reducescatter");
  check(lockstepAllGather(b->ag, b->agOut, COUNT, lockstepInt32, comm, NULL), "allgather");
  check(lockstepBroadcast(b->bc, b->bc, COUNT, lockstepInt32, n - 1, comm, NULL), "broadcast");
  check(lockstepReduce(b->red, b->redOut, COUNT, lockstepInt32, lockstepSum, 0, comm, NULL), "reduce");
  /* A ring exchange: in a group the order of send and receive does not matter. */
  check(lockstepGroupStart(), "group start");
  check(lockstepRecv(b->rcv, COUNT, lockstepInt32, (rank + n - 1) % n, comm, NULL), "recv");
  check(lockstepSend(b->snd, COUNT, lockstepInt32, (rank + 1) % n, comm, NULL), "send");
  check(lockstepGroupEnd(), "group end");
  check(lockstepAllToAll(b->a2a, b->a2aOut, COUNT, lockstepInt32, comm, NULL), "alltoall");
}

static void verify(struct Buffers* b, int rank, int n, const char* label) {
  struct {
    const char* name;
    const int32_t* got;
    int32_t (*want)(int, int, size_t);
    size_t count;
  } checks[] = {{"allreduce", b->arOut, arOut, COUNT},
                {"reducescatter", b->rsOut, rsOut, COUNT},
                {"allgather", b->agOut, agOut, (size_t)n * COUNT},
                {"broadcast", b->bc, bcOut, COUNT},
                {"reduce (root 0)", rank == 0 ? b->redOut : NULL, arOut, COUNT},
                {"sendrecv", b->rcv, srOut, COUNT},
                {"alltoall", b->a2aOut, a2aOut, (size_t)n * COUNT}};
  for (size_t k = 0; k < sizeof(checks) / sizeof(checks[0]); ++k) {
    char what[128];
    snprintf(what, sizeof(what), "%s %s", label, checks[k].name);
    if (checks[k].got) expect(what, checks[k].got, checks[k].want, rank, n, checks[k].count);
  }
}

static void runAll(lockstepComm_t comm, const char* label) {
  int rank, n;
  check(lockstepCommUserRank(comm, &rank), "rank");
  check(lockstepCommCount(comm, &n), "count");
  size_t big = (size_t)n * COUNT;
  struct Buffers b;
  int32_t** fields[] = {&b.ar,  &b.arOut,  &b.rs,  &b.rsOut, &b.ag,  &b.agOut, &b.bc,
                        &b.red, &b.redOut, &b.snd, &b.rcv,   &b.a2a, &b.a2aOut};
  for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); ++k) *fields[k] = calloc(big, sizeof(int32_t));

  /* One at a time. */
  prepare(&b, rank, n);
  post(&b, comm, rank, n);
  verify(&b, rank, n, label);

  /* All in one group: nothing runs before GroupEnd, everything is done after it. */
  prepare(&b, rank, n);
  memset(b.arOut, 0, COUNT * sizeof(int32_t));
  check(lockstepGroupStart(), "outer group start");
  post(&b, comm, rank, n);
  check(lockstepGroupEnd(), "outer group end");
  verify(&b, rank, n, label);

  /* Non-blocking. */
  lockstepRequest_t req;
  memset(b.arOut, 0, COUNT * sizeof(int32_t));
  check(lockstepIallReduce(b.ar, b.arOut, COUNT, lockstepInt32, lockstepSum, comm, &req), "iallreduce");
  check(lockstepWait(&req, -1), "wait");
  expect("non-blocking allreduce", b.arOut, arOut, rank, n, COUNT);

  for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); ++k) free(*fields[k]);
}

int main(void) {
  lockstepComm_t world, half;
  check(lockstepCommInitFromEnv(&world), "init");
  int rank, n;
  lockstepCommUserRank(world, &rank);
  lockstepCommCount(world, &n);
  runAll(world, "world");
  check(lockstepCommSplit(world, rank % 2, rank, &half), "split");
  runAll(half, rank % 2 ? "odd ranks" : "even ranks");
  check(lockstepCommDestroy(half), "destroy half");
  check(lockstepBarrier(world, NULL), "barrier");
  check(lockstepCommDestroy(world), "destroy world");
  if (rank == 0) printf("collectives_check: %d ranks, every collective alone, grouped and split, %d wrong\n", n, wrong);
  return wrong ? 1 : 0;
}
