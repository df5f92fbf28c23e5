#!/usr/bin/env bash
# Many-small-files benchmark: planrun's tar and untar steps (one-step plans
# run with bin/planrun apply) side by side with the CLI pipelines an
# operator would otherwise use, on one generated tree of small text files:
#
#   tar -cf - | zstd -T2 -3     vs  planrun tar (zstd)
#   zstd -d | tar -x            vs  planrun untar (sha256 sidecar check,
#                                   owners, modes, mtimes; both extract
#                                   planrun's archive)
#   tar -cf FILE                vs  planrun tar (compress: none): the
#                                   per-file work without the compressor
#
# Runs are interleaved and the median of each case is kept, with its CPU
# time (user+sys): on a busy host the CPU column is the steadier one.
#
#   BENCH_SMALL_FILES=200000  number of files (~BENCH_SMALL_SIZE each)
#   BENCH_SMALL_SIZE=4096     mean file size in bytes (0.5x..1.5x)
#   BENCH_SMALL_RUNS=5        runs of each case (median)
#   BENCH_SMALL_DIR=DIR       where data and outputs go (needs ~3x the
#                             tree). Default: /dev/shm/planrun-bench-small
#                             when RAM has room, else /var/tmp/...
#   BENCH_SEED=1
#   BENCH_KEEP=1              keep the generated tree for the next run
#   PLANRUN=path              a built planrun (else built here)
set -euo pipefail

cd "$(dirname "$0")/.."
N=${BENCH_SMALL_FILES:-200000}
SZ=${BENCH_SMALL_SIZE:-4096}
RUNS=${BENCH_SMALL_RUNS:-5}
SEED=${BENCH_SEED:-1}
GO=${GO:-go}
tree_bytes=$((N * (SZ + 2048))) # content plus inode/dirent overhead
if [[ -n ${BENCH_SMALL_DIR:-} ]]; then
  DIR=$BENCH_SMALL_DIR
else
  DIR=/var/tmp/planrun-bench-small
  shm_free=$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -1 || echo 0)
  mem_free=$(awk '/^MemAvailable:/ {print $2 * 1024}' /proc/meminfo)
  if [[ -d /dev/shm/planrun-bench-small ]] || awk -v n="$tree_bytes" -v s="$shm_free" -v m="$mem_free" \
      'BEGIN{exit !(s >= 3 * n && m >= 4 * n)}'; then
    DIR=/dev/shm/planrun-bench-small
  fi
fi
for tool in tar zstd awk xargs /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-tarball: $tool is not installed" >&2; exit 1; }
done

mkdir -p "$DIR"
IN_RAM=false
[[ $(stat -f -c %T "$DIR") == tmpfs ]] && IN_RAM=true
TREE="$DIR/tree-$N-$SZ-seed$SEED"
OUT="$DIR/out"
cleanup() {
  rm -rf "$OUT" "$DIR"/plan-*.yaml "$DIR/time.txt" "$DIR/last.err" "$DIR/state"
  if [[ ${BENCH_KEEP:-} != 1 ]]; then
    rm -rf "$TREE" "$DIR/bin"
    rmdir "$DIR" 2>/dev/null || true
  fi
}
trap cleanup EXIT
mkdir -p "$OUT"

if [[ -n ${PLANRUN:-} ]]; then
  BIN=$PLANRUN
else
  echo "== building" >&2
  mkdir -p "$DIR/bin"
  $GO build -o "$DIR/bin/planrun" ./cmd/planrun
  BIN=$DIR/bin/planrun
fi
export PLANRUN_STATE_DIR="$DIR/state"

if [[ ! -f "$TREE/.complete" ]]; then
  echo "== generating $N files of ~$SZ bytes (seed $SEED) in $TREE" >&2
  rm -rf "$TREE"
  mkdir -p "$TREE"
  # 100 files per directory, 100 directories per top-level directory.
  awk -v n="$N" -v root="$TREE" 'BEGIN{for (i = 0; i < n; i += 100) printf "%s/d%03d/e%03d\n", root, int(i/10000), int(i/100)%100}' | xargs mkdir -p
  # Text-like content: lines drawn from a pool of random word lines.
  awk -v n="$N" -v size="$SZ" -v seed="$SEED" -v root="$TREE" 'BEGIN{
    srand(seed)
    nw = split("the of and to in is was for on that with as by at from this are be or an it which not have has but were their all one been more other new its first also when time after two some into who would up can only most out these over where between them", w, " ")
    for (j = 0; j < 4096; j++) { l = ""; k = 3 + int(rand() * 10); for (m = 0; m < k; m++) l = l w[1 + int(rand() * nw)] " "; pool[j] = l int(rand() * 1000000) "\n" }
    for (i = 0; i < n; i++) {
      f = sprintf("%s/d%03d/e%03d/f%06d.txt", root, int(i/10000), int(i/100)%100, i)
      s = "file " i " " rand() "\n"
      target = size * (0.5 + rand())
      while (length(s) < target) s = s pool[int(rand() * 4096)]
      printf "%s", s > f
      close(f)
    }
  }'
  touch "$TREE/.complete"
fi
echo "== warming the page cache" >&2
tar -cf - -C "$TREE" . | cat >/dev/null

