#!/usr/bin/env bash
# System calls in the steady state of a repeated all-reduce (issue 5): runs tests' steady_check
# on 2 ranks under strace, one trace file per thread, and counts the system calls the thread that
# calls lockstepAllReduce makes between its markers (after a warm-up of the same length), per size
# and transport. Other threads (the health watchdog: a heartbeat per peer every 200 ms) tick with
# time, not with calls, and are not counted. Over shm the only calls are waits that yield the CPU
# to a late peer (sched_yield, futex); over sockets the data itself moves by sendmsg/recv.
#   perf/steady.sh [BUILD] [ITERS]       e.g. perf/steady.sh build 1000
set -euo pipefail
build=${1:-build} iters=${2:-1000}
command -v strace >/dev/null || { echo "steady.sh: strace is needed (apt-get install strace)" >&2; exit 2; }
for transport in shm socket; do
  out=$(mktemp -d)
  LOCKSTEP_TRANSPORTS=$transport strace -qq -ff -o "$out/t" \
    "$build/lockstep-run" -n 2 "$build/tests/steady_check" --iters "$iters" --sizes 8,65536,1048576 --mark \
    >"$out/stdout" 2>&1 || { cat "$out/stdout"; exit 1; }
  echo "## $transport: system calls per $iters all-reduces on the calling thread of each of 2 ranks"
  python3 - "$out" <<'PY'
import collections, glob, re, sys
out = sys.argv[1]
calls = collections.defaultdict(collections.Counter)  # (rank file, size) -> syscall counts
callers = set()
spans = {}  # file -> [(size, start_time, end_time)]
for path in glob.glob(f"{out}/t.*"):
    size = None
    for line in open(path, errors="replace"):
        m = re.match(r'write\(-1, "steady-begin (\d+)"', line)
        if m:
            size = int(m.group(1)); callers.add(path); continue
        if line.startswith('write(-1, "steady-end"'):
            size = None; continue
        if size is not None:
            name = re.match(r"(\w+)\(", line)
            if name and name.group(1) != "getrusage":  # the harness's own page-fault reading
                calls[(path, size)][name.group(1)] += 1
for (path, size), c in sorted(calls.items(), key=lambda kv: kv[0][1]):
    print(f"  {size:>8} B, thread {path.rsplit('.', 1)[1]}: {sum(c.values())} calls  {dict(c.most_common(5))}")
sizes = sorted({s for (_, s) in calls})
for path in sorted(callers):
    for s in [8, 65536, 1048576]:
        if (path, s) not in calls:
            print(f"  {s:>8} B, thread {path.rsplit('.', 1)[1]}: 0 calls")
PY
  grep -h "steady_check:" "$out/stdout" | sed 's/^/  /'
  rm -rf "$out"
done
