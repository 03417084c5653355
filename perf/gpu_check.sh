#!/bin/bash
# The GPU checks of the CUDA issue, in one run, for a machine with a GPU (none of them can run
# without one):
#   1. make test-gpu: tests/gpu (kernels against the CPU's; every collective x dtype x op on 1, 2
#      and 4 ranks sharing one GPU, over cuda_ipc and staged; groups; late streams; abort).
#   2. The float32 and bfloat16 sum kernels against cudaMemcpy device-to-device (traffic ratio,
#      target >= 0.90 at 64 and 256 MiB).
#   3. A 2-rank all-reduce of 256 MiB on one GPU (ranks as threads, -T 2) against the HBM bound,
#      over cuda_ipc (its log must say "cuda_ipc on") and staged; no wrong value in either.
#
# The bound: each rank must read its S-byte input and write its S-byte output, so two ranks on
# one GPU move at least 4S bytes through HBM (the FIFO slots, a few MiB, stay in L2). cudaMemcpy
# of S bytes moves 2S (read + write) at measured traffic rate T, so the all-reduce takes at least
# 4S / T, and its busbw (= algbw for 2 ranks) is at most T / 4. Target: busbw >= 0.8 * T / 4.
#
#   perf/gpu_check.sh [build dir]      (configures and builds with CUDA first)
set -uo pipefail  # a perf driver's exit 1 (wrong values) must not be lost in its tee
BUILD=${1:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build "$BUILD" -j"$(nproc)" >/dev/null || { echo "gpu_check: build failed"; exit 1; }
grep -q "LOCKSTEP_HAVE_CUDA:INTERNAL=ON" "$BUILD/CMakeCache.txt" || { echo "gpu_check: no CUDA in this build"; exit 1; }
command -v nvidia-smi >/dev/null && nvidia-smi -L
status=0

echo "== 1. make test-gpu"
(cd "$BUILD" && ctest -L gpu --output-on-failure --no-tests=error) || status=1

echo "== 2. reduction kernels vs cudaMemcpy"
json=$(mktemp)
"$BUILD/perf/cuda_kernels_bench" --benchmark_filter='memcpy|float32/sum|bfloat16/sum' \
  --benchmark_out="$json" --benchmark_out_format=json || status=1

echo "== 3. 2-rank all-reduce of 256 MiB on one GPU"
for ipc in 1 0; do
  LOCKSTEP_DEBUG=INFO LOCKSTEP_CUDA_IPC=$ipc "$BUILD/perf/allreduce_perf" -T 2 -m device -b 256M -e 256M -n 20 \
    -w 5 2>"$json.log$ipc" | tee "$json.ar$ipc" || status=1
  grep -h "cuda_ipc o[nf]" "$json.log$ipc" | head -n 2
done
grep -q "cuda_ipc on" "$json.log1" || { echo "gpu_check: LOCKSTEP_CUDA_IPC=1 did not run over cuda_ipc"; status=1; }

python3 - "$json" <<'PY' || status=1
import json, sys
path = sys.argv[1]
runs = {b["name"].split("/manual_time")[0]: b for b in json.load(open(path))["benchmarks"]}
ok = True
for size in ("64MiB", "256MiB"):
    copy = runs["memcpy/" + size]["traffic_GBps"]
    for key in ("float32/sum", "bfloat16/sum"):
        r = runs["reduce/%s/%s" % (key, size)]["traffic_GBps"] / copy
        print("%-14s %6s: %.2f of cudaMemcpy traffic (%.0f vs %.0f GB/s) %s"
              % (key, size, r, r * copy, copy, "ok" if r >= 0.9 else "BELOW 0.90"))
        ok &= r >= 0.9
bound = runs["memcpy/256MiB"]["traffic_GBps"] / 4
for ipc, name in (("1", "cuda_ipc"), ("0", "staged")):
    rows = [l.split() for l in open(path + ".ar" + ipc) if l.strip() and not l.startswith("#")]
    busbw = float(rows[0][7])  # out-of-place busbw (GB/s)
    wrong = (int(rows[0][8]), int(rows[0][12]))  # out-of-place and in-place #wrong
    if wrong != (0, 0):
        print("all-reduce 256 MiB, 2 ranks, %s: WRONG VALUES (%d out of place, %d in place)" % ((name,) + wrong))
        ok = False
    r = busbw / bound
    print("all-reduce 256 MiB, 2 ranks, %-8s: busbw %.1f GB/s = %.2f of the bound %.1f GB/s %s"
          % (name, busbw, r, bound, "ok" if r >= 0.8 or name == "staged" else "BELOW 0.80"))
    ok &= r >= 0.8 or name == "staged"
sys.exit(0 if ok else 1)
PY
echo "gpu_check: $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
