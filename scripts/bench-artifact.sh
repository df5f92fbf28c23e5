#!/usr/bin/env bash
# Artifact benchmarks: planrun's tar / encrypt steps side by side with the
# CLI pipelines an operator would otherwise use, on the same generated tree
# (scripts/gendata, fixed seed), in the same run. Prints one table.
#
#   BENCH_SIZE=2GiB (default) | 256MiB for a quick check
#   BENCH_DIR=DIR     where data and outputs go (needs ~3.5x size). Default:
#                     /dev/shm/planrun-bench when RAM has room, else
#                     /var/tmp/planrun-bench. In RAM the CPU is the limit, so
#                     the table compares the tools; on a disk, planrun's fsync
#                     (the CLIs do none) makes the encrypt rows measure the disk,
#                     hence the extra "durable" rows there.
#   BENCH_RUNS=2      best-of-N for each case (tar -czf: 1)
#   BENCH_SEED=1
#   BENCH_KEEP=1      keep the generated data in RAM for the next run
#   BENCH_SMALL_FILES=200000 (0: skip) and the other BENCH_SMALL_* settings:
#                     the many-small-files rows, scripts/bench-tarball.sh
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE=${BENCH_SIZE:-2GiB}
RUNS=${BENCH_RUNS:-2}
size_bytes=$(numfmt --from=iec-i "${SIZE%B}")
if [[ -n ${BENCH_DIR:-} ]]; then
  DIR=$BENCH_DIR
else
  DIR=/var/tmp/planrun-bench
  shm_free=$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -1 || echo 0)
  mem_free=$(awk '/^MemAvailable:/ {print $2 * 1024}' /proc/meminfo)
  if [[ -d /dev/shm/planrun-bench ]] || awk -v n="$size_bytes" -v s="$shm_free" -v m="$mem_free" \
      'BEGIN{exit !(s >= 4 * n && m >= 5 * n)}'; then
    DIR=/dev/shm/planrun-bench
  fi
fi
SEED=${BENCH_SEED:-1}
GO=${GO:-go}

for tool in tar zstd gzip age openssl /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-artifact: $tool is not installed" >&2; exit 1; }
done

mkdir -p "$DIR/bin" "$DIR/out"
IN_RAM=false
[[ $(stat -f -c %T "$DIR") == tmpfs ]] && IN_RAM=true
TREE="$DIR/tree-$SIZE-seed$SEED"
INPUT="$DIR/input-$SIZE-seed$SEED.tar"
PUB="$ROOT/testdata/keys/demo.agepub"
PASS="$ROOT/testdata/keys/demo.passphrase"
OUT="$DIR/out"
cleanup() {
  rm -rf "$OUT" "$DIR"/bench-*.yaml
  # Generated data left in RAM would hold twice BENCH_SIZE of memory.
  if [[ $IN_RAM == true && ${BENCH_KEEP:-} != 1 ]]; then
    rm -rf "$TREE" "$INPUT" "$INPUT.tmp" "$DIR/bin" "$DIR/state" "$DIR/time.txt" "$DIR/last.err"
    rmdir "$DIR" 2>/dev/null || true
  fi
}
trap cleanup EXIT

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
# done_with FILE: outputs go as soon as they are measured (and checked): in
# RAM, keeping them all would need ~7x the tree's size.
done_with() { rm -f "$1" "$1.sha256"; }

echo "== measuring in $DIR ($([[ $IN_RAM == true ]] && echo RAM || echo disk); $RUNS run(s) each, best kept; load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
measure ref-zstd "$OUT/ref.tar.zst" "$RUNS" sh -c "tar -cf - -C '$TREE' . | zstd -q -T2 -3 -o '$OUT/ref.tar.zst'"
done_with "$OUT/ref.tar.zst"
stepcmd tar "{paths: ['$TREE'], output: '$OUT/p.tar.zst'}"
measure planrun-tar-zstd "$OUT/p.tar.zst" "$RUNS" "${CMD[@]}"
echo "== checking: zstd -d | tar -t" >&2
zstd -d -c "$OUT/p.tar.zst" | tar -tf - >/dev/null
done_with "$OUT/p.tar.zst"
measure ref-gzip "$OUT/ref.tar.gz" 1 tar -czf "$OUT/ref.tar.gz" -C "$TREE" .
done_with "$OUT/ref.tar.gz"
stepcmd tar "{paths: ['$TREE'], output: '$OUT/p.tar.gz', compress: gzip}"
measure planrun-tar-gzip "$OUT/p.tar.gz" "$RUNS" "${CMD[@]}"
echo "== checking: tar -tzf" >&2
tar -tzf "$OUT/p.tar.gz" >/dev/null
done_with "$OUT/p.tar.gz"
measure ref-age "$OUT/ref.age" "$RUNS" age -e -R "$PUB" -o "$OUT/ref.age" "$INPUT"
done_with "$OUT/ref.age"
measure ref-openssl "$OUT/ref.enc" "$RUNS" openssl enc -aes-256-cbc -pbkdf2 -pass "file:$PASS" -in "$INPUT" -out "$OUT/ref.enc"
done_with "$OUT/ref.enc"
if [[ $IN_RAM == false ]]; then
  # planrun fsyncs every artifact before publishing it; the CLIs do not. These
  # rows give them the same durability (sync FILE = fsync) for a fair view.
  measure ref-age-sync "$OUT/ref.age" "$RUNS" sh -c "age -e -R '$PUB' -o '$OUT/ref.age' '$INPUT' && sync '$OUT/ref.age'"
  done_with "$OUT/ref.age"
  measure ref-openssl-sync "$OUT/ref.enc" "$RUNS" sh -c "openssl enc -aes-256-cbc -pbkdf2 -pass 'file:$PASS' -in '$INPUT' -out '$OUT/ref.enc' && sync '$OUT/ref.enc'"
  done_with "$OUT/ref.enc"
