#!/usr/bin/env bash
# Paired A/B comparison of two builds' all-reduce times at every size of a sweep, e.g. before and
# after a change (perf/ab_latency.sh does the same for 8 B only):
#   perf/ab_sizes.sh /path/to/old/build /path/to/new/build [runs] [nranks] [allreduce_perf args...]
#   ABENV=LOCKSTEP_TRANSPORTS=socket perf/ab_sizes.sh old new 8 2 -b 64K -e 64M -f 4
# Each round runs both builds' `allreduce_perf` back to back, in alternating order (A B, B A,
# ...); per size it prints both medians and the median over rounds of new/old within the round
# (the VM's phases then fall on both alike), with every round's ratio.
set -euo pipefail
old=$1 new=$2 runs=${3:-8} n=${4:-2}
shift $(($# < 4 ? $# : 4))
one() {
  local b=$1 r=$2
  shift 2
  # shellcheck disable=SC2086  # ABENV: words of NAME=value
  env ${ABENV:-} "$b/lockstep-run" -n "$n" "$b/perf/allreduce_perf" "$@" -c 0 |
    awk -v b="$b" -v r="$r" '/^\[0\] +[0-9]/ {print r, b, $2, $7}'
}
for i in $(seq "$runs"); do
  if ((i % 2)); then one "$old" "$i" "$@"; one "$new" "$i" "$@"; else one "$new" "$i" "$@"; one "$old" "$i" "$@"; fi
done | python3 -c "
import sys, statistics as st
old, new = sys.argv[1], sys.argv[2]
d = {}
for line in sys.stdin:
    r, b, s, t = line.split()
    d[(r, b, int(s))] = float(t)
sizes = sorted({k[2] for k in d})
rounds = sorted({k[0] for k in d})
print('%10s %10s %10s %8s %s' % ('size', 'old us', 'new us', 'new/old', 'per round'))
for s in sizes:
    both = [r for r in rounds if (r, old, s) in d and (r, new, s) in d]
    ratios = [d[(r, new, s)] / d[(r, old, s)] for r in both]
    print('%10d %10.2f %10.2f %8.3f %s' % (s, st.median(d[(r, old, s)] for r in both),
          st.median(d[(r, new, s)] for r in both), st.median(ratios), ' '.join('%.2f' % x for x in ratios)))
" "$old" "$new"
