#!/usr/bin/env bash
# Benchmark `chasi build` on a real Debian userland (../shared/bench-data, ~91 MB, 2478 files),
# as a Kubefile that COPYs the unpacked rootfs. Prints, measured in this one run:
#   cold build (empty store) vs `tar -c | zstd -3 -T0 > /dev/null` of the same tree (ratio),
#   unchanged rebuild vs the cold build (target: <= 2 %, issue 12),
#   the build of v2 (the Debian security update, a second context) into a store holding v1, blob digest
#   included, vs the cold build of v1 (target: >= 2x faster, issue 12).
# Each figure is the best of RUNS runs (default 3). Needs dpkg-deb, tar, zstd.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
data=${CHASI_BENCH_DATA:-$repo/../shared/bench-data}
runs=${RUNS:-3}
for tool in dpkg-deb tar zstd; do
  command -v "$tool" >/dev/null || { echo "bench-build: $tool is required" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/chasi-bench-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
"$data/unpack.sh" v1 "$tmp/ctx/rootfs" >/dev/null
"$data/unpack.sh" v2 "$tmp/ctx2/rootfs" >/dev/null
printf 'FROM scratch\nCOPY rootfs/ /\n' > "$tmp/ctx/Kubefile"
cp "$tmp/ctx/Kubefile" "$tmp/ctx2/Kubefile"
(cd "$repo" && cargo build --release --locked --quiet)
chasi="$repo/target/release/chasi"
sync

now() { date +%s.%N; }
best() { sort -g | head -n1; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }

peer=$(for _ in $(seq "$runs"); do
  t0=$(now); tar -C "$tmp/ctx" -cf - rootfs | zstd -3 -T0 -q > /dev/null; t1=$(now); elapsed "$t0" "$t1"
done | best)
cold=$(for i in $(seq "$runs"); do
  rm -rf "$tmp/store"; sync
  t0=$(now); "$chasi" --store "$tmp/store" build --progress plain -t bench:v1 "$tmp/ctx" >/dev/null 2>&1; t1=$(now); elapsed "$t0" "$t1"
done | best)
warm=$(for _ in $(seq "$runs"); do
  t0=$(now); "$chasi" --store "$tmp/store" build --progress plain -t bench:v1 "$tmp/ctx" >/dev/null 2>&1; t1=$(now); elapsed "$t0" "$t1"
done | best)
update=$(for i in $(seq "$runs"); do
  rm -rf "$tmp/store"; sync
  "$chasi" --store "$tmp/store" build --progress plain -t bench:v1 "$tmp/ctx" >/dev/null 2>&1
  t0=$(now); "$chasi" --store "$tmp/store" build --progress plain -t bench:v2 "$tmp/ctx2" >/dev/null 2>&1; t1=$(now); elapsed "$t0" "$t1"
done | best)
size=$(du -sb "$tmp/ctx/rootfs" | cut -f1)
python3 - "$peer" "$cold" "$warm" "$update" "$size" <<'PY'
import sys
peer, cold, warm, update, size = map(float, sys.argv[1:])
print(f"tree: {size/1e6:.1f} MB")
print(f"tar | zstd -3 -T0        {peer:7.3f} s  ({size/1e6/peer:6.1f} MB/s)")
print(f"chasi build (cold)       {cold:7.3f} s  ({size/1e6/cold:6.1f} MB/s)")
print(f"chasi build (unchanged)  {warm:7.3f} s")
print(f"ratio cold build / tar|zstd:   {cold/peer:.2f}  (target <= 1.0)")
print(f"chasi build v2 after v1  {update:7.3f} s  (a second context: every file hashed, the blob digest computed)")
print(f"ratio unchanged / cold build:  {warm/cold*100:.1f} %  (target <= 2 %)")
print(f"ratio cold v1 / v2 after v1:   {cold/update:.2f}x faster  (target >= 2)")
PY
