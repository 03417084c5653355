#!/usr/bin/env bash
# lockstep/ddp.hpp works from an installed tree: installs the build to a scratch prefix, compiles
# tests/mp/ddp_check.cc against nothing but the installed headers and library (pkg-config), and
# runs it on 2 ranks under the installed lockstep-run.
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -n1)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
export LD_LIBRARY_PATH="$libdir"
for h in ddp.hpp ddp/bucket_plan.h ddp/param_registry.h ddp/wire_format.h ddp/zero1_shard.h; do
  test -f "$tmp/prefix/include/lockstep/$h"
done
# -O1: this checks that the headers compile and link, not their speed.
c++ -std=c++20 -O1 -Wall -Wextra -Werror "$src/tests/mp/ddp_check.cc" $(pkg-config --cflags --libs lockstep) \
  -o "$tmp/ddp_check"
# And from the source tree with -Iinclude alone, as the README shows for a program not installed
# (ddp.hpp's parts lived in src/ddp, which that could not find: helper-82).
c++ -std=c++20 -fsyntax-only -Wall -Wextra -Werror -I"$src/include" "$src/tests/mp/ddp_check.cc"
LOCKSTEP_TIMEOUT=60 timeout 120 "$tmp/prefix/bin/lockstep-run" -n 2 "$tmp/ddp_check"
echo "ddp install check: OK"
