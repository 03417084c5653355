#!/usr/bin/env bash
# Several "hosts" on one machine: network namespaces joined by a bridge, each with its own
# address on 10.78.0.0/24 and its own LOCKSTEP_HOST_ID. Ranks start with nothing but
# LOCKSTEP_RANK, LOCKSTEP_WORLD_SIZE, LOCKSTEP_ROOT and LOCKSTEP_HOST_ID (plus LOCKSTEP_DEBUG and
# LOCKSTEP_TIMEOUT for the checks); they must use shm inside a namespace and TCP between them,
# give exact results for every collective, and never hang, also on an impaired network.
#
#   netns_test.sh BUILD_DIR [CASE...]     cases: interleaved contiguous impaired (default: all)
#
# Needs root and `ip netns`; otherwise exits 77 (skipped) saying why. Everything it creates is
# named lockstep<pid>..., lives only inside those namespaces (the bridge too: no traffic touches
# the machine's own network), and is removed on exit, whatever happens.
set -uo pipefail
build=$(cd "${1:?usage: netns_test.sh BUILD_DIR [CASE...]}" && pwd)
shift
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(interleaved contiguous impaired)
mp_check=$build/tests/mp_check
topo=$build/lockstep-topo
for f in "$mp_check" "$topo"; do [ -x "$f" ] || { echo "FAILED: $f is not built"; exit 1; }; done

