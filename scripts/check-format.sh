#!/usr/bin/env bash
# Fails when a tracked C/C++ file is not clang-formatted; skips (77) without clang-format.
set -euo pipefail
cd "${1:-.}"
command -v clang-format >/dev/null || { echo "clang-format not installed: skipping"; exit 77; }
files=$(git ls-files '*.cc' '*.h' '*.hpp' '*.c' '*.cu' 2>/dev/null || find . -name '*.cc' -o -name '*.h')
bad=0
for f in $files; do
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then echo "not formatted: $f"; bad=1; fi
done
exit $bad
