#!/bin/bash
# The pre-panel default (commit 456bee2, the parent of the panels' commit 8fd1340) against
# `--strength low` at the checkout, side by side in ABBA order, 2 threads, the default
# 32-photo workload.  The old code runs from a copy laid out as the installed package
# (camo_engine -> engine/, .export, .kernels, .benchmarks) on PYTHONPATH, with the checkout's venv.
set -euo pipefail
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
OUT=${1:-/tmp/lvo}
OLD=$(mktemp -d)
mkdir -p "$OLD/src" "$OUT"
git -C "$ROOT" archive 456bee2 | tar -x -C "$OLD/src"
cp -r "$OLD/src/engine" "$OLD/camo_engine"
for sub in export kernels benchmarks; do cp -r "$OLD/src/$sub" "$OLD/camo_engine/$sub"; done
run_old() { (cd "$OLD" && PYTHONPATH="$OLD" "$ROOT/.venv/bin/python" -m camo_engine bench --victim "$1" --threads 2 --runs 3 --out "$OUT" --name "old_$1_$2"); }
run_new() { (cd "$ROOT" && .venv/bin/camo-engine bench --victim "$1" --threads 2 --runs 3 --strength low --out "$OUT" --name "new_$1_$2"); }
for v in efficientnet-lite0 brisque; do
  run_old "$v" a; run_new "$v" a; run_new "$v" b; run_old "$v" b
done
