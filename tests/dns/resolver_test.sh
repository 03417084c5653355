#!/usr/bin/env bash
# LOCKSTEP_ROOT names its host, and the resolver does not answer: init must fail within about
# LOCKSTEP_TIMEOUT, saying the name did not resolve, where the lookup held it for the resolver's
# own retries (10 s with resolv.conf's defaults, 60 s with "timeout:30 attempts:2", whatever
# LOCKSTEP_TIMEOUT said: helper-96). And a resolver that refuses (nothing on its port: a
# temporary failure, as SERVFAIL is) is asked again until LOCKSTEP_TIMEOUT, not reported at once
# as a bad argument. And a name with several addresses reaches rank 0 whichever a rank's resolver
# lists first.
#
#   resolver_test.sh BUILD_DIR
#
# Needs root (a private mount namespace with its own /etc/resolv.conf, and port 53 on 127.0.0.77
# for tests/dns/silent_dns.c); otherwise exits 77 (skipped) saying why.
set -uo pipefail
build=$(cd "${1:?usage: resolver_test.sh BUILD_DIR}" && pwd)
perf=$build/perf/allreduce_perf
dns=$build/tests/silent_dns
for f in "$perf" "$dns"; do [ -x "$f" ] || { echo "FAILED: $f is not built"; exit 1; }; done
skip() { echo "SKIPPED: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "a private /etc/resolv.conf needs root"
command -v unshare >/dev/null || skip "no unshare command (apt-get install util-linux)"
unshare -m true 2>/dev/null || skip "this machine does not allow mount namespaces"
out=$(mktemp -d)
"$dns" 127.0.0.77 >"$out/dns.log" 2>&1 &
dns_pid=$!
trap 'kill $dns_pid 2>/dev/null; rm -rf "$out"' EXIT
for _ in $(seq 50); do grep -q ready "$out/dns.log" && break; sleep 0.1; done
grep -q ready "$out/dns.log" || skip "could not bind 127.0.0.77:53: $(cat "$out/dns.log")"
# Names are looked up through files and DNS only, whatever this host's nsswitch.conf says
# (systemd-resolved's nss-resolve ignores resolv.conf), and without nscd's cache.
printf 'hosts: files dns\n' >"$out/nsswitch.conf"
private() {  # FILE TARGET cmd...: cmd with FILE in place of TARGET, in a mount namespace of its own
  unshare -m sh -c 'mount --bind "$0" "$1" && mount --bind "$2" /etc/nsswitch.conf &&
    { [ ! -d /var/run/nscd ] || mount -t tmpfs none /var/run/nscd; } && shift 2 && exec "$@"' \
    "$1" "$2" "$out/nsswitch.conf" "${@:3}"
}
printf 'nameserver 127.0.0.77\n' >"$out/silent.conf"
printf 'nameserver 127.0.0.78\noptions timeout:1 attempts:1\n' >"$out/refusing.conf"
status=0
# Rank 1 alone: its init first resolves the rendezvous's name (a .invalid name, never real).
run() {  # CONF OUT: prints the milliseconds taken
  local start
  start=$(date +%s%N)
  private "$1" /etc/resolv.conf env LOCKSTEP_RANK=1 LOCKSTEP_WORLD_SIZE=2 LOCKSTEP_ROOT=lockstep-root.invalid:29500 LOCKSTEP_TIMEOUT=2 \
    timeout 60 "$perf" -b 8 -e 8 -n 1 -w 1 >"$2" 2>&1
  echo $((($(date +%s%N) - start) / 1000000))
}
for case in silent refusing; do
  took=$(run "$out/$case.conf" "$out/$case.out")
  line=$(grep -m1 "cannot resolve host" "$out/$case.out")
  echo "$case resolver: ${took} ms: ${line:-$(tail -1 "$out/$case.out")}"
  if [ -z "$line" ] || ! grep -q "LOCKSTEP_ROOT" <<<"$line"; then
    echo "FAILED: the $case resolver's failure does not say that LOCKSTEP_ROOT's name did not resolve"
    status=1
  fi
  if ! grep -qi "timeout" <<<"$line"; then
    echo "FAILED: the $case resolver's failure is not a timeout (a temporary failure is tried again)"
    status=1
  fi
  if [ "$took" -gt 6000 ]; then
    echo "FAILED: the $case resolver held init for ${took} ms with LOCKSTEP_TIMEOUT=2"
    status=1
  fi
done
# A name with two addresses of rank 0's host, listed in another order for rank 1 (hosts files
# per host, DNS round robin): rank 0 listened on the first only, rank 1 dialled the other, and
# both waited out the timeout. 127.0.0.2 and 127.0.0.3 are both this host's (127/8).
printf '127.0.0.1 localhost\n127.0.0.2 lockstep-two\n127.0.0.3 lockstep-two\n' >"$out/hosts.0"
printf '127.0.0.1 localhost\n127.0.0.3 lockstep-two\n127.0.0.2 lockstep-two\n' >"$out/hosts.1"
port=$((20000 + $$ % 20000))
start=$(date +%s%N)
for r in 0 1; do
  private "$out/hosts.$r" /etc/hosts env LOCKSTEP_RANK=$r LOCKSTEP_WORLD_SIZE=2 LOCKSTEP_ROOT=lockstep-two:$port LOCKSTEP_TIMEOUT=10 \
    timeout 60 "$perf" -b 8 -e 8 -n 1 -w 1 >"$out/two.$r" 2>&1 &
done
failed=0
for r in 0 1; do wait -n || failed=1; done
took=$((($(date +%s%N) - start) / 1000000))
if [ $failed -ne 0 ]; then
  echo "FAILED: a root name whose addresses two ranks list in different orders (${took} ms):"
  cat "$out/two.0" "$out/two.1"
  status=1
else
  echo "two addresses in two orders: both ranks ran an all-reduce (${took} ms)"
fi
[ $status -eq 0 ] && echo "PASSED"
exit $status
