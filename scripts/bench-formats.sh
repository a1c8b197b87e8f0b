#!/usr/bin/env bash
# Benchmark of the native QCOW2 writer against qemu-img on a ~1 GiB root filesystem.
# usage: scripts/bench-formats.sh [WORKDIR] [RUNS]
# Builds WORKDIR/rootfs from ../shared/bench-data (Debian userland v1) padded with random
# and zero files to about 1 GiB, makes an ext4 image of it with `mke2fs -d`, and prints in
# one run: our qcow2 time vs `qemu-img convert -O qcow2` of our raw export, and our zstd
# qcow2 time and size vs `qemu-img convert -c -O qcow2 -o compression_type=zstd`.
# Needs: dpkg-deb (dpkg), mke2fs (e2fsprogs), qemu-img (qemu-utils).
set -euo pipefail
cd "$(dirname "$0")/.."
for t in dpkg-deb:dpkg mke2fs:e2fsprogs qemu-img:qemu-utils; do
  command -v "${t%%:*}" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "${t%%:*}" >/dev/null \
    || { echo "bench-formats: ${t%%:*} not found: install the Debian package ${t#*:}" >&2; exit 1; }
done
export PATH=$PATH:/usr/sbin:/sbin
data=../shared/bench-data
[ -x "$data/unpack.sh" ] || { echo "bench-formats: $data/unpack.sh not found (shared bench data)" >&2; exit 1; }
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/chasi-bench-formats.XXXXXX")}
runs=${2:-2}
mkdir -p "$work"
root="$work/rootfs"
if [ ! -e "$work/rootfs.img" ]; then
  rm -rf "$root"
  "$data/unpack.sh" v1 "$root"
  have=$(du -sm "$root" | cut -f1)
  # Pad to ~1 GiB: two thirds incompressible, one third zeros (sparse in the image).
  pad=$(( 1024 - have ))
  if [ "$pad" -gt 0 ]; then
    mkdir -p "$root/var/lib/bench"
    head -c $(( pad * 2 / 3 ))M /dev/urandom > "$root/var/lib/bench/random.bin"
    head -c $(( pad / 3 ))M /dev/zero > "$root/var/lib/bench/zero.bin"
  fi
  total=$(du -sm --apparent-size "$root" | cut -f1)
  size=$(( total * 115 / 100 + 64 ))
  E2FSPROGS_FAKE_TIME=0 mke2fs -q -t ext4 -F -U 8c4a3a0e-6b7f-4a61-9b1e-3d1f2c5e7a90 \
    -E hash_seed=1f7c3a52-7d54-4c1e-8a0b-4b9b3f2d6e11 -d "$root" "$work/rootfs.img" "${size}M"
  echo "rootfs: $(du -sm "$root" | cut -f1) MiB of files, ext4 image ${size} MiB"
fi
cargo bench -q -p chasi-formats --bench qcow2_vs_qemu_img -- "$work/rootfs.img" "$runs"
