#!/usr/bin/env bash
# Several "hosts" on one machine: network namespaces joined by a bridge, each with its own
# address on 10.78.0.0/24 and its own LOCKSTEP_HOST_ID. Ranks start with nothing but
# LOCKSTEP_RANK, LOCKSTEP_WORLD_SIZE, LOCKSTEP_ROOT and LOCKSTEP_HOST_ID (plus LOCKSTEP_DEBUG and
# LOCKSTEP_TIMEOUT for the checks); they must use shm inside a namespace and TCP between them,
# give exact results for every collective, and never hang, also on an impaired network.
#
#   netns_test.sh BUILD_DIR [CASE...]     cases: interleaved contiguous routed late_nic ipv6_dad loopback
#                                         decoy partition mtu impaired (default: all)
#
# The impaired link is 2 ms delay, 1% loss and 25% reordering each way: `tc netem` where the
# kernel has it, otherwise lockstep-wire (tests/netns/wire.cc), a userspace wire between TAP
# devices that applies the same. LOCKSTEP_NETNS_IMPAIR=wire forces the wire on a netem kernel;
# LOCKSTEP_WIRE_SEED sets its seed (default: this script's pid; printed).
#
# Needs root and `ip netns`; otherwise exits 77 (skipped) saying why. Everything it creates is
# named lockstep<pid>..., lives only inside those namespaces (the bridge and the wire's taps too:
# no traffic touches the machine's own network), and is removed on exit, whatever happens.
set -uo pipefail
build=$(cd "${1:?usage: netns_test.sh BUILD_DIR [CASE...]}" && pwd)
shift
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(interleaved contiguous routed late_nic ipv6_dad loopback decoy partition nic_down mtu impaired)
mp_check=$build/tests/mp_check
topo=$build/lockstep-topo
wire=$build/tests/lockstep-wire
for f in "$mp_check" "$topo"; do [ -x "$f" ] || { echo "FAILED: $f is not built"; exit 1; }; done

skip() { echo "SKIPPED: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
command -v ip >/dev/null || skip "no ip command (apt-get install iproute2)"
prefix=lockstep$$
sw=${prefix}sw
ip netns add "${prefix}probe" 2>/dev/null || skip "this machine does not allow network namespaces (ip netns add failed)"
# Has this kernel sch_netem (CONFIG_NET_SCH_NETEM)? Many do not: then the wire impairs the link.
impair=wire
tc -n "${prefix}probe" qdisc add dev lo root netem delay 1ms 2>/dev/null && impair=netem
ip netns del "${prefix}probe"
case ${LOCKSTEP_NETNS_IMPAIR:-} in
"") ;;
wire) impair=wire ;;
netem) [ $impair = netem ] || { echo "FAILED: LOCKSTEP_NETNS_IMPAIR=netem, but this kernel has no netem"; exit 1; } ;;
*) echo "FAILED: LOCKSTEP_NETNS_IMPAIR must be netem or wire"; exit 2 ;;
esac
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
wire_pid=""
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  # The wire's taps hold their namespaces alive: stop it before removing them.
  [ -n "$wire_pid" ] && kill -9 "$wire_pid" 2>/dev/null && wait "$wire_pid" 2>/dev/null
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# add_host I: namespace ${prefix}h$I with lo up and the decoy (10.99.I.1 on decoy0, a veth whose
# other end is in the same namespace: it leads nowhere), created first so that it is listed first.
add_host() {
  local ns=${prefix}h$1
  ip netns add "$ns" && namespaces+=("$ns")
  ip -n "$ns" link set lo up
  ip link add decoy0 netns "$ns" type veth peer name decoy1 netns "$ns"
  ip -n "$ns" addr add 10.99.$1.1/24 dev decoy0
  ip -n "$ns" link set decoy1 up
  ip -n "$ns" link set decoy0 up
}

