#!/usr/bin/env bash
# Benchmark a RUN step in its sandbox: a Kubefile whose RUN (busybox) writes 2,000 files,
# built cold by `chasi build` and by `buildah build` (runc, vfs storage driver), in this one run.
# Prints the best of RUNS runs (default 5) of each and the ratio chasi / buildah (target <= 0.5).
# Needs buildah, runc and busybox-static (Debian packages); run as root (buildah's vfs driver and
# the sandbox's overlay as root are what is compared).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-5}
for tool in buildah runc busybox; do
  command -v "$tool" >/dev/null || { echo "bench-run: $tool is required (apt-get install buildah runc busybox-static)" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/chasi-bench-run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir -p "$tmp/ctx/rootfs/bin"
cp "$(command -v busybox)" "$tmp/ctx/rootfs/bin/busybox"
ln -s busybox "$tmp/ctx/rootfs/bin/sh"
cat > "$tmp/ctx/Kubefile" <<'EOF'
FROM scratch
COPY rootfs/ /
RUN mkdir -p /data && cd /data && i=0; while [ $i -lt 2000 ]; do echo "file $i" > "f$i"; i=$((i+1)); done
EOF
(cd "$repo" && cargo build --release --locked --quiet)
chasi="$repo/target/release/chasi"

now() { date +%s.%N; }
best() { sort -g | head -n1; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }

# Interleaved, so drift of the machine's speed hits both alike.
: > "$tmp/chasi.times"; : > "$tmp/buildah.times"
for _ in $(seq "$runs"); do
  rm -rf "$tmp/store"; sync
  t0=$(now); "$chasi" --store "$tmp/store" build --progress plain -t bench:run "$tmp/ctx" >/dev/null 2>&1; t1=$(now)
  elapsed "$t0" "$t1" >> "$tmp/chasi.times"
  rm -rf "$tmp/broot" "$tmp/brunroot"; sync
  t0=$(now)
  buildah --storage-driver vfs --root "$tmp/broot" --runroot "$tmp/brunroot" build --quiet \
    --runtime "$(command -v runc)" --isolation oci -f "$tmp/ctx/Kubefile" -t bench:run "$tmp/ctx" >/dev/null 2>&1
  t1=$(now)
  elapsed "$t0" "$t1" >> "$tmp/buildah.times"
done
# The chasi layer must really hold the 2,000 files.
files=$("$chasi" --store "$tmp/store" export bench:run --format tar -o - 2>/dev/null | tar -t | grep -c '^data/f' || true)
[ "$files" = 2000 ] || { echo "bench-run: the RUN layer has $files files, expected 2000" >&2; exit 1; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
sha=$(grep -qw sha_ni /proc/cpuinfo && echo "SHA-NI" || echo "no SHA-NI")
python3 - "$(best < "$tmp/chasi.times")" "$(best < "$tmp/buildah.times")" "$cpu ($sha, $(nproc) cores)" <<'PY'
import sys
chasi, buildah, cpu = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
print(f"cpu: {cpu}")
print(f"chasi build (runc sandbox)   {chasi:7.3f} s")
print(f"buildah build (runc, vfs)    {buildah:7.3f} s")
print(f"ratio chasi / buildah:       {chasi/buildah:.2f}  (target <= 0.5)")
PY
