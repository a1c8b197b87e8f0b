#!/usr/bin/env bash
# Every benchmark of the repository in one run, with the machine it ran on: the CPU model, its core count
# and whether it has SHA-NI (SHA-256 runs ~5x faster with it, which moves the store's ratios). Then the
# ratio lines of each script (their full output is kept in the work directory printed at the end), and a
# buildah row: `buildah build` of the bench tree (COPY rootfs /, vfs driver) and `buildah push
# --compression-format zstd` to an oci-archive, the alternative a user would reach for.
# usage: scripts/bench.sh            (SKIP_SLOW=1 skips bsdiff in bench-delta and the disk formats)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
data=${CHASI_BENCH_DATA:-$repo/../shared/bench-data}
out=$(mktemp -d "${TMPDIR:-/tmp}/chasi-bench-all.XXXXXX")
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
sha=$(grep -qw sha_ni /proc/cpuinfo && echo "SHA-NI" || echo "no SHA-NI")
echo "machine: $cpu, $(nproc) cores, $sha, $(date -u +%Y-%m-%dT%H:%MZ)"

run() {
  local name=$1; shift
  echo "== $name"
  if "$@" > "$out/$name.txt" 2>&1; then
    grep -Ei 'ratio|target|/ ' "$out/$name.txt" | grep -v '^\s*$' || tail -n 5 "$out/$name.txt"
  else
    echo "$name failed (see $out/$name.txt)"; tail -n 5 "$out/$name.txt"
  fi
}

run store "$repo/scripts/bench-store.sh"
run build "$repo/scripts/bench-build.sh"
run delta "$repo/scripts/bench-delta.sh"
run registry "$repo/scripts/bench-registry.sh"
run sandbox-run "$repo/scripts/bench-run.sh"
run check "$repo/scripts/bench-check.sh"
run export "$repo/scripts/bench-export.sh"
[ -n "${SKIP_SLOW:-}" ] || run formats "$repo/scripts/bench-formats.sh"

if command -v buildah >/dev/null; then
  echo "== buildah (vfs): build and push as zstd of the bench tree"
  ctx="$out/buildah-ctx"
  "$data/unpack.sh" v1 "$ctx/rootfs" >/dev/null
  printf 'FROM scratch\nCOPY rootfs/ /\n' > "$ctx/Containerfile"
  export STORAGE_DRIVER=vfs
  root="$out/buildah-root"
  t0=$(date +%s.%N)
  buildah --root "$root" --runroot "$out/buildah-run" build -q -t bench:v1 "$ctx" >/dev/null 2>&1
  t1=$(date +%s.%N)
  buildah --root "$root" --runroot "$out/buildah-run" push -q --compression-format zstd bench:v1 "oci-archive:$out/buildah.tar" >/dev/null 2>&1
  t2=$(date +%s.%N)
  python3 -c "import sys; b,p=float(sys.argv[2])-float(sys.argv[1]),float(sys.argv[3])-float(sys.argv[2]); print(f'buildah build {b:.2f} s, push --compression-format zstd {p:.2f} s')" "$t0" "$t1" "$t2"
  buildah --root "$root" --runroot "$out/buildah-run" rm --all >/dev/null 2>&1 || true
  rm -rf "$root" "$ctx"
fi
echo "full outputs: $out"
