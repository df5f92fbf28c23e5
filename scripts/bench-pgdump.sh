#!/usr/bin/env bash
# bench-pgdump.sh - the pg_dump step against the shell alternatives, side by side in one run.
#
# On a pgbench database (default scale 70, ~1 GiB) it times, with hyperfine (RUNS runs each, medians):
#   floor     pg_dump > /dev/null
#   chitlaq   the ChitLaq runbook's sequence, corrected to run at all:
#             pg_dump > f.sql; openssl enc -aes-256-cbc -pbkdf2 ...; rm f.sql; gzip f.sql.enc
#   pipeline  pg_dump | zstd -T2 -3 | age -r KEY > out
#   planrun   the pg_dump step (format plain, zstd level 3, age to KEY): bin/planrun apply
# then the restore side, from the same encrypted artifact into a fresh database:
#   restore   age -d -i KEY F | zstd -d | psql -d DB     vs the pg_restore step (psql path)
#   verify    age -d -i KEY F | zstd -d > /dev/null; sha256sum F    vs the verify step
# and reports peak disk / plaintext bytes on disk and planrun's peak RSS. Needs the testenv
# PostgreSQL (PGHOST/PGPORT/PGUSER; sourced from scripts/testenv.sh env when unset).
#   RUNS=5 SCALE=70 BENCH_KEEP_DB=0 scripts/bench-pgdump.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SCALE=${SCALE:-70}
DB=planrun_bench_s$SCALE
export PATH=/usr/local/go/bin:$PATH
[ -n "${PGHOST:-}" ] || eval "$(scripts/testenv.sh env)"
for t in pg_dump pgbench psql hyperfine zstd age age-keygen openssl gzip jq; do
  command -v "$t" >/dev/null || { echo "bench-pgdump: $t not found" >&2; exit 1; }
done

