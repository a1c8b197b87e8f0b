#!/usr/bin/env bash
# Benchmark `chasi push` and `chasi pull` against `skopeo copy` of the same image between the same
# endpoints, in one run: the Debian userland of ../shared/bench-data (~91 MB) built as one zstd layer,
# a `docker-registry` on a free 127.0.0.1 port with fresh storage for every run.
#   push: `chasi push` from the store   vs `skopeo copy oci:LAYOUT docker://…` (the same blobs, saved)
#   pull: `chasi pull` into an empty store vs `skopeo copy docker://… oci:DIR`
# Prints each figure (best of RUNS runs, default 3) and chasi's time over skopeo's (target: <= 1.0).
# Needs dpkg-deb, tar, skopeo, docker-registry.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
data=${CHASI_BENCH_DATA:-$repo/../shared/bench-data}
runs=${RUNS:-3}
for tool in dpkg-deb tar skopeo docker-registry python3; do
  command -v "$tool" >/dev/null || { echo "bench-registry: $tool is required" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/chasi-bench-registry.XXXXXX")
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
"$data/unpack.sh" v1 "$tmp/ctx/rootfs" >/dev/null
printf 'FROM scratch\nCOPY rootfs/ /\n' > "$tmp/ctx/Kubefile"
(cd "$repo" && cargo build --release --locked --quiet)
chasi="$repo/target/release/chasi"
"$chasi" --store "$tmp/store" build --progress plain -t bench:v1 "$tmp/ctx" >/dev/null 2>&1
"$chasi" --store "$tmp/store" save bench:v1 --format oci -o "$tmp/layout" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
reg="127.0.0.1:$port"

start() {
  rm -rf "$tmp/reg"; mkdir -p "$tmp/reg"
  printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
    "$tmp/reg/storage" "$reg" > "$tmp/reg/config.yml"
  docker-registry serve "$tmp/reg/config.yml" >"$tmp/reg/log" 2>&1 & pid=$!
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 0.05; done
  echo "bench-registry: docker-registry did not start" >&2; cat "$tmp/reg/log" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
now() { date +%s.%N; }
best() { sort -g | head -n1; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
timed() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); elapsed "$t0" "$t1"; }

push_chasi=$(for _ in $(seq "$runs"); do
  start; timed "$chasi" --store "$tmp/store" push bench:v1 "$reg/bench/img:v1"; stop
done | best)
push_skopeo=$(for _ in $(seq "$runs"); do
  start; timed skopeo copy -q --dest-tls-verify=false "oci:$tmp/layout" "docker://$reg/bench/img:v1"; stop
done | best)
start
"$chasi" --store "$tmp/store" push bench:v1 "$reg/bench/img:v1" >/dev/null
pull_chasi=$(for _ in $(seq "$runs"); do
  rm -rf "$tmp/pulled"; sync
  timed "$chasi" --store "$tmp/pulled" pull "$reg/bench/img:v1"
done | best)
pull_skopeo=$(for _ in $(seq "$runs"); do
  rm -rf "$tmp/copied"; sync
  timed skopeo copy -q --src-tls-verify=false "docker://$reg/bench/img:v1" "oci:$tmp/copied:v1"
done | best)
stop
size=$(du -sb "$tmp/layout/blobs" | cut -f1)
python3 - "$push_chasi" "$push_skopeo" "$pull_chasi" "$pull_skopeo" "$size" <<'PY'
import sys
pc, ps, lc, ls, size = map(float, sys.argv[1:])
print(f"image: {size/1e6:.1f} MB of blobs (zstd)")
print(f"push: chasi {pc:.3f} s, skopeo {ps:.3f} s, ratio {pc/ps:.2f} (target <= 1.0)")
print(f"pull: chasi {lc:.3f} s (into the store), skopeo {ls:.3f} s (to an OCI layout), ratio {lc/ls:.2f} (target <= 1.0)")
PY
