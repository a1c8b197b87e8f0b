#!/bin/sh
# Benchmark the layer store on the Debian userland pair (v1 -> v2 security update).
# usage: scripts/bench-store.sh            (run from anywhere; needs dpkg-deb, tar, zstd)
# Prints the four ratios measured in one run plus hashing/compression throughput.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
data=${CHASI_BENCH_DATA:-$repo/../shared/bench-data}
for tool in dpkg-deb tar zstd; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench-store: $tool is required (apt-get install -y dpkg zstd tar)" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/chasi-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
"$data/unpack.sh" v1 "$tmp/v1"
"$data/unpack.sh" v2 "$tmp/v2"
cd "$repo"
cargo bench -q -p chasi-layers --bench ingest -- "$tmp/v1" "$tmp/v2" "$tmp/work"
