#!/usr/bin/env bash
# Interleaved A/B comparison of the 8 B all-reduce latency of two builds (medians), e.g. before
# and after a change on the hot path:
#   perf/ab_latency.sh /path/to/old/build /path/to/new/build [runs] [nranks]
# Each run is `allreduce_perf -b 8 -e 8 -n 50000` under that build's lockstep-run.
set -euo pipefail
old=$1 new=$2 runs=${3:-12} n=${4:-2}
for i in $(seq "$runs"); do
  for b in "$old" "$new"; do
    "$b/lockstep-run" -n "$n" "$b/perf/allreduce_perf" -b 8 -e 8 -n 50000 -w 5000 -c 0 |
      awk -v b="$b" '$2==8 {print b, $7, $11}'
  done
done | python3 -c "
import sys, statistics as st
d = {}
for line in sys.stdin:
    b, oop, ip = line.split()
    d.setdefault(b, []).append((float(oop), float(ip)))
for b, v in d.items():
    print('%s: median out-of-place %.3f us, in-place %.3f us over %d runs' % (b, st.median(x[0] for x in v), st.median(x[1] for x in v), len(v)))
"
