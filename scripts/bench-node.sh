#!/bin/sh
# Benchmark the node runtime on the Debian userland update in ../shared/bench-data (v1 -> v2): the static
# `chasi-node` applying the full v1 image to a fresh node, then the v1->v2 delta, with a dry run and a
# verify, each with its wall time and peak RSS (GNU time).
# usage: scripts/bench-node.sh        (run from anywhere; needs dpkg-deb and GNU time; builds chasi and
#                                       the static chasi-node in release mode; CHASI=PATH uses that chasi)
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
data=${CHASI_BENCH_DATA:-$repo/../shared/bench-data}
for tool in dpkg-deb /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-node: $tool is required (apt-get install -y dpkg time)" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/chasi-bench-node.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
target=${CARGO_TARGET_DIR:-$repo/target}
if [ -z "${CHASI:-}" ]; then
  (cd "$repo" && cargo build --release --locked --quiet --bin chasi)
  CHASI=$target/release/chasi
fi
"$repo/scripts/build-node-static.sh" >/dev/null
node=$target/x86_64-unknown-linux-gnu/release/chasi-node.stripped

measure() {
  name=$1
  shift
  /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/out" "$tmp/err" >&2; echo "bench-node: $name failed" >&2; exit 1; }
  # shellcheck disable=SC2046
  set -- $(tail -n 1 "$tmp/time")
  printf '%-22s %8s s %8s MiB peak RSS\n' "$name" "$1" "$(($2 / 1024))"
}

for v in v1 v2; do
  "$data/unpack.sh" "$v" "$tmp/ctx-$v/rootfs" >/dev/null
  printf 'FROM scratch\nCOPY rootfs/ /\n' > "$tmp/ctx-$v/Kubefile"
  "$CHASI" --store "$tmp/store" build --progress plain -t "bench:$v" "$tmp/ctx-$v" >/dev/null 2>&1
done
"$CHASI" --store "$tmp/store" save bench:v1 -o "$tmp/v1.tar" >/dev/null
"$CHASI" --store "$tmp/store" delta bench:v1 bench:v2 --level release -o "$tmp/v1-v2.delta" >/dev/null
echo "v1 archive $(stat -c %s "$tmp/v1.tar") bytes, delta $(stat -c %s "$tmp/v1-v2.delta") bytes, chasi-node $(stat -c %s "$node") bytes"
measure "apply v1 (full)" "$node" --root "$tmp/node" apply "$tmp/v1.tar"
measure "verify v1" "$node" --root "$tmp/node" verify
measure "dry-run delta" "$node" --root "$tmp/node" apply --dry-run "$tmp/v1-v2.delta"
cat "$tmp/out"
measure "apply delta v1->v2" "$node" --root "$tmp/node" apply "$tmp/v1-v2.delta"
measure "verify v2" "$node" --root "$tmp/node" verify
measure "rollback" "$node" --root "$tmp/node" rollback
