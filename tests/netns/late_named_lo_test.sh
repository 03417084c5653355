#!/usr/bin/env bash
# lockstep-run with LOCKSTEP_SOCKET_IFNAME naming an interface that comes up 2 s after it starts:
# making the unique id waits for it (it failed at once, "matches no usable interface", while init
# on the same setting waited). A network namespace of its own, whose lo starts down: no traffic
# leaves it. Needs root and unshare; otherwise exits 77 (skipped).
set -uo pipefail
build=$(cd "${1:?usage: late_named_lo_test.sh BUILD_DIR}" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "SKIPPED: needs root"; exit 77; }
unshare -n true 2>/dev/null || { echo "SKIPPED: unshare -n is not allowed here"; exit 77; }
out=$(unshare -n bash -c "(sleep 2; ip link set lo up) & LOCKSTEP_SOCKET_IFNAME=lo LOCKSTEP_TIMEOUT=15 \
  timeout 40 '$build/lockstep-run' -n 2 '$build/perf/allreduce_perf' -b 8 -e 8 -n 1 -c 1" 2>&1)
rc=$?
echo "$out" | tail -n 5
[ $rc -eq 0 ] && echo "$out" | grep -q "Out of bounds values : 0 OK" || { echo "FAILED (exit $rc)"; exit 1; }
echo OK
