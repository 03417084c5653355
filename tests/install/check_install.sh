#!/usr/bin/env bash
# Installs the build to a scratch prefix, then builds the C examples (every dtype x op of
# all-reduce; every collective alone, in a group and on split communicators) against nothing but
# the installed files, with pkg-config and with find_package(lockstep) (shared and static). Runs them under the
# installed lockstep-run, over shared memory and over sockets.
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -n1)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
export LD_LIBRARY_PATH="$libdir"
test -f "$tmp/prefix/include/lockstep/lockstep.h"
test -f "$tmp/prefix/include/lockstep/lockstep.hpp"
test -x "$tmp/prefix/bin/lockstep-run"
test -x "$tmp/prefix/bin/allreduce_perf"
ls "$libdir"/liblockstep.so* "$libdir"/liblockstep.a >/dev/null

cc -std=c99 -Wall -Werror "$src/examples/c/allreduce_check.c" $(pkg-config --cflags --libs lockstep) -lm \
  -o "$tmp/check_pc"
cc -std=c99 -Wall -Werror "$src/examples/c/collectives_check.c" $(pkg-config --cflags --libs lockstep) \
  -o "$tmp/collectives_pc"
cmake -S "$src/examples/cmake_consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null

export LOCKSTEP_TIMEOUT=60
for prog in "$tmp/check_pc" "$tmp/consumer/allreduce_check" "$tmp/collectives_pc" "$tmp/consumer/collectives_check" \
  "$tmp/consumer/allreduce_check_static"; do
  timeout 120 "$tmp/prefix/bin/lockstep-run" -n 3 "$prog"
  LOCKSTEP_TRANSPORTS=socket timeout 120 "$tmp/prefix/bin/lockstep-run" -n 4 "$prog"
done
echo "install check: OK"
