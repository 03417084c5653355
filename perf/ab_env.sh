#!/usr/bin/env bash
# Interleaved A/B comparison of one build under two environments (e.g. default vs deterministic
# mode): median out-of-place all-reduce time per size and the ratio B/A.
#   perf/ab_env.sh BUILD NRANKS RUNS "ENV_A" "ENV_B" [allreduce_perf args]
#   perf/ab_env.sh build 4 5 "" "LOCKSTEP_DETERMINISTIC=1" -b 1M -e 256M -f 4
set -euo pipefail
build=$1 n=$2 runs=$3 envA=$4 envB=$5
shift 5
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(-b 1M -e 256M -f 4)
for i in $(seq "$runs"); do
  for v in A B; do
    e=$envA
    [ $v = B ] && e=$envB
    env $e "$build/lockstep-run" -n "$n" "$build/perf/allreduce_perf" "${args[@]}" -c 0 |
      awk -v v=$v '/^\[0\] +[0-9]/ {print v, $2, $7}'
  done
done | python3 -c "
import sys, statistics as st
d = {}
for line in sys.stdin:
    v, size, t = line.split()
    d.setdefault((v, int(size)), []).append(float(t))
print('%12s %12s %12s %8s' % ('size', 'A (us)', 'B (us)', 'B/A'))
for s in sorted({s for (_, s) in d}):
    a, b = st.median(d[('A', s)]), st.median(d[('B', s)])
    print('%12d %12.3f %12.3f %8.3f' % (s, a, b, b / a))
"
