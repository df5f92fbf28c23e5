#!/usr/bin/env bash
# Artifact benchmarks: planrun's tar / encrypt steps side by side with the
# CLI pipelines an operator would otherwise use, on the same generated tree
# (scripts/gendata, fixed seed), in the same run. Prints one table.
#
#   BENCH_SIZE=2GiB (default) | 256MiB for a quick check
#   BENCH_DIR=/var/tmp/planrun-bench   where data and outputs go (needs ~3x size)
#   BENCH_RUNS=2                       best-of-N for each case (tar -czf: 1)
#   BENCH_SEED=1
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE=${BENCH_SIZE:-2GiB}
DIR=${BENCH_DIR:-/var/tmp/planrun-bench}
RUNS=${BENCH_RUNS:-2}
SEED=${BENCH_SEED:-1}
GO=${GO:-go}

for tool in tar zstd gzip age openssl /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-artifact: $tool is not installed" >&2; exit 1; }
done

mkdir -p "$DIR/bin" "$DIR/out"
TREE="$DIR/tree-$SIZE-seed$SEED"
INPUT="$DIR/input-$SIZE-seed$SEED.tar"
PUB="$ROOT/testdata/keys/demo.agepub"
PASS="$ROOT/testdata/keys/demo.passphrase"
OUT="$DIR/out"

echo "== building" >&2
$GO build -o "$DIR/bin/gendata" ./scripts/gendata
$GO build -o "$DIR/bin/planrun" ./cmd/planrun
export PLANRUN_STATE_DIR="$DIR/state"

if [[ ! -f "$TREE/.complete" ]]; then
  echo "== generating $SIZE tree (seed $SEED) in $TREE" >&2
  rm -rf "$TREE"
  "$DIR/bin/gendata" -out "$TREE" -size "$SIZE" -seed "$SEED" >&2
  touch "$TREE/.complete"
fi
if [[ ! -f "$INPUT" ]]; then
  echo "== making the single-file input for encryption" >&2
  tar -cf "$INPUT.tmp" -C "$TREE" . && mv "$INPUT.tmp" "$INPUT"
fi
echo "== warming the page cache" >&2
tar -cf - -C "$TREE" . | cat >/dev/null
cat "$INPUT" >/dev/null

# stepcmd TYPE WITH-YAML: sets CMD to apply a one-step plan with bin/planrun.
stepcmd() {
  local typ=$1 with=$2
  local plan="$DIR/bench-$typ-$RANDOM.yaml"
  printf 'version: 1\nname: bench\nsteps:\n  - id: s\n    type: %s\n    with: %s\n' "$typ" "$with" >"$plan"
  CMD=("$DIR/bin/planrun" apply "$plan")
}

declare -A WALL RSS SIZEB
# measure NAME OUTFILE RUNS CMD...: best wall of RUNS, its peak RSS, output size.
measure() {
  local name=$1 out=$2 runs=$3; shift 3
  local best="" bestrss=""
  for ((i = 0; i < runs; i++)); do
    rm -f "$out" "$out.sha256"
    sync
    if ! /usr/bin/time -f "%e %M" -o "$DIR/time.txt" "$@" >/dev/null 2>"$DIR/last.err"; then
      echo "bench-artifact: $name failed:" >&2
      cat "$DIR/last.err" >&2 2>/dev/null || true
      exit 1
    fi
    read -r wall rss <"$DIR/time.txt"
    if [[ -z $best ]] || awk -v a="$wall" -v b="$best" 'BEGIN{exit !(a<b)}'; then
      best=$wall bestrss=$rss
    fi
  done
  WALL[$name]=$best RSS[$name]=$bestrss SIZEB[$name]=$(stat -c %s "$out")
  echo "   $name: ${best}s, $((bestrss / 1024)) MiB RSS, $(stat -c %s "$out") bytes" >&2
}

echo "== measuring ($RUNS run(s) each, best kept; load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
measure ref-zstd "$OUT/ref.tar.zst" "$RUNS" sh -c "tar -cf - -C '$TREE' . | zstd -q -T2 -3 -o '$OUT/ref.tar.zst'"
stepcmd tar "{paths: ['$TREE'], output: '$OUT/p.tar.zst'}"
measure planrun-tar-zstd "$OUT/p.tar.zst" "$RUNS" "${CMD[@]}"
measure ref-gzip "$OUT/ref.tar.gz" 1 tar -czf "$OUT/ref.tar.gz" -C "$TREE" .
stepcmd tar "{paths: ['$TREE'], output: '$OUT/p.tar.gz', compress: gzip}"
measure planrun-tar-gzip "$OUT/p.tar.gz" "$RUNS" "${CMD[@]}"
measure ref-age "$OUT/ref.age" "$RUNS" age -e -R "$PUB" -o "$OUT/ref.age" "$INPUT"
measure ref-openssl "$OUT/ref.enc" "$RUNS" openssl enc -aes-256-cbc -pbkdf2 -pass "file:$PASS" -in "$INPUT" -out "$OUT/ref.enc"
# planrun fsyncs every artifact before publishing it; the CLIs do not. These
# rows give them the same durability (sync FILE = fsync) for a fair view.
measure ref-age-sync "$OUT/ref.age" "$RUNS" sh -c "age -e -R '$PUB' -o '$OUT/ref.age' '$INPUT' && sync '$OUT/ref.age'"
measure ref-openssl-sync "$OUT/ref.enc" "$RUNS" sh -c "openssl enc -aes-256-cbc -pbkdf2 -pass 'file:$PASS' -in '$INPUT' -out '$OUT/ref.enc' && sync '$OUT/ref.enc'"
stepcmd encrypt "{input: '$INPUT', output: '$OUT/p.age', compress: none, encrypt: {recipients_file: '$PUB'}}"
measure planrun-encrypt "$OUT/p.age" "$RUNS" "${CMD[@]}"

