#!/usr/bin/env bash
# Is the tuner's pick as fast as the best forced algorithm? For each rank count, runs the
# all-reduce sweep (8 B to 256 MiB, factor 2, out-of-place, unchecked) with the tuner and with
# every algorithm forced, interleaved, RUNS times, and prints per size the median time of each,
# the tuner's pick (from its INFO log) and tuner/best.
#   perf/tuner_check.sh BUILD [RUNS] [NRANKS...]      e.g. perf/tuner_check.sh build 5 2 4
set -euo pipefail
build=$1 runs=${2:-5}
shift 2 || shift $#
ranks=("$@")
[ ${#ranks[@]} -eq 0 ] && ranks=(2 4)
out=$(mktemp -d)
algos=(tuned ring tree recursive_doubling rabenseifner direct)
for n in "${ranks[@]}"; do
  for i in $(seq "$runs"); do
    for a in "${algos[@]}"; do
      args=(-b 8 -e 256M -f 2 -c 0)
      [ "$a" != tuned ] && args+=(-a "$a")
      LOCKSTEP_DEBUG=INFO "$build/lockstep-run" -n "$n" "$build/perf/allreduce_perf" "${args[@]}" \
        >"$out/$n.$a.$i" 2>&1
    done
  done
done
python3 "$(dirname "$0")/tuner_table.py" "$out" "${algos[*]}" "${ranks[*]}"
echo "raw output: $out"
