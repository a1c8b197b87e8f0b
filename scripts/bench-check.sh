#!/usr/bin/env bash
# Times `chasi check` on a generated 20,000-line Kubefile.
#  1. the in-process benchmark (parse + check + plan, best of 7): compiler/benches/check.rs;
#  2. the release `chasi check` binary on the same kind of file (process start, read, render
#     included), with hyperfine when it is installed, else a loop timed with `date`.
# Usage: scripts/bench-check.sh [LINES]   (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
lines="${1:-20000}"

cargo bench -p chasi-compiler --bench check
cargo build --release --bin chasi
chasi="$PWD/target/release/chasi"

dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
kubefile="$dir/Kubefile"
# Same shape as the generator in compiler/benches/check.rs: 3 header lines, 10-line blocks, 6 trailer lines.
{
  printf 'ARG BASE=scratch\nFROM ${BASE} AS tools\nARG VERSION=1.0\n'
  i=0
  while (( 3 + 10 * (i + 1) + 7 <= lines )); do
    printf 'COPY --chmod=0644 files/%d/a.yaml files/%d/b.yaml manifests/%d/\n' "$i" "$i" "$i"
    printf 'ADD https://example.com/%d.tar.gz downloads/\n' "$i"
    printf 'RUN echo step %d ${VERSION} && test -d manifests/%d\n' "$i" "$i"
    printf 'ENV STEP_%d="value %d" LEGACY_%d=x\n' "$i" "$i" "$i"
    printf 'LABEL io.example.step%d="${VERSION}-%d"\n' "$i" "$i"
    printf 'ARG OPT=${VERSION:-%d}\n' "$i"
    printf 'COPY ${ARCH}/bin/tool%d bin/\n' "$i"
    printf 'APP app%d local://apps/%d/deploy.yaml local://apps/%d/svc.yml\n' "$i" "$i" "$i"
    printf 'APPENV app%d REPLICAS=%d NAME=app%d\n' "$i" "$i" "$i"
    printf '# a comment line between blocks\n'
    i=$((i + 1))
  done
  printf 'FROM scratch AS extra\nCOPY --from=tools manifests/ manifests/\n'
  printf 'FROM tools\nCOPY --from=extra manifests/ more/\nKUBEVERSION >=1.22 <1.30\nLAUNCH ["app0"]\n'
} > "$kubefile"
echo "generated $(wc -l < "$kubefile") lines, $(wc -c < "$kubefile") bytes"

"$chasi" check -f "$kubefile" | tail -1

if command -v hyperfine > /dev/null; then
  hyperfine --warmup 2 --runs 10 "$chasi check -f $kubefile"
else
  runs=10
  best=""
  for _ in $(seq "$runs"); do
    start=$(date +%s%N)
    "$chasi" check -f "$kubefile" > /dev/null
    end=$(date +%s%N)
    ms=$(( (end - start) / 1000000 ))
    if [[ -z "$best" || "$ms" -lt "$best" ]]; then best="$ms"; fi
  done
  echo "chasi check (release): best of $runs runs: ${best} ms (hyperfine not installed)"
fi
