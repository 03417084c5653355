#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and runs each for a
# bounded time. `make fuzz` runs 60 s per target; `make test` runs a 5 s smoke per target.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build=${FUZZ_BUILD:-build-fuzz}
command -v clang++ >/dev/null || { echo "clang++ not installed: skipping fuzzing"; exit 77; }
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOCKSTEP_FUZZ=ON -DLOCKSTEP_WITH_CUDA=OFF \
  -DLOCKSTEP_BUILD_TESTS=OFF -DLOCKSTEP_BUILD_PERF=OFF >/dev/null
targets="unique_id handshake socket_frames bootstrap config control peer_table"  # as CMakeLists.txt's LOCKSTEP_FUZZ list
# shellcheck disable=SC2046
cmake --build "$build" -j"$(nproc)" --target $(printf 'fuzz_%s ' $targets) >/dev/null
status=0
for target in $targets; do
  corpus="$build/corpus/$target"
  mkdir -p "$corpus"
  log="$build/fuzz_$target.log"
  # -len_control=0: long inputs from the start. A target that runs slowly never grew its inputs
  # past 43 bytes, short of one whole 48-byte hello (helper-94).
  if "$build/fuzz_$target" -max_total_time="$seconds" -max_len=4096 -len_control=0 -timeout=10 \
      -print_final_stats=1 "$corpus" >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    # A target that runs fewer than 50 inputs a second is stuck, not fuzzing: the bootstrap's
    # target once waited out a deadline per input (18 a second) and reported "no crash".
    if [ "${runs:-0}" -lt $((seconds * 50)) ]; then
      echo "fuzz_$target: FAILED: only ${runs:-0} executions in ${seconds} s (see $log)"
      status=1
      continue
    fi
    echo "fuzz_$target: $runs executions in ${seconds} s, no crash"
  else
    echo "fuzz_$target: FAILED (see $log)"
    tail -40 "$log"
    status=1
  fi
done
exit $status