fi
stepcmd encrypt "{input: '$INPUT', output: '$OUT/p.age', compress: none, encrypt: {recipients_file: '$PUB'}}"
measure planrun-encrypt "$OUT/p.age" "$RUNS" "${CMD[@]}"
echo "== checking: age -d | cmp" >&2
age -d -i "$ROOT/testdata/keys/demo.agekey" "$OUT/p.age" | cmp - "$INPUT"
done_with "$OUT/p.age"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
# check NAME EXPR: PASS/FAIL of an awk condition.
check() { awk "BEGIN{exit !($1)}" && echo PASS || echo FAIL; }
mib() { echo $(( $1 / 1024 )); }

input_bytes=$(du -sb "$TREE" | cut -f1)
printf '\nArtifact benchmark: %s tree (%s bytes, seed %s) in %s, %s cores, best of %s, load %s\n' \
  "$SIZE" "$input_bytes" "$SEED" "$([[ $IN_RAM == true ]] && echo "RAM ($DIR)" || echo "$DIR (disk)")" "$(nproc)" "$RUNS" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-40s %9s %14s %8s   %s\n' "case" "wall s" "output bytes" "RSS MiB" "vs reference"
line() { printf '%-40s %9s %14s %8s   %s\n' "$1" "${WALL[$2]}" "${SIZEB[$2]}" "$(mib "${RSS[$2]}")" "$3"; }
line "tar -cf - | zstd -T2 -3" ref-zstd "(reference)"
line "planrun tar (zstd)" planrun-tar-zstd "$(ratio "${WALL[planrun-tar-zstd]}" "${WALL[ref-zstd]}")x time of zstd pipeline, $(ratio "${WALL[ref-gzip]}" "${WALL[planrun-tar-zstd]}")x faster than tar -czf, size $(ratio "${SIZEB[planrun-tar-zstd]}" "${SIZEB[ref-zstd]}")x"
line "tar -czf" ref-gzip "(reference)"
line "planrun tar (gzip)" planrun-tar-gzip "$(ratio "${WALL[ref-gzip]}" "${WALL[planrun-tar-gzip]}")x faster than tar -czf, size $(ratio "${SIZEB[planrun-tar-gzip]}" "${SIZEB[ref-gzip]}")x"
line "age -e -R" ref-age "(reference)"
line "openssl enc -aes-256-cbc -pbkdf2" ref-openssl "(reference)"
enc_vs="$(ratio "${WALL[ref-age]}" "${WALL[planrun-encrypt]}")x age's speed, $(ratio "${WALL[ref-openssl]}" "${WALL[planrun-encrypt]}")x openssl's"
if [[ $IN_RAM == false ]]; then
  line "age -e -R && sync FILE" ref-age-sync "(reference, durable like planrun)"
  line "openssl enc ... && sync FILE" ref-openssl-sync "(reference, durable like planrun)"
  enc_vs+="; durable: $(ratio "${WALL[ref-age-sync]}" "${WALL[planrun-encrypt]}")x / $(ratio "${WALL[ref-openssl-sync]}" "${WALL[planrun-encrypt]}")x"
fi
line "planrun encrypt (age, no compression)" planrun-encrypt "$enc_vs"

z=planrun-tar-zstd g=planrun-tar-gzip e=planrun-encrypt
printf '\nTargets\n'
target() { printf '  %-58s %s\n' "$1" "$(check "$2")"; }
target "tar zstd wall <= 1.3x tar|zstd -T2 -3" "${WALL[$z]} <= 1.3 * ${WALL[ref-zstd]}"
target "tar zstd >= 6x faster than tar -czf" "${WALL[ref-gzip]} >= 6 * ${WALL[$z]}"
target "tar zstd size within 3% of zstd -3" "${SIZEB[$z]} <= 1.03 * ${SIZEB[ref-zstd]}"
target "tar gzip >= 3x faster than tar -czf" "${WALL[ref-gzip]} >= 3 * ${WALL[$g]}"
target "tar gzip size within 3% of gzip -6" "${SIZEB[$g]} <= 1.03 * ${SIZEB[ref-gzip]}"
target "encrypt >= 0.95x age CLI speed" "${WALL[ref-age]} >= 0.95 * ${WALL[$e]}"
target "encrypt >= 1.5x openssl aes-256-cbc speed" "${WALL[ref-openssl]} >= 1.5 * ${WALL[$e]}"
if [[ $IN_RAM == false ]]; then
  target "encrypt >= 0.95x age CLI speed (both fsynced)" "${WALL[ref-age-sync]} >= 0.95 * ${WALL[$e]}"
  target "encrypt >= 1.5x openssl speed (both fsynced)" "${WALL[ref-openssl-sync]} >= 1.5 * ${WALL[$e]}"
  echo "  (on a disk, planrun's encrypt waits for its fsync and the CLIs' rows do not: compare the fsynced rows)"
fi
target "peak RSS < 64 MiB (all planrun cases)" "${RSS[$z]} < 65536 && ${RSS[$g]} < 65536 && ${RSS[$e]} < 65536"

# Many small files (per-file overhead), with its own table and targets;
# BENCH_SMALL_FILES=0 leaves it out.
if [[ ${BENCH_SMALL_FILES:-} != 0 ]]; then
  echo
  PLANRUN="$DIR/bin/planrun" scripts/bench-tarball.sh
fi
