#!/usr/bin/env bash
# Instructions per request of session-tower, in process (see
# bench-http/src/profile.rs): for each kind of request, two callgrind runs
# with N1 and N2 requests; (total(N2) - total(N1)) / (N2 - N1) cancels the
# setup out. Usage: bench-http/callgrind.sh [N1 N2]   (default 5000 10000)
# Builds with `cargo build --release -j1 -p session-bench-http` first.
set -euo pipefail
n1=${1:-5000}
n2=${2:-10000}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -j1 -p session-bench-http --manifest-path "$root/Cargo.toml" >&2
target=${CARGO_TARGET_DIR:-$root/target}
exe=$target/release/session-bench-http
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
total() { # KIND N [--bare]
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$exe" profile "$@" >/dev/null 2>&1
  awk '/^summary:/ { print $2 }' "$out/cg"
}
printf '| request | app | instructions per request |\n|---|---|---:|\n'
for app in ours bare; do
  flag=(); [ "$app" = bare ] && flag=(--bare)
  for kind in untouched read write; do
    a=$(total "$kind" "$n1" "${flag[@]}")
    b=$(total "$kind" "$n2" "${flag[@]}")
    printf '| %s | %s | %d |\n' "$kind" "$app" $(( (b - a) / (n2 - n1) ))
  done
done
