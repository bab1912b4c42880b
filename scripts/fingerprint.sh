#!/usr/bin/env bash
# The simulator's trace fingerprint, before and after a change: one line per seed (trace
# hash, requests, events, violations, outcomes). A refactor of the engine or the simulator
# must leave it byte-identical; a bug fix names the seeds it changes and why.
#
#   scripts/fingerprint.sh BASE_REV [SEEDS]     # default SEEDS: 10000
#
# Builds sim-tests' `trace_hashes` example (release) at BASE_REV in a temporary worktree and
# in this working tree, runs both, and diffs. The base revision builds in a target dir of its
# own (target/fingerprint-base, kept between runs): cargo hashes a workspace member by its path
# relative to the workspace root, so two checkouts sharing one target dir can reuse each other's
# stale artifacts, judged only by file times.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: scripts/fingerprint.sh BASE_REV [SEEDS]}
seeds=${2:-10000}
target=$(pwd)/target
out=$(mktemp -d)
tree=$out/base
git worktree add --detach --quiet "$tree" "$base"
trap 'git worktree remove --force "$tree"; rm -rf "$out"' EXIT
hashes() { # dir target-dir file
  (cd "$1" && CARGO_TARGET_DIR=$2 cargo build --quiet --release -p sim-tests --example trace_hashes)
  "$2/release/examples/trace_hashes" "$seeds" >"$3"
}
echo "== $base"
hashes "$tree" "$target/fingerprint-base" "$out/before.txt"
echo "== working tree"
hashes . "$target" "$out/after.txt"
if diff "$out/before.txt" "$out/after.txt"; then
  echo "fingerprint identical for seeds 0..$seeds"
else
  echo "fingerprint differs (above: < $base, > working tree)"
  exit 1
fi
