#!/usr/bin/env bash
# Runs a Lockstep rank program across two network namespaces made by the anchors' netns.sh
# (ccl_a 10.77.0.1, ccl_b 10.77.0.2, one veth pair): rank r in namespace r, as two hosts (distinct
# LOCKSTEP_HOST_ID), meeting at LOCKSTEP_ROOT on rank 0. Prints rank 0's output; exits non-zero
# if any rank fails. Used by perf/compare --transport veth.
#   perf/veth_run.sh PROGRAM ARGS...        (the namespaces must exist: netns.sh up)
set -u
namespaces=(ccl_a ccl_b)
addrs=(10.77.0.1 10.77.0.2)
port=$((20000 + RANDOM % 20000))
pids=()
for r in 0 1; do
  env LOCKSTEP_RANK=$r LOCKSTEP_WORLD_SIZE=2 LOCKSTEP_ROOT=${addrs[0]}:$port LOCKSTEP_HOST_ID=veth-host$r \
    LOCKSTEP_TIMEOUT=${LOCKSTEP_TIMEOUT:-120} ip netns exec "${namespaces[$r]}" "$@" \
    >"$( [ $r -eq 0 ] && echo /dev/stdout || echo /dev/null)" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
