#!/usr/bin/env bash
# perf/compare end to end: real Lockstep runs against stand-in anchors whose figures are fixed,
# so the verdicts are known. An anchor far slower than anything must give PASS and exit 0, one
# far faster MISSED and exit 1; the same for the memcpy target through a stand-in membw probe.
# Then a stand-in Lockstep, with figures of its own, checks what needs both sides fixed: that
# targets are decided on the rounds' paired ratios, and when tcp_ceiling (alone, and -m) labels a
# target.
#   tests/perf/compare_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$1 src=$2
command -v python3 >/dev/null || { echo "SKIPPED: python3 is not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The anchors' interface (../shared/anchors/anchor.sh): build, membw, and <name> <nranks> -b -e -f.
# FAKE_US is every size's time, or one time per run ("9 90 90": the first run 9 us, the second
# 90, ...); the busbw follows from it as the anchors' drivers compute it. table.sh prints such a
# table for the program named by its first argument, counting that program's runs in $tmp.
cat >"$tmp/table.sh" <<SH
#!/bin/sh
name=\$1 us_list=\$2; shift 2
b=8 e=8 f=2
while [ \$# -gt 1 ]; do
  case "\$1" in -b) b=\$2 ;; -e) e=\$2 ;; -f) f=\$2 ;; esac
  shift 2
done
n=\$(cat "$tmp/runs.\$name" 2>/dev/null || echo 0)
echo \$((n + 1)) >"$tmp/runs.\$name"
awk -v b="\$b" -v e="\$e" -v f="\$f" -v list="\$us_list" -v run="\$n" 'BEGIN {
  k = split(list, us, " ")
  t = us[run % k + 1]
  print "# stand-in table"
  for (s = b; s <= e; s *= f) {
    bw = s / (t * 1e-6) / 1e9
    printf "%13d %14d %7s %7s %6d %11.3f %8.3f %8.3f %7d %7d\\n", s, s / 4, "float", "sum", -1, t, bw, bw, 0, 10
  }
}'
SH
cat >"$tmp/anchor.sh" <<SH
#!/bin/sh
cmd=\$1; shift
case "\$cmd" in
build) exit 0 ;;
membw) [ -z "\${FAKE_MEMBW1:-}" ] || printf 'memcpy (bytes copied)  1  1.000  %s\\n' "\$FAKE_MEMBW1"
       printf 'memcpy (bytes copied)  2  1.000  %s\\n' "\${FAKE_MEMBW:?}" ;;
mpi|mpi-tcp|gloo) shift; exec sh "$tmp/table.sh" "\$cmd" "\${FAKE_US:?}" "\$@" ;;
*) exit 2 ;;
esac
SH
chmod +x "$tmp/anchor.sh"