# plan NAME TYPE WITH-YAML: a one-step plan for bin/planrun apply.
plan() {
  local f="$DIR/plan-$1.yaml"
  printf 'version: 1\nname: bench-small\nsteps:\n  - id: s\n    type: %s\n    with: %s\n' "$2" "$3" >"$f"
  echo "$f"
}
TAR_PLAN=$(plan tar tar "{paths: ['$TREE'], output: '$OUT/p.tar.zst'}")
UNTAR_PLAN=$(plan untar untar "{input: '$OUT/p.tar.zst', target: '$OUT/x'}")
PLAIN_PLAN=$(plan tar-plain tar "{paths: ['$TREE'], output: '$OUT/p.tar', compress: none}")

declare -A WALLS CPUS
# timed NAME CMD...: one run; appends wall and user+sys seconds.
timed() {
  local name=$1; shift
  sync
  if ! /usr/bin/time -f "%e %U %S" -o "$DIR/time.txt" "$@" >/dev/null 2>"$DIR/last.err"; then
    echo "bench-tarball: $name failed:" >&2
    cat "$DIR/last.err" >&2
    exit 1
  fi
  local wall user sys
  read -r wall user sys <"$DIR/time.txt"
  WALLS[$name]+="$wall "
  CPUS[$name]+="$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u + s}') "
  echo "   $name: ${wall}s wall, ${user}s user, ${sys}s sys" >&2
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "== measuring in $DIR ($([[ $IN_RAM == true ]] && echo RAM || echo disk)); $RUNS interleaved runs; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((r = 1; r <= RUNS; r++)); do
  rm -f "$OUT/ref.tar.zst"
  timed ref-tar sh -c "tar -cf - -C '$TREE' . | zstd -q -T2 -3 -o '$OUT/ref.tar.zst'"
  SIZE_REF=$(stat -c %s "$OUT/ref.tar.zst")
  rm -f "$OUT/ref.tar.zst" "$OUT/p.tar.zst" "$OUT/p.tar.zst.sha256"
  timed planrun-tar "$BIN" apply "$TAR_PLAN"
  SIZE_P=$(stat -c %s "$OUT/p.tar.zst")
  rm -rf "$OUT/x" && mkdir "$OUT/x"
  timed ref-untar sh -c "zstd -q -d -c '$OUT/p.tar.zst' | tar -xf - -C '$OUT/x'"
  rm -rf "$OUT/x"
  timed planrun-untar "$BIN" apply "$UNTAR_PLAN"
  rm -f "$OUT/ref.tar"
  timed ref-tar-plain tar -cf "$OUT/ref.tar" -C "$TREE" .
  rm -f "$OUT/ref.tar" "$OUT/p.tar" "$OUT/p.tar.sha256"
  timed planrun-tar-plain "$BIN" apply "$PLAIN_PLAN"
  rm -f "$OUT/p.tar" "$OUT/p.tar.sha256"
done
echo "== checking: planrun's extraction equals the tree" >&2
got="$OUT/x/${TREE#/}"
diff -r "$TREE" "$got" >/dev/null || { echo "bench-tarball: extracted tree differs from the source" >&2; exit 1; }
files=$(find "$got" -type f | wc -l)
[[ $files == $((N + 1)) ]] || { echo "bench-tarball: $files files extracted, want $((N + 1))" >&2; exit 1; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
check() { awk "BEGIN{exit !($1)}" && echo PASS || echo FAIL; }
declare -A W C
for k in ref-tar planrun-tar ref-untar planrun-untar ref-tar-plain planrun-tar-plain; do
  W[$k]=$(echo "${WALLS[$k]}" | median)
  C[$k]=$(echo "${CPUS[$k]}" | median)
done
printf '\nMany small files: %s files, %s bytes in %s, %s cores, median of %s, load %s\n' \
  "$N" "$(du -sb "$TREE" | cut -f1)" "$([[ $IN_RAM == true ]] && echo "RAM ($DIR)" || echo "$DIR (disk)")" "$(nproc)" "$RUNS" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %9s %9s   %s\n' "case" "wall s" "cpu s" "vs reference (wall, cpu)"
row() { printf '%-34s %9s %9s   %s\n' "$1" "${W[$2]}" "${C[$2]}" "$3"; }
row "tar -cf - | zstd -T2 -3" ref-tar "(reference)"
row "planrun tar (zstd)" planrun-tar "$(ratio "${W[planrun-tar]}" "${W[ref-tar]}")x, $(ratio "${C[planrun-tar]}" "${C[ref-tar]}")x; size $SIZE_P vs $SIZE_REF bytes ($(ratio "$SIZE_P" "$SIZE_REF")x)"
row "zstd -d | tar -x" ref-untar "(reference)"
row "planrun untar" planrun-untar "$(ratio "${W[planrun-untar]}" "${W[ref-untar]}")x, $(ratio "${C[planrun-untar]}" "${C[ref-untar]}")x"
row "tar -cf FILE (no compression)" ref-tar-plain "(reference)"
row "planrun tar (compress: none)" planrun-tar-plain "$(ratio "${W[planrun-tar-plain]}" "${W[ref-tar-plain]}")x, $(ratio "${C[planrun-tar-plain]}" "${C[ref-tar-plain]}")x"
printf '\nTargets\n'
printf '  %-58s %s\n' "untar wall <= 1.2x zstd -d | tar -x" "$(check "${W[planrun-untar]} <= 1.2 * ${W[ref-untar]}")"
printf '  %-58s %s\n' "tar wall <= 1.1x tar | zstd -T2 -3" "$(check "${W[planrun-tar]} <= 1.1 * ${W[ref-tar]}")"