echo "== checking outputs decode with the standard tools" >&2
tar -tf "$OUT/p.tar.gz" >/dev/null
zstd -d -c "$OUT/p.tar.zst" | tar -tf - >/dev/null
age -d -i "$ROOT/testdata/keys/demo.agekey" "$OUT/p.age" | cmp - "$INPUT"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
# check NAME EXPR: PASS/FAIL of an awk condition.
check() { awk "BEGIN{exit !($1)}" && echo PASS || echo FAIL; }
mib() { echo $(( $1 / 1024 )); }

input_bytes=$(du -sb "$TREE" | cut -f1)
printf '\nArtifact benchmark: %s tree (%s bytes, seed %s), %s cores, runner %s, best of %s, load %s\n' \
  "$SIZE" "$input_bytes" "$SEED" "$(nproc)" "planrun" "$RUNS" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-40s %9s %14s %8s   %s\n' "case" "wall s" "output bytes" "RSS MiB" "vs reference"
line() { printf '%-40s %9s %14s %8s   %s\n' "$1" "${WALL[$2]}" "${SIZEB[$2]}" "$(mib "${RSS[$2]}")" "$3"; }
line "tar -cf - | zstd -T2 -3" ref-zstd "(reference)"
line "planrun tar (zstd)" planrun-tar-zstd "$(ratio "${WALL[planrun-tar-zstd]}" "${WALL[ref-zstd]}")x time of zstd pipeline, $(ratio "${WALL[ref-gzip]}" "${WALL[planrun-tar-zstd]}")x faster than tar -czf, size $(ratio "${SIZEB[planrun-tar-zstd]}" "${SIZEB[ref-zstd]}")x"
line "tar -czf" ref-gzip "(reference)"
line "planrun tar (gzip)" planrun-tar-gzip "$(ratio "${WALL[ref-gzip]}" "${WALL[planrun-tar-gzip]}")x faster than tar -czf, size $(ratio "${SIZEB[planrun-tar-gzip]}" "${SIZEB[ref-gzip]}")x"
line "age -e -R" ref-age "(reference)"
line "openssl enc -aes-256-cbc -pbkdf2" ref-openssl "(reference)"
line "age -e -R && sync FILE" ref-age-sync "(reference, durable like planrun)"
line "openssl enc ... && sync FILE" ref-openssl-sync "(reference, durable like planrun)"
line "planrun encrypt (age, no compression)" planrun-encrypt "$(ratio "${WALL[ref-age]}" "${WALL[planrun-encrypt]}")x age's speed, $(ratio "${WALL[ref-openssl]}" "${WALL[planrun-encrypt]}")x openssl's; durable: $(ratio "${WALL[ref-age-sync]}" "${WALL[planrun-encrypt]}")x / $(ratio "${WALL[ref-openssl-sync]}" "${WALL[planrun-encrypt]}")x"

z=planrun-tar-zstd g=planrun-tar-gzip e=planrun-encrypt
printf '\nTargets\n'
printf '  %-58s %s\n' \
  "tar zstd wall <= 1.3x tar|zstd -T2 -3" "$(check "${WALL[$z]} <= 1.3 * ${WALL[ref-zstd]}")" \
  "tar zstd >= 6x faster than tar -czf" "$(check "${WALL[ref-gzip]} >= 6 * ${WALL[$z]}")" \
  "tar zstd size within 3% of zstd -3" "$(check "${SIZEB[$z]} <= 1.03 * ${SIZEB[ref-zstd]}")" \
  "tar gzip >= 3x faster than tar -czf" "$(check "${WALL[ref-gzip]} >= 3 * ${WALL[$g]}")" \
  "tar gzip size within 3% of gzip -6" "$(check "${SIZEB[$g]} <= 1.03 * ${SIZEB[ref-gzip]}")" \
  "encrypt >= 0.95x age CLI speed" "$(check "${WALL[ref-age]} >= 0.95 * ${WALL[$e]}")" \
  "encrypt >= 0.95x age CLI speed (both fsynced)" "$(check "${WALL[ref-age-sync]} >= 0.95 * ${WALL[$e]}")" \
  "encrypt >= 1.5x openssl aes-256-cbc speed" "$(check "${WALL[ref-openssl]} >= 1.5 * ${WALL[$e]}")" \
  "encrypt >= 1.5x openssl aes-256-cbc speed (both fsynced)" "$(check "${WALL[ref-openssl-sync]} >= 1.5 * ${WALL[$e]}")" \
  "peak RSS < 64 MiB (all planrun cases)" "$(check "${RSS[$z]} < 65536 && ${RSS[$g]} < 65536 && ${RSS[$e]} < 65536")"
rm -f "$OUT"/* "$DIR"/bench-*.yaml
