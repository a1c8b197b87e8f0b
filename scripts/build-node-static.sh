#!/bin/sh
# Build the node runtime `chasi-node` as one static executable (glibc with crt-static: no musl std is
# installable here) and check that it is static.
# usage: scripts/build-node-static.sh [--debug]      (run from anywhere; needs file, ldd, strip)
# Prints the path, `file`'s verdict and the stripped size. Not in the default test suite: building every
# dependency a second time for the explicit target takes minutes on two cores.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
profile=release
flag=--release
if [ "${1:-}" = "--debug" ]; then
  profile=debug
  flag=
fi
for tool in file ldd strip; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build-node-static: $tool is required (apt-get install -y file binutils libc-bin)" >&2; exit 1; }
done
target=x86_64-unknown-linux-gnu
cd "$repo"
# shellcheck disable=SC2086
RUSTFLAGS='-C target-feature=+crt-static' cargo build --locked $flag -p chasi-runtime --bin chasi-node --target "$target"
bin=${CARGO_TARGET_DIR:-$repo/target}/$target/$profile/chasi-node
what=$(file -b "$bin")
echo "$bin: $what"
case "$what" in
  *"statically linked"*|*"static-pie linked"*) ;;
  *) echo "build-node-static: $bin is not static" >&2; exit 1 ;;
esac
if ldd "$bin" >/dev/null 2>&1 && ! ldd "$bin" 2>&1 | grep -q "statically linked"; then
  echo "build-node-static: ldd lists shared libraries for $bin:" >&2
  ldd "$bin" >&2
  exit 1
fi
stripped=$bin.stripped
strip -o "$stripped" "$bin"
"$stripped" --version
echo "stripped size: $(wc -c < "$stripped") bytes ($stripped)"
# It needs nothing from the system: as root, run it in an empty root directory.
if [ "$(id -u)" = 0 ] && command -v chroot >/dev/null 2>&1; then
  empty=$(mktemp -d "${TMPDIR:-/tmp}/chasi-node-empty.XXXXXX")
  trap 'rm -rf "$empty"' EXIT INT TERM
  cp "$stripped" "$empty/chasi-node"
  chroot "$empty" /chasi-node --root / status --format json >/dev/null
  echo "runs in an empty root: status ok"
fi