skip() { echo "SKIPPED: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
command -v ip >/dev/null || skip "no ip command (apt-get install iproute2)"
prefix=lockstep$$
sw=${prefix}sw
ip netns add "${prefix}probe" 2>/dev/null || skip "this machine does not allow network namespaces (ip netns add failed)"
ip netns del "${prefix}probe"
# A run killed outright (SIGKILL at a ctest timeout) cannot clean up: remove what runs whose
# process is gone left behind.
for ns in $(ip netns list | awk '{print $1}' | grep -E '^lockstep[0-9]+(sw|h[0-9]+)$'); do
  owner=${ns#lockstep}
  owner=${owner%%[sh]*}
  kill -0 "$owner" 2>/dev/null || ip netns del "$ns" 2>/dev/null
done

work=$(mktemp -d)
namespaces=()
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# hosts H: namespaces ${prefix}h0..h(H-1), host i at 10.78.0.(10+i) on its "eth0", plus a decoy
# interface listed before it (10.99.i.1) that leads nowhere: the ranks must pick eth0 because it
# is on the rendezvous's subnet.
make_hosts() {
  local hosts=$1 i
  ip netns add "$sw" && namespaces+=("$sw")
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  for ((i = 0; i < hosts; i++)); do
    local ns=${prefix}h$i
    ip netns add "$ns" && namespaces+=("$ns")
    ip -n "$ns" link set lo up
    ip link add decoy0 netns "$ns" type veth peer name decoy1 netns "$ns"
    ip -n "$ns" addr add 10.99.$i.1/24 dev decoy0
    ip -n "$ns" link set decoy1 up
    ip -n "$ns" link set decoy0 up
    ip link add eth0 netns "$ns" type veth peer name port$i netns "$sw"
    ip -n "$sw" link set port$i master br0
    ip -n "$sw" link set port$i up
    ip -n "$ns" addr add 10.78.0.$((10 + i))/24 dev eth0
    ip -n "$ns" link set eth0 up
  done
}

remove_hosts() {
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  namespaces=()
}

# run_job NAME NRANKS HOSTOF PROGRAM ARGS...: rank r runs in namespace h$(HOSTOF[r]) as host
# "host<h>". Each rank is bounded by `timeout`; returns non-zero if any rank failed.
run_job() {
  local name=$1 n=$2 hostof=$3
  shift 3
  local -a hostmap
  read -r -a hostmap <<<"$hostof"
  pids=()
  local r
  for ((r = 0; r < n; r++)); do
    local h=${hostmap[$r]}
    # shellcheck disable=SC2086  # EXTRA_ENV: words of NAME=value
    timeout -k 5 "${JOB_SECONDS:-40}" ip netns exec "${prefix}h$h" env -i PATH="$PATH" \
      LOCKSTEP_RANK=$r LOCKSTEP_WORLD_SIZE=$n LOCKSTEP_ROOT=10.78.0.10:29500 LOCKSTEP_HOST_ID=host$h \
      LOCKSTEP_DEBUG=INFO LOCKSTEP_TIMEOUT=20 ${EXTRA_ENV:-} "$@" >"$work/$name.$r.log" 2>&1 &
    pids+=($!)
  done
  local failed=0
  for ((r = 0; r < n; r++)); do
    wait "${pids[$r]}"
    local rc=$?
    if [ $rc -ne 0 ]; then
      echo "FAILED: $name rank $r exited $rc$([ $rc -eq 124 ] && echo ' (timed out: a hang)')"
      failed=1
    fi
  done
  pids=()
  if [ $failed -ne 0 ]; then
    for ((r = 0; r < n; r++)); do
      echo "--- $name rank $r"
      grep -v " INFO tuner" "$work/$name.$r.log" | tail -n 30
    done
  fi
  return $failed
}

# check_choices NAME NRANKS HOSTOF: every pair on one host uses shm, every other pair TCP from
# eth0 (never the decoy, never loopback); rank 0 logged a host-contiguous ring.
check_choices() {
  local name=$1 n=$2 hostof=$3 r p bad=0
  local -a hostmap
  read -r -a hostmap <<<"$hostof"
  for ((r = 0; r < n; r++)); do
    local log=$work/$name.$r.log
    grep -q "rank $r listens on eth0 10.78.0.$((10 + hostmap[r])) (.*on the subnet of the rendezvous" "$log" ||
      { echo "FAILED: $name rank $r did not choose eth0 by the rendezvous's subnet"; bad=1; }
    for ((p = 0; p < n; p++)); do
      [ $p -eq $r ] && continue
      if [ "${hostmap[$r]}" = "${hostmap[$p]}" ]; then
        grep -q "rank $r -> rank $p (.*) via shm" "$log" || { echo "FAILED: $name rank $r -> $p is not shm"; bad=1; }
      else
        grep -q "rank $r -> rank $p (.*) via socket (eth0 10.78.0.$((10 + hostmap[r])) -> eth0 10.78.0.$((10 + hostmap[p])), another host)" "$log" ||
          { echo "FAILED: $name rank $r -> $p is not TCP between the hosts' eth0"; bad=1; }
      fi
    done
  done
  [ $bad -eq 0 ] || grep -h "INFO rank\|INFO ring" "$work/$name".*.log
  return $bad
}

# Every collective, every root, in place and out, exact (mp_check).
mp_args=(--types float32,int32,bfloat16,int8 --counts 0,1,N-1,100003 --block-counts 0,1,N-1,10007 --large 1048576)
# Under impairment every message can cost milliseconds: fewer cases, still every collective.
mp_args_small=(--types float32,int8 --ops sum,max --counts 1,N-1,100003 --block-counts 1,10007 --large 262144)

status=0
start=$SECONDS
for c in "${cases[@]}"; do
  t0=$SECONDS
  case $c in
  interleaved)
    # The done criterion: 2 namespaces, 2 ranks each, dealt round-robin (ranks 0,2 on host0,
    # 1,3 on host1), so the ring must be reordered to cross each host boundary once.
    echo "== interleaved: 4 ranks, 2 hosts (0,2 | 1,3)"
    make_hosts 2
    hostof="0 1 0 1"
    if run_job interleaved 4 "$hostof" "$mp_check" "${mp_args[@]}" && check_choices interleaved 4 "$hostof"; then
      grep -h "mp_check:" "$work"/interleaved.0.log
      grep -q "ring: 0 2 | 1 3 (2 host(s), 2 host crossing(s); reordered" "$work"/interleaved.0.log ||
        { echo "FAILED: the ring was not reordered host by host"; grep -h "ring:" "$work"/interleaved.*.log; status=1; }
      grep -h "ring:" "$work"/interleaved.0.log | sed 's/^[^ ]* lockstep INFO /  /'
    else
      status=1
    fi
    # What lockstep-topo shows for the same layout.
    if run_job topo 4 "$hostof" "$topo"; then
      sed -n '/^$/,$p' "$work/topo.0.log" | grep -v " INFO "
      grep -q "NET(eth0)" "$work/topo.0.log" && grep -q "SHM" "$work/topo.0.log" ||
        { echo "FAILED: lockstep-topo shows no SHM/NET(eth0)"; status=1; }
    else
      status=1
    fi
    remove_hosts
    ;;
  contiguous)
    echo "== contiguous: 6 ranks, 3 hosts (0,1 | 2,3 | 4,5), LOCKSTEP_SOCKET_IFNAME=^decoy"
    make_hosts 3
    hostof="0 0 1 1 2 2"
    if EXTRA_ENV="LOCKSTEP_SOCKET_IFNAME=^decoy" run_job contiguous 6 "$hostof" "$mp_check" \
      --colls allreduce,reducescatter,allgather,broadcast \
      --types float32,int32 --counts 0,1,N-1,100003 --block-counts 0,1,10007 --large 1048576 &&
      check_choices contiguous 6 "$hostof"; then
      grep -h "mp_check:" "$work"/contiguous.0.log
      grep -q "ring: 0 1 | 2 3 | 4 5 (3 host(s), 3 host crossing(s); rank order)" "$work"/contiguous.0.log ||
        { echo "FAILED: a contiguous job should keep rank order"; status=1; }
      grep -q "listens on eth0 10.78.0.10 (LOCKSTEP_SOCKET_IFNAME=^decoy, on the subnet" "$work"/contiguous.0.log ||
        { echo "FAILED: LOCKSTEP_SOCKET_IFNAME was not followed"; grep -h "listens on" "$work"/contiguous.*.log; status=1; }
    else
      status=1
    fi
    remove_hosts
    ;;
  impaired)
    echo "== impaired: 4 ranks, 2 hosts (0,2 | 1,3), each host's eth0 impaired"
    make_hosts 2
    how=""
    if tc -n "${prefix}h0" qdisc add dev eth0 root netem delay 2ms loss 1% reorder 25% 50% 2>/dev/null; then
      tc -n "${prefix}h1" qdisc add dev eth0 root netem delay 2ms loss 1% reorder 25% 50%
      how="netem delay 2 ms, 1% loss, 25% reordered"
    else
      # This kernel has no sch_netem (CONFIG_NET_SCH_NETEM). tbf is usually there: a slow link
      # with a short queue delays packets behind each other and drops what overflows, so TCP
      # retransmits (and sees out-of-order arrivals) under load.
      echo "NOTE: netem is not available in this kernel (tc qdisc ... netem failed): impairing with tbf instead" \
        "(150 Mbit/s, 24 KiB queue: queueing delay and tail drops; no fixed delay or deliberate reordering)"
      for h in 0 1; do
        tc -n "${prefix}h$h" qdisc add dev eth0 root tbf rate 150mbit burst 6kb limit 24kb ||
          { echo "FAILED: neither netem nor tbf can be set up"; status=1; }
      done
      how="tbf 150 Mbit/s, 24 KiB queue"
    fi
    hostof="0 1 0 1"
    if JOB_SECONDS=60 run_job impaired 4 "$hostof" "$mp_check" "${mp_args_small[@]}" &&
      check_choices impaired 4 "$hostof"; then
      grep -h "mp_check:" "$work"/impaired.0.log
    else
      status=1
    fi
    for h in 0 1; do
      echo "  host$h eth0: $how: $(tc -s -n "${prefix}h$h" qdisc show dev eth0 | grep -o 'Sent [0-9]* bytes [0-9]* pkt (dropped [0-9]*' | head -1))"
    done
    remove_hosts
    ;;
  *)
    echo "unknown case $c"
    exit 2
    ;;
  esac
  echo "   ($c: $((SECONDS - t0)) s)"
done
echo "netns: $([ $status -eq 0 ] && echo OK || echo FAILED) in $((SECONDS - start)) s"
exit $status