# make_hosts H [bridge|wire]: namespaces ${prefix}h0..h(H-1), host i at 10.78.0.(10+i) on its
# "eth0", plus a decoy interface listed before it (10.99.i.1) that leads nowhere: the ranks must
# pick eth0 because it is on the rendezvous's subnet. eth0 is a veth on a bridge in namespace
# ${prefix}sw, or (wire) a TAP device of lockstep-wire, which joins the hosts instead.
make_hosts() {
  local hosts=$1 link=${2:-bridge} i
  if [ "$link" = bridge ]; then
    ip netns add "$sw" && namespaces+=("$sw")
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 up
  fi
  for ((i = 0; i < hosts; i++)); do
    local ns=${prefix}h$i
    add_host "$i"
    [ "$link" = bridge ] || continue
    ip link add eth0 netns "$ns" type veth peer name port$i netns "$sw"
    ip -n "$sw" link set port$i master br0
    ip -n "$sw" link set port$i up
  done
  [ "$link" = bridge ] || start_wire "$hosts" || return 1
  for ((i = 0; i < hosts; i++)); do
    ip -n "${prefix}h$i" addr add 10.78.0.$((10 + i))/24 dev eth0
    ip -n "${prefix}h$i" link set eth0 up
  done
}

# make_routed_hosts: two hosts on different subnets, host0 at 10.78.0.10/24 and host1 at
# 10.78.1.11/24, their eth0s a veth pair with a route to each other's subnet, each with a decoy
# listed first: no interface shares the rendezvous's subnet, so host1 must follow the route.
make_routed_hosts() {
  local i
  for i in 0 1; do add_host "$i"; done
  ip link add eth0 netns "${prefix}h0" type veth peer name eth0 netns "${prefix}h1"
  ip -n "${prefix}h0" addr add 10.78.0.10/24 dev eth0
  ip -n "${prefix}h1" addr add 10.78.1.11/24 dev eth0
  for i in 0 1; do ip -n "${prefix}h$i" link set eth0 up; done
  ip -n "${prefix}h0" route add 10.78.1.0/24 dev eth0
  ip -n "${prefix}h1" route add 10.78.0.0/24 dev eth0
}

remove_hosts() {
  stop_wire
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  namespaces=()
}

wire_args=(--delay-ms 2 --loss 0.01 --reorder 0.25 --reorder-extra-ms 1 --max-pending 4096)
# start_wire H: lockstep-wire creates eth0 in h0..h(H-1) and forwards between them; waits until
# it says the taps exist.
start_wire() {
  local hosts=$1 i
  local -a ns=()
  for ((i = 0; i < hosts; i++)); do ns+=("${prefix}h$i"); done
  "$wire" --ifname eth0 "${wire_args[@]}" --seed "${LOCKSTEP_WIRE_SEED:-$$}" "${ns[@]}" >"$work/wire.log" 2>&1 &
  wire_pid=$!
  for ((i = 0; i < 100; i++)); do
    grep -qs "^lockstep-wire: ready" "$work/wire.log" && return 0
    kill -0 "$wire_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "FAILED: lockstep-wire did not start"
  cat "$work/wire.log"
  return 1
}

# stop_wire: SIGTERM makes the wire print its counters (into $work/wire.log) and exit.
stop_wire() {
  [ -n "$wire_pid" ] || return 0
  kill -TERM "$wire_pid" 2>/dev/null
  local i
  for ((i = 0; i < 50; i++)); do kill -0 "$wire_pid" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$wire_pid" 2>/dev/null && echo "FAILED: lockstep-wire ignored SIGTERM" && status=1
  wait "$wire_pid" 2>/dev/null
  wire_pid=""
}