W=$(mktemp -d /tmp/planrun-bench-pgdump.XXXXXX)
cleanup() {
  rm -rf "$W"
  [ "${BENCH_KEEP_DB:-0}" = 1 ] || psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT

want=$((SCALE * 100000))
have=$(psql -X -A -t -d "$DB" -c "select count(*) from pgbench_accounts" 2>/dev/null || echo 0)
if [ "$have" != "$want" ]; then
  echo "bench-pgdump: creating $DB with pgbench -i -s $SCALE ..." >&2
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
  pgbench -i -q -s "$SCALE" "$DB" >/dev/null 2>&1
fi
dbsize=$(psql -X -A -t -d postgres -c "select pg_size_pretty(pg_database_size('$DB'))")

mkdir -p "$W/p"   # planrun writes only here
age-keygen -o "$W/key" 2>/dev/null
R=$(age-keygen -y "$W/key")
head -c 32 /dev/urandom | base64 > "$W/pass"

[ -x bin/planrun ] || go build -o bin/planrun ./cmd/planrun
export PLANRUN_STATE_DIR=$W/state
cat > "$W/plan.yaml" <<PLAN
version: 1
name: bench-pgdump
steps:
  - id: dump
    type: pg_dump
    with: {database: $DB, format: plain, compress: zstd, level: 3, overwrite: true, output: $W/p/c.sql.zst.age, encrypt: {recipients: [$R]}}
PLAN
PLANRUN="bin/planrun apply $W/plan.yaml 2>/dev/null"
# The same step without the snapshot row counts (counts: false): the work
# the shell pipeline does, nothing more.
sed 's/overwrite: true,/overwrite: true, counts: false,/' "$W/plan.yaml" > "$W/plan-nocounts.yaml"
NOCOUNTS="bin/planrun apply $W/plan-nocounts.yaml 2>/dev/null"

CHITLAQ="pg_dump -d $DB > $W/a.sql && openssl enc -aes-256-cbc -pbkdf2 -salt -in $W/a.sql -out $W/a.sql.enc -pass file:$W/pass && rm $W/a.sql && gzip -f $W/a.sql.enc"
PIPE="set -o pipefail; pg_dump -d $DB | zstd -T2 -3 -q | age -r $R > $W/b.sql.zst.age"

echo "bench-pgdump: $DB ($dbsize), $RUNS runs each, $(nproc) cores" >&2
hyperfine --style basic --runs "$RUNS" --export-json "$W/h.json" --shell bash \
  -n floor "pg_dump -d $DB > /dev/null" \
  -n chitlaq "$CHITLAQ" \
  -n pipeline "$PIPE" \
  -n planrun "$PLANRUN" \
  -n planrun-nocounts "$NOCOUNTS" >&2

# One instrumented pass each for disk and memory figures.
pg_dump -d "$DB" > "$W/a.sql"; plain=$(stat -c %s "$W/a.sql")
openssl enc -aes-256-cbc -pbkdf2 -salt -in "$W/a.sql" -out "$W/a.sql.enc" -pass "file:$W/pass"
enc=$(stat -c %s "$W/a.sql.enc"); rm -f "$W/a.sql" "$W/a.sql.enc"
rm -f "$W"/p/*
/usr/bin/time -f '%M' -o "$W/rss" bin/planrun apply "$W/plan.yaml" >/dev/null 2>&1; rss_kib=$(tail -1 "$W/rss")
psize=$(stat -c %s "$W/p/c.sql.zst.age")
head -c 22 "$W/p/c.sql.zst.age" | grep -q '^age-encryption.org/v1' || { echo "bench-pgdump: planrun output is not age-encrypted" >&2; exit 1; }
# Plaintext on disk for planrun: every file it left besides the encrypted artifact and its sidecar.
stray=$(find "$W/p" -type f ! -name 'c.sql.zst.age' ! -name 'c.sql.zst.age.sha256' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
bsize=$(stat -c %s "$W/b.sql.zst.age")

med() { jq -r --arg n "$1" '.results[] | select(.command==$n) | .median' "$W/h.json"; }
f=$(med floor); a=$(med chitlaq); b=$(med pipeline); c=$(med planrun); n=$(med planrun-nocounts)
mib() { awk -v b="$1" 'BEGIN {printf "%.0f MiB", b/1048576}'; }
printf '\npg_dump of %s (%s), median of %s runs, %s cores\n\n' "$DB" "$dbsize" "$RUNS" "$(nproc)"
printf '| %-44s | %8s | %10s | %14s | %18s |\n' "variant" "median s" "vs planrun" "peak disk" "plaintext on disk"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "----------" "------------" "----------------" "--------------------"
row() { printf '| %-44s | %8.2f | %9.2fx | %14s | %18s |\n' "$1" "$2" "$(awk -v x="$2" -v y="$c" 'BEGIN {print x/y}')" "$3" "$4"; }
row "floor: pg_dump > /dev/null" "$f" "-" "-"
row "(a) ChitLaq: dump; openssl; rm; gzip" "$a" "$(mib $((plain + enc)))" "$(mib "$plain")"
row "(b) pg_dump | zstd -T2 -3 | age" "$b" "$(mib "$bsize")" "0"
row "planrun pg_dump step (plain, zstd 3, age)" "$c" "$(mib "$psize")" "$stray"
row "  the same with counts: false" "$n" "$(mib "$psize")" "$stray"
printf '\nplanrun peak RSS: %s MiB (target < 64)\n' "$(awk -v k="$rss_kib" 'BEGIN {printf "%.1f", k/1024}')"
printf 'row counts in the snapshot cost %.2f s (%.2fx the step without them)\n' "$(awk -v c="$c" -v n="$n" 'BEGIN {print c-n}')" "$(awk -v c="$c" -v n="$n" 'BEGIN {print c/n}')"
printf 'targets: planrun (counts: false, the same work) <= 1.15x (b): %s (%.2fx); >= 5x faster than (a): %s (%.1fx)\n' \
  "$(awk -v c="$n" -v b="$b" 'BEGIN {print (c <= 1.15*b) ? "met" : "MISSED"}')" "$(awk -v c="$n" -v b="$b" 'BEGIN {print c/b}')" \
  "$(awk -v c="$n" -v a="$a" 'BEGIN {print (a >= 5*c) ? "met" : "MISSED"}')" "$(awk -v c="$n" -v a="$a" 'BEGIN {print a/c}')"

# ---------------------------------------------------------------- restore and verify
# The restores read the planrun artifact written above; each run restores
# into a freshly created database (hyperfine --prepare, not timed).
RDB=${DB}_restore
ART=$W/p/c.sql.zst.age
cat > "$W/restore.yaml" <<PLAN
version: 1
name: bench-pgrestore
steps:
  - id: restore
    type: pg_restore
    with: {database: $RDB, input: $ART, identity_file: $W/key, format: plain}
PLAN
cat > "$W/verify.yaml" <<PLAN
version: 1
name: bench-verify
steps:
  - id: verify
    type: verify
    with: {path: $ART, identity_file: $W/key}
PLAN
chmod 600 "$W/key"
PREP="psql -X -q -d postgres -c 'DROP DATABASE IF EXISTS $RDB' -c 'CREATE DATABASE $RDB' >/dev/null"
hyperfine --style basic --runs "$RUNS" --export-json "$W/r.json" --shell bash --prepare "$PREP" \
  -n restore-pipeline "set -o pipefail; age -d -i $W/key $ART | zstd -d -q | psql -X -q -v ON_ERROR_STOP=1 -d $RDB >/dev/null" \
  -n restore-planrun "bin/planrun apply $W/restore.yaml 2>/dev/null" >&2
hyperfine --style basic --runs "$RUNS" --export-json "$W/v.json" --shell bash \
  -n verify-pipeline "set -o pipefail; age -d -i $W/key $ART | zstd -d -q > /dev/null && sha256sum $ART > /dev/null" \
  -n verify-planrun "bin/planrun apply $W/verify.yaml 2>/dev/null" >&2
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $RDB" >/dev/null
medf() { jq -r --arg n "$2" '.results[] | select(.command==$n) | .median' "$1"; }
rp=$(medf "$W/r.json" restore-pipeline); rq=$(medf "$W/r.json" restore-planrun)
vp=$(medf "$W/v.json" verify-pipeline); vq=$(medf "$W/v.json" verify-planrun)
printf '\nrestore and verify of the same artifact (%s), median of %s runs\n\n' "$(mib "$psize")" "$RUNS"
printf '| %-52s | %8s | %8s |\n' "variant" "median s" "ratio"
printf '| %-52s | %8.2f | %8s |\n' "age -d | zstd -d | psql -d DB" "$rp" "1.00x"
printf '| %-52s | %8.2f | %7.2fx |\n' "planrun pg_restore step" "$rq" "$(awk -v a="$rq" -v b="$rp" 'BEGIN {print a/b}')"
printf '| %-52s | %8.2f | %8s |\n' "age -d | zstd -d > /dev/null; sha256sum" "$vp" "1.00x"
printf '| %-52s | %8.2f | %7.2fx |\n' "planrun verify step" "$vq" "$(awk -v a="$vq" -v b="$vp" 'BEGIN {print a/b}')"
printf 'targets: pg_restore step <= 1.05x the pipeline: %s\n' "$(awk -v a="$rq" -v b="$rp" 'BEGIN {print (a <= 1.05*b) ? "met" : "MISSED"}')"
