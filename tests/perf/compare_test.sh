#!/usr/bin/env bash
# perf/compare end to end: real Lockstep runs against stand-in anchors whose figures are fixed,
# so the verdicts are known. An anchor far slower than anything must give PASS and exit 0, one
# far faster MISSED and exit 1; the same for the memcpy target through a stand-in membw probe.
#   tests/perf/compare_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$1 src=$2
command -v python3 >/dev/null || { echo "SKIPPED: python3 is not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The anchors' interface (../shared/anchors/anchor.sh): build, membw, and <name> <nranks> -b -e -f.
# FAKE_US is every size's time; the busbw follows from it as the anchors' drivers compute it.
cat >"$tmp/anchor.sh" <<'SH'
#!/bin/sh
cmd=$1; shift
case "$cmd" in
build) exit 0 ;;
membw) printf 'memcpy (bytes copied)  2  1.000  %s\n' "${FAKE_MEMBW:?}" ;;
mpi|mpi-tcp|gloo)
  shift
  b=8 e=8 f=2
  while [ $# -gt 1 ]; do
    case "$1" in -b) b=$2 ;; -e) e=$2 ;; -f) f=$2 ;; esac
    shift 2
  done
  awk -v b="$b" -v e="$e" -v f="$f" -v us="${FAKE_US:?}" 'BEGIN {
    print "# stand-in anchor"
    for (s = b; s <= e; s *= f) {
      bw = s / (us * 1e-6) / 1e9
      printf "%13d %14d %7s %7s %6d %11.3f %8.3f %8.3f %7d %7d\n", s, s / 4, "float", "sum", -1, us, bw, bw, 0, 10
    }
  }' ;;
*) exit 2 ;;
esac
SH
chmod +x "$tmp/anchor.sh"

fail=0
# expect NAME WANT_RC PATTERN -- perf/compare args...; the pattern must appear in the output.
expect() {
  local name=$1 want=$2 pattern=$3
  shift 4
  local out rc
  out=$(LOCKSTEP_ANCHORS="$tmp" "$src/perf/compare" --build "$build" --no-build-anchors --no-plot \
        --out "$tmp/out" "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ] || ! grep -q -- "$pattern" <<<"$out"; then
    echo "FAIL: $name: exit $rc (want $want), pattern '$pattern'"
    echo "$out"
    fail=1
  else
    echo "ok: $name"
  fi
}

# A stand-in OpenMPI taking a second per call: every 2-rank target from 8 B to 64 KiB is met.
FAKE_US=1000000 expect "slow anchor, per size" 0 "PASS >=1.0x mpi ok" -- -b 8 -e 64K -f 8192 --runs 2
grep -q "^65536," "$tmp/out/compare-allreduce-shm-2ranks.csv" || { echo "FAIL: no 64 KiB row in the CSV"; fail=1; }
FAKE_US=1000000 expect "slow anchor, 8 B" 0 "interleaved per size" -- -b 8 -e 8 --runs 2
FAKE_US=1000000 expect "slow anchors, sockets" 0 ">=3.0x gloo ok, >=1.0x mpi-tcp ok" -- --transport socket \
  -b 64K -e 64K --runs 1
FAKE_US=1000000 expect "slow anchor, whole sweeps" 0 "interleaved per sweep" -- -b 8 -e 64K -f 8192 --runs 2 \
  --interleave sweep
# One taking a nanosecond: the 8 B latency target and the bandwidth one are missed.
FAKE_US=0.001 expect "fast anchor" 1 "<= mpi time MISSED" -- -b 8 -e 64K -f 8192 --runs 2
FAKE_US=0.001 expect "fast anchor, bandwidth" 1 ">=1.0x mpi MISSED" -- -b 64K -e 64K --runs 2
# 16 MiB: 2x OpenMPI and 0.2x the memcpy rate probed beside it.
FAKE_US=1000000 FAKE_MEMBW=0.001 expect "memcpy target met" 0 ">=0.2x memcpy ok" -- -b 16M -e 16M --runs 1
FAKE_US=1000000 FAKE_MEMBW=1000000 expect "memcpy target missed" 1 ">=0.2x memcpy MISSED" -- -b 16M -e 16M --runs 1
exit $fail
