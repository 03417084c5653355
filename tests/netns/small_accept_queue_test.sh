#!/usr/bin/env bash
# 16 ranks with 8 streams each in a network namespace whose listen queues hold 2 connections
# (net.core.somaxconn=2): every init must succeed well within LOCKSTEP_TIMEOUT. A rank that
# dialled its higher peers one after another, before it accepted its lower ones, waited on full
# queues whose owners were themselves dialling, and the init timed out (helper-97; 20 s here).
# Needs root and unshare; otherwise exits 77 (skipped).
set -uo pipefail
build=$(cd "${1:?usage: small_accept_queue_test.sh BUILD_DIR}" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "SKIPPED: needs root"; exit 77; }
unshare -n true 2>/dev/null || { echo "SKIPPED: unshare -n is not allowed here"; exit 77; }
start=$(date +%s)
out=$(unshare -n bash -c "ip link set lo up && sysctl -qw net.core.somaxconn=2 && \
  LOCKSTEP_TRANSPORTS=socket LOCKSTEP_SOCKET_NSTREAMS=8 LOCKSTEP_TIMEOUT=20 \
  timeout 60 '$build/lockstep-run' -n 16 '$build/perf/allreduce_perf' -b 8 -e 8 -n 1 -c 1" 2>&1)
rc=$?
took=$(($(date +%s) - start))
echo "$out" | grep -m3 -E "failed|Out of bounds"
[ $rc -eq 0 ] && echo "$out" | grep -q "Out of bounds values : 0 OK" || { echo "FAILED (exit $rc, ${took} s)"; exit 1; }
[ "$took" -lt 15 ] || { echo "FAILED: init took ${took} s"; exit 1; }
echo "OK (${took} s)"