fail=0
# expect NAME WANT_RC PATTERN -- perf/compare args...; the pattern must appear in the output (and
# $ABSENT, if set, must not).
expect() {
  local name=$1 want=$2 pattern=$3
  shift 4
  local out rc
  rm -f "$tmp"/runs.*
  out=$(LOCKSTEP_ANCHORS="$tmp" "$src/perf/compare" --build "${BUILD:-$build}" --no-build-anchors --no-plot \
        --out "$tmp/out" "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ] || ! grep -q -- "$pattern" <<<"$out" ||
     { [ -n "${ABSENT:-}" ] && grep -q -- "$ABSENT" <<<"$out"; }; then
    echo "FAIL: $name: exit $rc (want $want), pattern '$pattern'${ABSENT:+, and not '$ABSENT'}"
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
# Two threads copying 2x one: the vCPUs were on separate L3s, and the run says so beside the size.
FAKE_US=1000000 FAKE_MEMBW=0.002 FAKE_MEMBW1=0.001 expect "separate L3s" 0 "separate L3s" -- -b 16M -e 16M --runs 1
ABSENT="separate L3s" FAKE_US=1000000 FAKE_MEMBW=0.0012 FAKE_MEMBW1=0.001 expect "shared L3" 0 "1.20  PASS" -- \
  -b 16M -e 16M --runs 1

# Targets are decided on the rounds' paired ratios. A stand-in Lockstep (a build whose launcher
# prints a table) runs 10, 100, 10 us and the anchor 9, 90, 90 us: 1.1x slower in every round,
# though the medians (10 against 90) would read 9x faster.
mkdir -p "$tmp/fake-build"
cat >"$tmp/fake-build/lockstep-run" <<SH
#!/bin/sh
shift 3  # -n N driver
exec sh "$tmp/table.sh" lockstep "\$FAKE_LOCKSTEP_US" "\$@"
SH
mkdir -p "$tmp/fake-build/perf"
cat >"$tmp/fake-build/perf/tcp_ceiling" <<SH
#!/bin/sh
if [ "\$1" = -m ]; then  # the memory mode: tcp-memory's figures (fast unless set)
  shift 3  # -m -r N
  exec sh "$tmp/table.sh" tcp-memory "\${FAKE_MEMORY_US:-1}" "\$@"
fi
shift 2  # -r N
exec sh "$tmp/table.sh" tcp-ceiling "\$FAKE_CEILING_US" "\$@"
SH
chmod +x "$tmp/fake-build/lockstep-run" "$tmp/fake-build/perf/tcp_ceiling"
BUILD="$tmp/fake-build" FAKE_LOCKSTEP_US="10 100 10" FAKE_US="9 90 90" expect "paired rounds, slower in each" 1 \
  "0.90  FAIL >=1.0x mpi MISSED" -- -b 64K -e 64K --runs 3
BUILD="$tmp/fake-build" FAKE_LOCKSTEP_US="9 90 90" FAKE_US="10 100 10" expect "paired rounds, faster in each" 0 \
  "1.11  PASS >=1.0x mpi ok" -- -b 64K -e 64K --runs 3
# The same at 8 B, where the ratio is of times.
BUILD="$tmp/fake-build" FAKE_LOCKSTEP_US="10 100 10" FAKE_US="9 90 90" expect "paired rounds, 8 B" 1 \
  "<= mpi time MISSED" -- -b 8 -e 8 --runs 3
# An anchor faster than tcp_ceiling shows that figure bounds nothing: a target missed there is
# not called above it. Where it holds, 3x a fast Gloo is; and where both ceilings hold and 3x
# Gloo is above both, the lower one is named.
BUILD="$tmp/fake-build" FAKE_LOCKSTEP_US=330 FAKE_US=250 FAKE_CEILING_US=320 expect "an anchor beats the ceiling" 1 \
  ">=3.0x gloo MISSED, >=1.0x mpi-tcp MISSED" -- --transport socket -b 1M -e 1M --runs 1
BUILD="$tmp/fake-build" FAKE_LOCKSTEP_US=300 FAKE_US=250 FAKE_CEILING_US=240 expect "the ceiling holds" 1 \
  ">=3.0x gloo (above tcp-ceiling) MISSED, >=1.0x mpi-tcp MISSED" -- --transport socket -b 1M -e 1M --runs 1
BUILD="$tmp/fake-build" FAKE_LOCKSTEP_US=300 FAKE_US=250 FAKE_CEILING_US=200 FAKE_MEMORY_US=240 expect \
  "both ceilings hold" 1 ">=3.0x gloo (above tcp-memory) MISSED" -- --transport socket -b 1M -e 1M --runs 1
ABSENT="(above" BUILD="$tmp/fake-build" FAKE_LOCKSTEP_US=300 FAKE_US=250 FAKE_CEILING_US=10 FAKE_MEMORY_US=320 \
  expect "Lockstep beats the memory ceiling" 1 "# tcp-memory read below lockstep and mpi-tcp and gloo at 1 MiB" -- --transport socket \
  -b 1M -e 1M --runs 1
exit $fail