# rtt_probe FROM TO_ADDR TRIES: round-trip times in ms from host FROM, one per line. Each is a TCP
# connect to a closed port (SYN out, RST back: one round trip, no listener needed, no ping
# installed); bash's $EPOCHREALTIME times it. A lost SYN or RST costs a 1 s retransmission.
rtt_probe() {
  # shellcheck disable=SC2016  # expanded by the inner bash
  ip netns exec "${prefix}h$1" bash -c '
    for ((i = 0; i < $2; i++)); do
      t0=$EPOCHREALTIME
      true 2>/dev/null 3<>"/dev/tcp/$1/9"
      t1=$EPOCHREALTIME
      echo $(( (${t1//[.,]/} - ${t0//[.,]/}) ))
    done' rtt "$2" "$3" | awk '{ printf "%.3f\n", $1 / 1000 }'
}

# A sanitizer build's options reach the ranks through env -i (scripts/sanitize.sh sets them).
sanitizer_env=()
for v in ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS; do
  if [ -n "${!v:-}" ]; then sanitizer_env+=("$v=${!v}"); fi
done

# run_job NAME NRANKS HOSTOF PROGRAM ARGS...: rank r runs in namespace h$(HOSTOF[r]) as host
# "host<h>", with EXTRA_ENV and RANK<r>_ENV (words of NAME=value). Each rank is bounded by
# `timeout`; returns non-zero if any rank failed, saying which unless EXPECT_FAILURE=1.
run_job() {
  local name=$1 n=$2 hostof=$3
  shift 3
  local -a hostmap
  read -r -a hostmap <<<"$hostof"
  pids=()
  local r
  for ((r = 0; r < n; r++)); do
    local h=${hostmap[$r]} own=RANK${r}_ENV
    # shellcheck disable=SC2086  # EXTRA_ENV, RANK<r>_ENV: words of NAME=value
    timeout -k 5 "${JOB_SECONDS:-40}" ip netns exec "${prefix}h$h" env -i PATH="$PATH" ${TMPDIR:+TMPDIR="$TMPDIR"} \
      LOCKSTEP_RANK=$r LOCKSTEP_WORLD_SIZE=$n LOCKSTEP_ROOT=10.78.0.10:29500 LOCKSTEP_HOST_ID=host$h \
      LOCKSTEP_DEBUG=INFO LOCKSTEP_TIMEOUT=20 ${EXTRA_ENV:-} ${!own:-} ${sanitizer_env[@]+"${sanitizer_env[@]}"} \
      "$@" >"$work/$name.$r.log" 2>&1 &
    pids+=($!)
  done
  local failed=0
  for ((r = 0; r < n; r++)); do
    wait "${pids[$r]}"
    local rc=$?
    [ $rc -eq 0 ] && continue
    failed=1
    [ "${EXPECT_FAILURE:-0}" = 1 ] || echo "FAILED: $name rank $r exited $rc$([ $rc -eq 124 ] && echo ' (timed out: a hang)')"
  done
  pids=()
  if [ $failed -ne 0 ] && [ "${EXPECT_FAILURE:-0}" != 1 ]; then
    for ((r = 0; r < n; r++)); do
      echo "--- $name rank $r"
      grep -v " INFO tuner" "$work/$name.$r.log" | tail -n 30
    done
  fi
  return $failed
}

# check_choices NAME NRANKS HOSTOF: every pair on one host uses shm, every other pair TCP from
# eth0 (never the decoy, never loopback) with the system's congestion control; rank 0 logged a
# host-contiguous ring.
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
        # Across hosts the system's congestion control stays (reno is only for loopback).
        ! grep -q "congestion control to rank $p (" "$log" ||
          { echo "FAILED: $name rank $r -> $p set a congestion control on a connection between hosts"; bad=1; }
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
    # A link down while the job starts, back 5 s later: the connects that got "no route to host"
    # retry until LOCKSTEP_TIMEOUT (they gave up after the first, about 3 s in, and the ranks
    # behind the link failed init).
    ip -n "$sw" link set port1 down
    (sleep 5 && ip -n "$sw" link set port1 up) &
    flap=$!
    if EXTRA_ENV="LOCKSTEP_TIMEOUT=30" run_job flap 4 "$hostof" "$mp_check" --colls allreduce --types float32 \
      --counts 1,100003 --block-counts 1; then
      grep -h "mp_check:" "$work"/flap.0.log | sed 's/^/  link down at start: /'
    else
      status=1
    fi
    wait "$flap"
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
  routed)
    # The rendezvous on another subnet than host1's: the kernel's route to it names eth0 (the
    # decoy, first in the kernel's order, once won as "first usable" and the job timed out).
    # Then an NCCL-style exclusion, which lets loopback in: lo, first in the kernel's order,
    # once won there, and reached no other host.
    echo "== routed: 2 ranks, 2 hosts on different subnets; then LOCKSTEP_SOCKET_IFNAME=^docker"
    make_routed_hosts
    for spec in "" "^docker"; do
      name=routed${spec:+_excluding}
      if EXTRA_ENV="${spec:+LOCKSTEP_SOCKET_IFNAME=$spec}" run_job "$name" 2 "0 1" "$mp_check" --colls allreduce \
        --types float32 --counts 1,100003 --block-counts 1; then
        grep -h "mp_check:" "$work/$name.0.log"
        grep -q "rank 1 listens on eth0 10.78.1.11 (.*the route to the rendezvous 10.78.0.10:29500 leaves from it" \
          "$work/$name.1.log" ||
          { echo "FAILED: $name: rank 1 did not follow the route"; grep -h "listens on" "$work/$name".*.log; status=1; }
      else
        status=1
      fi
    done
    remove_hosts
    ;;
  late_nic)
    # Host 1's eth0 comes up 2 s after its rank starts (a link, an address DHCP has not given
    # yet): only the decoy, which leads nowhere, is up then. The rank waits for an interface that
    # reaches the rendezvous; it once listened on the decoy (or loopback), and the job failed
    # blaming the healthy rank 0.
    echo "== late_nic: 2 ranks, 2 hosts; host 1's eth0 comes up 2 s after its rank starts"
    make_hosts 2
    ip -n "${prefix}h1" link set eth0 down
    (sleep 2 && ip -n "${prefix}h1" link set eth0 up) &
    if run_job late_nic 2 "0 1" "$mp_check" --colls allreduce --types float32 --counts 1,100003 --block-counts 1; then
      grep -h "mp_check:" "$work/late_nic.0.log"
      grep -q "no interface reaches the rendezvous at 10.78.0.10:29500" "$work/late_nic.1.log" &&
        grep -q "rank 1 listens on eth0 10.78.0.11" "$work/late_nic.1.log" ||
        { echo "FAILED: late_nic: rank 1 did not wait for eth0"; grep -h "listens on\|no interface" "$work"/late_nic.*.log; status=1; }
    else
      status=1
    fi
    wait
    # The same with LOCKSTEP_SOCKET_IFNAME=eth0 (set out of NCCL_SOCKET_IFNAME habit): the named
    # interface is waited for too (it failed at once, "matches no usable interface").
    ip -n "${prefix}h1" link set eth0 down
    (sleep 2 && ip -n "${prefix}h1" link set eth0 up) &
    if EXTRA_ENV="LOCKSTEP_SOCKET_IFNAME=eth0" run_job late_nic_ifname 2 "0 1" "$mp_check" --colls allreduce \
      --types float32 --counts 1,100003 --block-counts 1; then
      grep -q "LOCKSTEP_SOCKET_IFNAME=eth0 names eth0, not up with an address yet" "$work/late_nic_ifname.1.log" ||
        { echo "FAILED: late_nic: rank 1 did not wait for the eth0 it was told to use"; status=1; }
    else
      status=1
    fi
    wait
    remove_hosts
    ;;
  ipv6_dad)
    # IPv6 addresses given just before the ranks start (at boot, at a container's start) are
    # tentative for a second or two (duplicate address detection) and cannot be bound yet. The
    # ranks wait for them, as for an address not given yet; they failed at once ("Cannot assign
    # requested address"), or listened on lo and were refused by the rendezvous (helper-73).
    echo "== ipv6_dad: 2 ranks, 2 IPv6-only hosts whose addresses are still tentative"
    make_hosts 2
    for i in 0 1; do
      ip -n "${prefix}h$i" addr flush dev eth0
      ip -n "${prefix}h$i" addr add fd78::$((10 + i))/64 dev eth0
    done
    ip -n "${prefix}h0" -6 addr show dev eth0 | grep -q tentative ||
      echo "  (the addresses are not tentative here: duplicate address detection is off)"
    if EXTRA_ENV="LOCKSTEP_ROOT=[fd78::10]:29500" run_job ipv6_dad 2 "0 1" "$mp_check" --colls allreduce \
      --types float32 --counts 1,100003 --block-counts 1; then
      grep -h "mp_check:" "$work/ipv6_dad.0.log"
      for r in 0 1; do
        grep -q "rank $r listens on eth0 fd78::$((10 + r)) " "$work/ipv6_dad.$r.log" ||
          { echo "FAILED: ipv6_dad: rank $r did not wait for its address"; grep -h "listens on\|no interface" "$work"/ipv6_dad.*.log; status=1; }
      done
    else
      status=1
    fi
    remove_hosts
    ;;
  loopback)
    # Ranks dealt round-robin over two hosts, rank 3 told to use lo: the bootstrap ring's dial of
    # its 127.0.0.1 failed ("refused") and rank 3, waiting for a predecessor that never came,
    # blamed a healthy rank. The rendezvous must refuse the job at once on every rank, naming
    # rank 3 and why, long before LOCKSTEP_TIMEOUT (20 s).
    echo "== loopback: 4 ranks, 2 hosts (0,2 | 1,3), rank 3 with LOCKSTEP_SOCKET_IFNAME=lo"
    make_hosts 2
    t1=$SECONDS
    if RANK3_ENV="LOCKSTEP_SOCKET_IFNAME=lo" EXPECT_FAILURE=1 run_job loopback 4 "0 1 0 1" "$mp_check" \
      --colls allreduce --types float32 --counts 1 --block-counts 1; then
      echo "FAILED: loopback: the job ran with rank 3 on loopback"
      status=1
    fi
    want="rank 3 listens on loopback 127.0.0.1 on the host at 10.78.0.11; rank 0, on the rendezvous's host, cannot reach it"
    for r in 0 1 2 3; do
      grep -q "mp_check rank $r: init: .*rendezvous failed: $want" "$work/loopback.$r.log" ||
        { echo "FAILED: loopback: rank $r did not name rank 3"; tail -n 5 "$work/loopback.$r.log"; status=1; }
    done
    [ $((SECONDS - t1)) -lt 10 ] || { echo "FAILED: loopback: the job took $((SECONDS - t1)) s to fail"; status=1; }
    grep -h "mp_check rank" "$work/loopback.1.log"
    remove_hosts
    ;;
  decoy)
    # Rank 1 told to use its decoy, which no other host can route to. Nothing can tell that
    # before a dial: rank 0's dial fails naming rank 1's address, and rank 1, which reached rank
    # 0 while it waited, must point at its own address, not blame rank 0 for never connecting:
    # when both start together (rank 1's deadline comes first), and when rank 1 starts a second
    # later (rank 0 gives up first and exits: it once read "rank 0 ... is gone").
    echo "== decoy: 2 ranks, 2 hosts, rank 1 with LOCKSTEP_SOCKET_IFNAME=decoy0 (LOCKSTEP_TIMEOUT=4)"
    make_hosts 2
    for delay in 0 1; do
      name=decoy_after_$delay
      if RANK1_ENV="LOCKSTEP_SOCKET_IFNAME=decoy0 START_DELAY=$delay" EXTRA_ENV="LOCKSTEP_TIMEOUT=4" \
        EXPECT_FAILURE=1 run_job $name 2 "0 1" bash -c 'sleep "${START_DELAY:-0}"; exec "$0" "$@"' \
        "$mp_check" --colls allreduce --types float32 --counts 1 --block-counts 1; then
        echo "FAILED: $name: the job ran with rank 1 on an interface nobody reaches"
        status=1
      fi
      grep -h "mp_check rank" "$work/$name".*.log
      grep -q "mp_check rank 0: init: .*no answer from rank 1 (10.99.1.1:[0-9]*) (the last try: Network is unreachable)" \
        "$work/$name.0.log" || { echo "FAILED: $name: rank 0 did not name rank 1's address"; status=1; }
      grep -q "mp_check rank 1: init: .*rank 0 (10.78.0.10:[0-9]*).* it answered (this rank reached it) but never connected to this rank at 10.99.1.1:[0-9]*: can its host reach 10.99.1.1?" \
        "$work/$name.1.log" || { echo "FAILED: $name: rank 1 did not point at its own address"; status=1; }
    done
    remove_hosts
    ;;
  partition)
    # The link between two hosts cut mid-job with no RST (a switch port down): TCP retransmits
    # until tcp_retries2 gives up (3 here: seconds; the default 15 takes about 15 minutes), and
    # the sockets report ETIMEDOUT. Each rank must fail as a remote error naming the other and
    # the network, long before LOCKSTEP_TIMEOUT (60 s): it was a system error naming no one.
    echo "== partition: 2 ranks, 2 hosts, host 1's switch port down 2 s in (tcp_retries2=3, LOCKSTEP_TIMEOUT=60)"
    make_hosts 2
    for h in 0 1; do ip netns exec "${prefix}h$h" sysctl -qw net.ipv4.tcp_retries2=3; done
    (sleep 2 && ip -n "$sw" link set port1 down) &
    cut=$!
    t1=$SECONDS
    if EXTRA_ENV="LOCKSTEP_TIMEOUT=60" EXPECT_FAILURE=1 run_job partition 2 "0 1" "$build/perf/allreduce_perf" \
      -b 1M -e 1M -n 10000000 -w 0; then
      echo "FAILED: partition: the job went on across a cut link"
      status=1
    fi
    wait "$cut"
    for r in 0 1; do
      line=$(grep -h "allreduce_perf: .* failed: " "$work/partition.$r.log" | head -n 1)
      echo "  rank $r: ${line:-(no error line)}"
      grep -q "failed: remote error .*rank $((1 - r)) .*the network between the two hosts failed" <<<"$line" ||
        { echo "FAILED: partition: rank $r did not fail as a remote error naming rank $((1 - r)) and the network"; status=1; }
    done
    [ $((SECONDS - t1)) -lt 30 ] || { echo "FAILED: partition: the ranks took $((SECONDS - t1)) s to fail"; status=1; }
    remove_hosts
    ;;
  nic_down)
    # Host 1's own interface goes down mid-job (its link, not the switch's). Its rank can only
    # time out, and must say that its own interface is down: it said that rank 0 was silent, or
    # that the network dropped what it sent, blaming the healthy host (helper-91).
    echo "== nic_down: 2 ranks, 2 hosts, host 1's eth0 down 2 s in (LOCKSTEP_TIMEOUT=5)"
    make_hosts 2
    (sleep 2 && ip -n "${prefix}h1" link set eth0 down) &
    cut=$!
    if EXTRA_ENV="LOCKSTEP_TIMEOUT=5" EXPECT_FAILURE=1 run_job nic_down 2 "0 1" "$build/perf/allreduce_perf" \
      -b 1M -e 1M -n 10000000 -w 0; then
      echo "FAILED: nic_down: the job went on across a down interface"
      status=1
    fi
    wait "$cut"
    line=$(grep -h "allreduce_perf: .* failed: " "$work/nic_down.1.log" | head -n 1)
    echo "  rank 1: ${line:-(no error line)}"
    grep -q "this host's interface eth0 (10.78.0.11) is down: nothing this rank sends leaves it" <<<"$line" ||
      { echo "FAILED: nic_down: rank 1 did not say its own interface is down"; status=1; }
    remove_hosts
    ;;
  mtu)
    # An MTU black hole: both hosts at MTU 9000, the switch's port to host 1 at 1500, so the
    # switch drops host 0's full-sized frames to host 1 while small ones (handshakes, heartbeats)
    # pass. The job forms, then its first large all-reduce stalls with every process alive and
    # answering. Rank 1 can only say it waits for rank 0; rank 0's error must say that the
    # network drops what it sends rank 1 (it said no more than rank 1 did). Rank 1 times out
    # first (4 s against 6): rank 0 learns of it from rank 1's report, and adds what its own link
    # shows (when its own timeout came first, as it did in about one run of ten with both at 6,
    # the report carried it; otherwise the network went unnamed on both ranks).
    echo "== mtu: 2 ranks, 2 hosts at MTU 9000, the switch port to host 1 at 1500 (LOCKSTEP_TIMEOUT=6, rank 1 4)"
    make_hosts 2
    ip -n "$sw" link set port0 mtu 9000
    # One segment per packet: GSO packets of any size pass a bridge's MTU check.
    for h in 0 1; do ip -n "${prefix}h$h" link set eth0 mtu 9000 gso_max_segs 1; done
    if EXTRA_ENV="LOCKSTEP_TIMEOUT=6" RANK1_ENV="LOCKSTEP_TIMEOUT=4" EXPECT_FAILURE=1 run_job mtu 2 "0 1" "$build/perf/allreduce_perf" \
      -b 4M -e 4M -n 5 -w 0; then
      echo "FAILED: mtu: the job ran through a path that drops full-sized frames"
      status=1
    fi
    for r in 0 1; do
      line=$(grep -h "allreduce_perf: .* failed: " "$work/mtu.$r.log" | head -n 1)
      echo "  rank $r: ${line:-(no error line)}"
    done
    grep -q "timed out .*Here on rank 0: the connection to rank 1 .* bytes unacknowledged.*the network drops what this rank sends" \
      "$work/mtu.0.log" || { echo "FAILED: mtu: rank 0 did not name the connection the network drops"; status=1; }
    # Rank 1 describes its own wait, or, when rank 0's report came first, passes that on.
    grep -qE "failed: timeout: (.*waiting for data from rank 0|rank 0 \(.*\) reports: .*the connection to rank 1)" \
      "$work/mtu.1.log" || { echo "FAILED: mtu: rank 1 did not time out waiting for rank 0"; status=1; }
    remove_hosts
    ;;
  impaired)
    echo "== impaired: 6 ranks, 3 hosts (0,3 | 1,4 | 2,5), the link between them impaired ($impair)"
    ready=1
    if [ $impair = netem ]; then
      make_hosts 3
      for h in 0 1 2; do
        tc -n "${prefix}h$h" qdisc add dev eth0 root netem delay 2ms loss 1% reorder 25% 50% ||
          { echo "FAILED: tc netem"; ready=0; }
      done
      how="netem on each eth0: delay 2 ms, 1% loss, 25% reordered"
    else
      [ -x "$wire" ] || { echo "FAILED: $wire is not built"; exit 1; }
      [ -n "${LOCKSTEP_NETNS_IMPAIR:-}" ] ||
        echo "NOTE: this kernel has no netem (tc qdisc ... netem failed): impairing with lockstep-wire over TAP instead"
      make_hosts 3 wire || ready=0
      how="lockstep-wire over TAP, each way: ${wire_args[*]}"
    fi
    echo "  impairment: $how"
    if [ $ready -eq 0 ]; then
      status=1
      remove_hosts
      continue
    fi
    # The wire delays every frame 2 ms each way, so no round trip takes under 4 ms (an unimpaired
    # veth: ~0.1 ms); the minimum of several is immune to the odd lost frame. netem's "reorder"
    # sends a quarter of the packets undelayed, so there only most round trips (the median) are
    # delayed at least one way.
    rtt=$(rtt_probe 0 10.78.0.11 20 | sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%s %s %s", v[1], v[int((NR + 1) / 2)], v[NR] }')
    echo "  round trip host0 -> host1 (TCP SYN/RST, 20 tries): min/median/max ${rtt// / / } ms"
    read -r rtt_min rtt_median _ <<<"$rtt"
    awk -v v="${rtt_min:-0}" -v m="${rtt_median:-0}" -v how=$impair \
      'BEGIN { exit !(how == "wire" ? v >= 4.0 : m >= 1.9) }' ||
      { echo "FAILED: round trips are not delayed by 2 ms each way: the link is not impaired"; status=1; }
    # A job's last call, then destroy at once: over a lossy link the goodbye (on the control
    # connection) can overtake the last data (retransmitted); the receiver must still get it all.
    for try in 1 2 3 4 5; do
      run_job "lastsend$try" 2 "0 1" "$mp_check" --mode last-send || status=1
    done
    hostof="0 1 2 0 1 2"
    if JOB_SECONDS=60 run_job impaired 6 "$hostof" "$mp_check" "${mp_args_small[@]}" &&
      check_choices impaired 6 "$hostof"; then
      grep -h "mp_check:" "$work"/impaired.0.log
    else
      status=1
    fi
    if [ $impair = netem ]; then
      for h in 0 1 2; do
        echo "  host$h eth0: $(tc -s -n "${prefix}h$h" qdisc show dev eth0 | grep -o 'Sent [0-9]* bytes [0-9]* pkt (dropped [0-9]*' | head -1))"
      done
    else
      stop_wire
      counters=$(grep "^lockstep-wire: counters:" "$work/wire.log")
      echo "  ${counters#lockstep-wire: }"
      wire_count() { grep -o " $1=[0-9]*" <<<"$counters" | cut -d= -f2; }
      frames=$(wire_count read) lost=$(wire_count lost) reordered=$(wire_count reordered)
      queue_full=$(wire_count queue_full)
      # The wire must really have impaired this traffic: 0.4-2.5% of the frames lost (at 1% of
      # thousands of frames, far outside chance), some delivered after frames sent later, and
      # none dropped for a full queue (an impairment nobody asked for).
      if [ -z "$counters" ] || [ "$frames" -lt 2000 ] || [ $((lost * 1000)) -lt $((frames * 4)) ] ||
        [ $((lost * 1000)) -gt $((frames * 25)) ] || [ "$reordered" -lt 1 ] || [ "$queue_full" -ne 0 ]; then
        echo "FAILED: the wire's counters do not show the impairment (wanted: 2000+ frames, 0.4-2.5% of them" \
          "lost, some reordered, none queue_full)"
        cat "$work/wire.log"
        status=1
      fi
    fi
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
