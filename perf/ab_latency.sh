#!/usr/bin/env bash
# Paired A/B comparison of the 8 B all-reduce latency of two builds, e.g. before and after a change
# on the hot path:
#   perf/ab_latency.sh /path/to/old/build /path/to/new/build [runs] [nranks]
# Each run is `allreduce_perf -b 8 -e 8 -n 50000` under that build's lockstep-run. The two builds
# run back to back in every round, in alternating order (A B, B A, ...), and the ratio printed is
# the median over rounds of new/old within the round, so the VM's phases fall on both alike.
set -euo pipefail
old=$1 new=$2 runs=${3:-12} n=${4:-2}
one() {
  "$1/lockstep-run" -n "$n" "$1/perf/allreduce_perf" -b 8 -e 8 -n 50000 -w 5000 -c 0 |
    awk -v r="$2" -v b="$1" '$2==8 {print r, b, $7, $11}'
}
for i in $(seq "$runs"); do
  if ((i % 2)); then one "$old" "$i"; one "$new" "$i"; else one "$new" "$i"; one "$old" "$i"; fi
done | python3 -c "
import sys, statistics as st
old, new = sys.argv[1], sys.argv[2]
d = {}
for line in sys.stdin:
    r, b, oop, ip = line.split()
    d.setdefault(b, {})[r] = (float(oop), float(ip))
for b in (old, new):
    v = d[b].values()
    print('%s: median out-of-place %.3f us, in-place %.3f us over %d runs' % (b, st.median(x[0] for x in v), st.median(x[1] for x in v), len(v)))
rounds = sorted(set(d[old]) & set(d[new]))
for i, name in ((0, 'out-of-place'), (1, 'in-place')):
    print('new/old time, %s: median %.3f over %d paired rounds' % (name, st.median(d[new][r][i] / d[old][r][i] for r in rounds), len(rounds)))
" "$old" "$new"
