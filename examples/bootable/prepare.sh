#!/usr/bin/env bash
# Context recipe of the bootable example: fills rootfs/ with a real Debian kernel, a static
# busybox and a tiny /init that prints CHASI-BOOT-OK on the serial console and powers off.
# Nothing it downloads is committed (see .gitignore). Needs apt-get and dpkg-deb (Debian).
set -euo pipefail
cd "$(dirname "$0")"
# Two builds (or two tests) may prepare the context at once: one prepares, the other waits
# and then finds the result ready.
exec 9>.prepare.lock
flock 9
# rootfs/ is current when it was made by this very recipe (a changed /init or module list
# makes it again).
recipe=$(sha256sum prepare.sh | cut -d' ' -f1)
if [ -x rootfs/init ] && ls rootfs/boot/vmlinuz-* >/dev/null 2>&1 &&
  [ "$(cat rootfs.recipe 2>/dev/null)" = "$recipe" ]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  # linux-image-amd64 is a metapackage: resolve it to the real kernel package.
  kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$kpkg" ] || { echo "cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
  apt-get download "$kpkg" busybox-static >/dev/null
)
rm -rf rootfs.tmp
mkdir -p rootfs.tmp
for deb in "$work"/*.deb; do
  dpkg-deb -x "$deb" "$work/x"
done
mkdir -p rootfs.tmp/boot rootfs.tmp/bin rootfs.tmp/proc rootfs.tmp/sys rootfs.tmp/dev
cp "$work"/x/boot/vmlinuz-* rootfs.tmp/boot/
cp "$work"/x/boot/config-* rootfs.tmp/boot/ 2>/dev/null || true
cp "$work/x/bin/busybox" rootfs.tmp/bin/busybox
ln -s busybox rootfs.tmp/bin/sh
cat > rootfs.tmp/init <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev || true
# The type of the file system mounted last on / (busybox's `stat -f` knows no erofs).
root=$(/bin/busybox awk '$2 == "/" {t = $3} END {print t}' /proc/mounts)
/bin/busybox echo "CHASI-BOOT-OK root=$root" > /dev/ttyS0
/bin/busybox echo "CHASI-BOOT-OK root=$root" > /dev/console
/bin/busybox poweroff -f
INIT
chmod 0755 rootfs.tmp/init

# The Debian kernel has its disk and file-system drivers as modules (CONFIG_VIRTIO_BLK=m,
# CONFIG_EXT4_FS=m, ...), so a disk whose root is a partition needs an initramfs that loads
# them, finds the root partition by the PARTUUID on the kernel command line and switches
# to it: /boot/initrd.img-VERSION, built here like a distribution's initramfs.
kver=$(basename "$work"/x/boot/vmlinuz-* | sed 's/^vmlinuz-//')
depmod -b "$work/x" "$kver"
mods="virtio_pci virtio_blk virtio_scsi sd_mod ahci ata_piix sr_mod crc32c_generic ext4 squashfs erofs"
ird="$work/initrd"
mkdir -p "$ird/bin" "$ird/proc" "$ird/sys" "$ird/dev" "$ird/newroot" "$ird/lib/modules"
cp "$work/x/bin/busybox" "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
order=""
add() { # depth-first: dependencies before the module
  local path deps d
  path=$(awk -F: -v m="/$1.ko" 'index($1, m) && substr($1, length($1)-length(m)+1) == m {print $1; exit}' "$work/x/lib/modules/$kver/modules.dep")
  [ -n "$path" ] || { echo "module $1 not found" >&2; exit 1; }
  case " $order " in *" $path "*) return ;; esac
  deps=$(awk -F: -v p="$path" '$1 == p {print $2; exit}' "$work/x/lib/modules/$kver/modules.dep")
  for d in $deps; do add "$(basename "$d" .ko)"; done
  order="$order $path"
}
for m in $mods; do add "$m"; done
for path in $order; do
  cp "$work/x/lib/modules/$kver/$path" "$ird/lib/modules/"
  echo "$(basename "$path")" >> "$ird/lib/modules/order"
done
cat > "$ird/init" <<'INIT'
#!/bin/busybox sh
# Loads the disk drivers, finds root=PARTUUID=... among the GPT partitions, mounts it and
# switches to it; the image's own /init (or /sbin/init) then runs from the real root.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
for m in $(/bin/busybox cat /lib/modules/order); do /bin/busybox insmod /lib/modules/$m 2>/dev/null; done
want=""; fstype=""; mode=ro
for a in $(/bin/busybox cat /proc/cmdline); do
  case "$a" in
    root=PARTUUID=*) want=$(echo "${a#root=PARTUUID=}" | /bin/busybox tr A-F a-f) ;;
    rootfstype=*) fstype="${a#rootfstype=}" ;;
    rw) mode=rw ;;
    ro) mode=ro ;;
  esac
done
guid() { # GPT entry GUID of partition $2 of disk $1, in text form
  /bin/busybox dd if=/dev/$1 bs=1 skip=$((1024 + ($2 - 1) * 128 + 16)) count=16 2>/dev/null |
    /bin/busybox hexdump -v -e '16/1 "%02x "' | {
      read a b c d e f g h i j k l m n o p
      echo "$d$c$b$a-$f$e-$h$g-$i$j-$k$l$m$n$o$p"
    }
}
i=0
while [ $i -lt 100 ]; do
  for s in /sys/class/block/*; do
    [ -f "$s/partition" ] || continue
    part=$(/bin/busybox basename "$s"); disk=$(/bin/busybox basename "$(/bin/busybox readlink -f "$s/..")")
    if [ "$(guid "$disk" "$(/bin/busybox cat "$s/partition")")" = "$want" ]; then
      if /bin/busybox mount -o $mode ${fstype:+-t $fstype} "/dev/$part" /newroot; then
        /bin/busybox umount /proc /sys /dev
        init=/init; [ -x /newroot/init ] || init=/sbin/init
        exec /bin/busybox switch_root /newroot "$init"
      fi
    fi
  done
  i=$((i + 1)); /bin/busybox sleep 0.1
done
echo "initrd: root partition PARTUUID=$want not found" > /dev/console
/bin/busybox poweroff -f
INIT
chmod 0755 "$ird/init"
(cd "$ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 --reproducible) | gzip -n -9 > "rootfs.tmp/boot/initrd.img-$kver"

rm -rf rootfs
mv rootfs.tmp rootfs
echo "$recipe" > rootfs.recipe
