#!/usr/bin/env bash
# Benchmark `chasi export --format tar|raw|qcow2` of the bench tree (../shared/bench-data v1, a Debian
# userland, ~91 MB, 2478 files, built as `FROM scratch` + `COPY rootfs/ /`) against the tools a user would
# chain by hand on the same tree, measured in this one run (issue 12: each ratio <= 1.0):
#   export tar   vs  tar -x of that tar             (the rootfs made usable from the image's layer)
#   export raw   vs  tar -x + mke2fs -d             (the rootfs as an ext4 image)
#   export qcow2 vs  tar -x + mke2fs -d + qemu-img convert -O qcow2
# The peer's input is chasi's own tar export (the flattened layer), made beforehand and not timed; its
# mke2fs gets the size chasi chose for the root partition. Exports of this image are data disks (no
# kernel), so chasi's extra work over the peer is the GPT around the file system and reproducibility
# (clamped times, derived UUIDs).
# Durability is made equal: chasi fsyncs its output before renaming it into place, so the peer's final
# file (img.raw, img.qcow2) is fsynced with `sync FILE`, timed; intermediates are synced by neither.
# `tar -x` gets no sync (a tree has no one output file), which favours the peer. chasi removes its work
# tree inside the timed command; the peer's tree is removed untimed. The peer works in the store's tmp/,
# where chasi unpacks too: on ext4 without a journal, allocating an inode steps over every inode of its
# block group deleted in the last minutes, so a tree made next to freshly deleted ones is slower to make,
# and both sides should meet the same groups. Every timed command starts after a `sync`, and the order
# of chasi and the peer alternates between rounds.
# Each figure is the best of RUNS rounds (default 3). Needs dpkg-deb, tar, mke2fs, qemu-img, python3.
# usage: scripts/bench-export.sh     (CHASI_BIN=path/to/chasi benchmarks that build instead of this tree's)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
data=${CHASI_BENCH_DATA:-$repo/../shared/bench-data}
runs=${RUNS:-3}
export PATH=$PATH:/usr/sbin:/sbin
for tool in dpkg-deb:dpkg tar:tar mke2fs:e2fsprogs qemu-img:qemu-utils python3:python3; do
  command -v "${tool%%:*}" >/dev/null \
    || { echo "bench-export: ${tool%%:*} is required (Debian package ${tool#*:})" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/chasi-bench-export.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
"$data/unpack.sh" v1 "$tmp/ctx/rootfs" >/dev/null
printf 'FROM scratch\nCOPY rootfs/ /\n' > "$tmp/ctx/Kubefile"
if [ -n "${CHASI_BIN:-}" ]; then
  chasi=$CHASI_BIN   # another build of chasi, to compare
else
  (cd "$repo" && cargo build --release --locked --quiet)
  chasi="$repo/target/release/chasi"
fi
store="$tmp/store"
"$chasi" --store "$store" build --progress plain -t bench:v1 "$tmp/ctx" >/dev/null 2>&1
"$chasi" --store "$store" export --format tar -o "$tmp/layer.tar" bench:v1 >/dev/null 2>&1
# The root partition's size, from the raw export's report ("root partition GUID (ext4) N bytes").
root_bytes=$("$chasi" --store "$store" export --format raw -o "$tmp/warm.raw" bench:v1 2>&1 \
  | sed -n 's/.*root partition .* (ext4) \([0-9]*\) bytes.*/\1/p')
[ -n "$root_bytes" ] || { echo "bench-export: no root partition size in chasi's report" >&2; exit 1; }
rm -f "$tmp/warm.raw"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
sha=$(grep -qw sha_ni /proc/cpuinfo && echo "SHA-NI" || echo "no SHA-NI")
echo "machine: $cpu, $(nproc) cores, $sha"
files=$(find "$tmp/ctx/rootfs" -type f | wc -l)
echo "tree: $(du -sb "$tmp/ctx/rootfs" | cut -f1) bytes, $files files; root file system $root_bytes bytes"
echo "durability: chasi fsyncs its output; the peer's img.raw / img.qcow2 get a timed \`sync FILE\`"

now() { date +%s.%N; }
# elapsed T0 T1: seconds between two `now` stamps.
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }

# One chasi export: prints "FORMAT SECONDS".
chasi_run() {
  local fmt=$1 t0 t1
  rm -f "$tmp/out.$fmt"; sync
  t0=$(now)
  "$chasi" --store "$store" export --format "$fmt" -o "$tmp/out.$fmt" bench:v1 >/dev/null 2>&1
  t1=$(now)
  echo "$fmt $(elapsed "$t0" "$t1")"
}

# The peer's chain, each step timed: prints "tarx S", "mke2fs S", "syncraw S", "convert S", "syncqcow2 S".
peer_run() {
  local p=$store/tmp/peer t0 t1 t2 t3 t4 t5
  rm -rf "$p"; mkdir -p "$p/tree"; sync
  t0=$(now)
  tar -xf "$tmp/layer.tar" -C "$p/tree"
  t1=$(now)
  mke2fs -q -t ext4 -d "$p/tree" "$p/img.raw" "$((root_bytes / 1024))k" >/dev/null
  t2=$(now)
  sync "$p/img.raw"
  t3=$(now)
  qemu-img convert -O qcow2 "$p/img.raw" "$p/img.qcow2" >/dev/null
  t4=$(now)
  sync "$p/img.qcow2"
  t5=$(now)
  echo "tarx $(elapsed "$t0" "$t1")"
  echo "mke2fs $(elapsed "$t1" "$t2")"
  echo "syncraw $(elapsed "$t2" "$t3")"
  echo "convert $(elapsed "$t3" "$t4")"
  echo "syncqcow2 $(elapsed "$t4" "$t5")"
  rm -rf "$p"
}

results=$tmp/results
: > "$results"
for i in $(seq "$runs"); do
  if [ $((i % 2)) -eq 1 ]; then
    { chasi_run tar; chasi_run raw; chasi_run qcow2; peer_run; } | sed "s/^/$i /" >> "$results"
  else
    { peer_run; chasi_run tar; chasi_run raw; chasi_run qcow2; } | sed "s/^/$i /" >> "$results"
  fi
done

python3 - "$results" <<'PY'
import sys
from collections import defaultdict
rounds = defaultdict(dict)
for line in open(sys.argv[1]):
    r, name, secs = line.split()
    rounds[r][name] = float(secs)
def best(f):
    return min(f(v) for v in rounds.values())
rows = [
    ("tar", "tar -x", lambda v: v["tarx"]),
    ("raw", "tar -x + mke2fs -d + sync", lambda v: v["tarx"] + v["mke2fs"] + v["syncraw"]),
    ("qcow2", "tar -x + mke2fs -d + qemu-img convert + sync",
     lambda v: v["tarx"] + v["mke2fs"] + v["convert"] + v["syncqcow2"]),
]
steps = {k: best(lambda v, k=k: v[k]) for k in ("tarx", "mke2fs", "syncraw", "convert", "syncqcow2")}
print("peer steps (best of each): " + ", ".join(f"{k} {s:.3f} s" for k, s in steps.items()))
ratios = []
for fmt, peer_name, peer in rows:
    ours, theirs = best(lambda v: v[fmt]), best(peer)
    print(f"chasi export --format {fmt:<6} {ours:7.3f} s   {peer_name:<45} {theirs:7.3f} s")
    ratios.append((fmt, peer_name, ours / theirs))
for fmt, peer_name, r in ratios:
    print(f"ratio export {fmt} / ({peer_name}): {r:.2f}  (target <= 1.0)")
PY
