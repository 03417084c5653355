#!/usr/bin/env bash
# lockstep-run with LOCKSTEP_SOCKET_IFNAME naming an interface that comes up 2 s after it starts:
# making the unique id waits for it (it failed at once, "matches no usable interface", while init
# on the same setting waited). A network namespace of its own, whose lo starts down: no traffic
# leaves it. Then lo never comes up: init says so. Needs root and unshare; otherwise exits 77
# (skipped).
set -uo pipefail
build=$(cd "${1:?usage: late_named_lo_test.sh BUILD_DIR}" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "SKIPPED: needs root"; exit 77; }
unshare -n true 2>/dev/null || { echo "SKIPPED: unshare -n is not allowed here"; exit 77; }
out=$(unshare -n bash -c "(sleep 2; ip link set lo up) & LOCKSTEP_SOCKET_IFNAME=lo LOCKSTEP_TIMEOUT=15 \
  timeout 40 '$build/lockstep-run' -n 2 '$build/perf/allreduce_perf' -b 8 -e 8 -n 1 -c 1" 2>&1)
rc=$?
echo "$out" | tail -n 5
[ $rc -eq 0 ] && echo "$out" | grep -q "Out of bounds values : 0 OK" || { echo "FAILED (exit $rc)"; exit 1; }
# And lo never comes up, with no interface named: init waits for the network up to
# LOCKSTEP_TIMEOUT and says that not even loopback is up, where it blamed "the root" it could not
# reach on this very host (helper-96).
out=$(unshare -n bash -c "LOCKSTEP_TIMEOUT=2 timeout 40 '$build/lockstep-run' -n 1 '$build/perf/allreduce_perf' \
  -b 8 -e 8 -n 1 -c 1" 2>&1)
echo "$out" | grep -m1 "failed"
echo "$out" | grep -q "no interface is up, not even loopback (lo is down)" ||
  { echo "FAILED: with lo down, init does not say so:"; echo "$out" | tail -n 5; exit 1; }
echo OK
