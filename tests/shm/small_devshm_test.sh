#!/usr/bin/env bash
# A /dev/shm too small for the job (Docker's default is 64 MiB): every rank's init must fail at
# once naming the same rank and "No space left on device", not each with whatever its own
# exchange met first (a segment unlinked as its creator gave up, a refused connection: before,
# only 1 to 4 of the ranks named the cause). Then a read-only one: both ranks say so, and that
# LOCKSTEP_TRANSPORTS=socket does without it. Ranks are started by hand, as torchrun or srun
# would, so that each one's own message is seen (lockstep-run stops the others at the first
# failure).
#
#   small_devshm_test.sh BUILD_DIR
#
# Needs root for a private mount namespace (unshare -m) with its own small /dev/shm; otherwise
# exits 77 (skipped) saying why. The machine's /dev/shm is never touched.
set -uo pipefail
build=$(cd "${1:?usage: small_devshm_test.sh BUILD_DIR}" && pwd)
perf=$build/perf/allreduce_perf
[ -x "$perf" ] || { echo "FAILED: $perf is not built"; exit 1; }
skip() { echo "SKIPPED: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "a private /dev/shm needs root"
command -v unshare >/dev/null || skip "no unshare command (apt-get install util-linux)"
unshare -m true 2>/dev/null || skip "this machine does not allow mount namespaces"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# 8 ranks, each needing 7 peers x 8 slots x 2 MiB = 112 MiB: 64 MiB holds part of one rank's.
unshare -m bash -c '
  set -u
  mount -t tmpfs -o size=64M tmpfs /dev/shm || exit 3
  port=$((20000 + $$ % 20000))
  for r in 0 1 2 3 4 5 6 7; do
    LOCKSTEP_RANK=$r LOCKSTEP_WORLD_SIZE=8 LOCKSTEP_ROOT=127.0.0.1:$port LOCKSTEP_TIMEOUT=30 \
      timeout 60 "$1" -b 8 -e 8 -n 1 -w 1 >"$2/rank$r" 2>&1 &
  done
  wait
  leftover=$(ls /dev/shm | wc -l)
  echo "$leftover" >"$2/leftover"
' _ "$perf" "$out"
rc=$?
[ $rc -eq 3 ] && skip "cannot mount a tmpfs on /dev/shm in a mount namespace"
failed=0
culprit=""
for r in 0 1 2 3 4 5 6 7; do
  text=$(cat "$out/rank$r")
  if ! grep -q "No space left on device" <<<"$text"; then
    echo "FAILED: rank $r does not name the full /dev/shm:"; echo "$text"; failed=1; continue
  fi
  # Every rank names the same rank (its own failure, or a peer's "rank R (host:pid) could not").
  who=$(grep -o "rank [0-9]* ([^)]*) could not create shared memory" <<<"$text" | head -1 | cut -d' ' -f2)
  [ -n "$who" ] || who=$r
  [ -z "$culprit" ] && culprit=$who
  if [ "$who" != "$culprit" ]; then
    echo "FAILED: rank $r names rank $who, rank 0 named rank $culprit:"; echo "$text"; failed=1
  fi
done
if [ "$(cat "$out/leftover" 2>/dev/null)" != "0" ]; then
  echo "FAILED: segments left in the private /dev/shm: $(cat "$out/leftover" 2>/dev/null)"; failed=1
fi
[ $failed -eq 0 ] && echo "PASSED: all 8 ranks name rank $culprit and the full /dev/shm; nothing left in it"
# A read-only /dev/shm: every rank says so, and how to do without it.
unshare -m bash -c '
  mount -t tmpfs -o ro,size=1M tmpfs /dev/shm || exit 3
  port=$((20000 + ($$ + 7) % 20000))
  for r in 0 1; do
    LOCKSTEP_RANK=$r LOCKSTEP_WORLD_SIZE=2 LOCKSTEP_ROOT=127.0.0.1:$port LOCKSTEP_TIMEOUT=30 \
      timeout 60 "$1" -b 8 -e 8 -n 1 -w 1 >"$2/ro$r" 2>&1 &
  done
  wait
' _ "$perf" "$out"
for r in 0 1; do
  if ! grep -q "/dev/shm cannot be written here (set LOCKSTEP_TRANSPORTS=socket" "$out/ro$r"; then
    echo "FAILED: rank $r does not say that /dev/shm is read-only:"; cat "$out/ro$r"; failed=1
  fi
done
[ $failed -eq 0 ] && echo "PASSED: a read-only /dev/shm is named on both ranks, with the way around it"
exit $failed
