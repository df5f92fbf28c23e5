#!/usr/bin/env bash
# bench-container.sh - the pg_dump step through `docker exec` against the same step on the host.
#
# Both servers are the test environment's PostgreSQL 15 (same binaries, fsync off): the host's
# server, and the one in the planrun-test-pg container (network none: reachable only through
# docker exec, over its unix socket). Each gets the same pgbench database (default scale 70,
# ~1 GiB); hyperfine times (RUNS runs each, medians):
#   floor-host       pg_dump -d DB > /dev/null
#   floor-container  docker exec -u postgres CTR pg_dump -d DB > /dev/null
#   planrun-host     the pg_dump step (plain, zstd 3, age, counts: false) on the host
#   planrun-container the same step with container: {name: CTR, user: postgres}
# Target: planrun-container <= 1.10x planrun-host.
#   RUNS=5 SCALE=70 BENCH_KEEP_DB=0 scripts/bench-container.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SCALE=${SCALE:-70}
DB=planrun_bench_s$SCALE
export PATH=/usr/local/go/bin:$PATH
[ -n "${PG_CONTAINER:-}" ] || eval "$(scripts/testenv.sh env)"
for t in pg_dump pgbench psql hyperfine age-keygen jq docker; do
  command -v "$t" >/dev/null || { echo "bench-container: $t not found" >&2; exit 1; }
done
CTR=$PG_CONTAINER
dx() { docker exec -u postgres "$CTR" "$@"; }

W=$(mktemp -d /tmp/planrun-bench-container.XXXXXX)
cleanup() {
  rm -rf "$W"
  if [ "${BENCH_KEEP_DB:-0}" != 1 ]; then
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    dx psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

want=$((SCALE * 100000))
if [ "$(psql -X -A -t -d "$DB" -c "select count(*) from pgbench_accounts" 2>/dev/null || echo 0)" != "$want" ]; then
  echo "bench-container: creating $DB on the host server (pgbench -i -s $SCALE) ..." >&2
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
  pgbench -i -q -s "$SCALE" "$DB" >/dev/null 2>&1
fi
if [ "$(dx psql -X -A -t -d "$DB" -c "select count(*) from pgbench_accounts" 2>/dev/null || echo 0)" != "$want" ]; then
  echo "bench-container: creating $DB in $CTR (pgbench -i -s $SCALE) ..." >&2
  dx psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
  dx pgbench -i -q -s "$SCALE" "$DB" >/dev/null 2>&1
fi
hsize=$(psql -X -A -t -d postgres -c "select pg_size_pretty(pg_database_size('$DB'))")
csize=$(dx psql -X -A -t -d postgres -c "select pg_size_pretty(pg_database_size('$DB'))")

mkdir -p "$W/p"
age-keygen -o "$W/key" 2>/dev/null
R=$(age-keygen -y "$W/key")
[ -x bin/planrun ] || go build -o bin/planrun ./cmd/planrun
export PLANRUN_STATE_DIR=$W/state
plan() { # plan NAME EXTRA-WITH
  cat > "$W/$1.yaml" <<PLAN
version: 1
name: bench-$1
steps:
  - id: dump
    type: pg_dump
    with: {database: $DB, format: plain, counts: false, compress: zstd, level: 3, overwrite: true, output: $W/p/$1.sql.zst.age, encrypt: {recipients: [$R]}$2}
PLAN
}
plan host ""
plan container ", container: {name: $CTR, user: postgres}"

echo "bench-container: $DB (host $hsize, container $csize), $RUNS runs each, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)" >&2
hyperfine --style basic --runs "$RUNS" --export-json "$W/h.json" --shell bash \
  -n floor-host "pg_dump -d $DB > /dev/null" \
  -n floor-container "docker exec -u postgres $CTR pg_dump -d $DB > /dev/null" \
  -n planrun-host "bin/planrun apply $W/host.yaml 2>/dev/null" \
  -n planrun-container "bin/planrun apply $W/container.yaml 2>/dev/null" >&2

med() { jq -r --arg n "$1" '.results[] | select(.command==$n) | .median' "$W/h.json"; }
fh=$(med floor-host); fc=$(med floor-container); ph=$(med planrun-host); pc=$(med planrun-container)
printf '\npg_dump through docker exec, %s, median of %s runs, %s cores\n\n' "$DB" "$RUNS" "$(nproc)"
printf '| %-50s | %8s | %8s |\n' "variant" "median s" "ratio"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..52})" "----------" "----------"
printf '| %-50s | %8.2f | %8s |\n' "floor: pg_dump > /dev/null (host)" "$fh" "1.00x"
printf '| %-50s | %8.2f | %7.2fx |\n' "floor: docker exec pg_dump > /dev/null" "$fc" "$(awk -v a="$fc" -v b="$fh" 'BEGIN {print a/b}')"
printf '| %-50s | %8.2f | %8s |\n' "planrun pg_dump step, host (plain, zstd 3, age)" "$ph" "1.00x"
printf '| %-50s | %8.2f | %7.2fx |\n' "the same step with container: (docker exec)" "$pc" "$(awk -v a="$pc" -v b="$ph" 'BEGIN {print a/b}')"
printf '\ntarget: the step through docker exec <= 1.10x the step on the host: %s\n' \
  "$(awk -v a="$pc" -v b="$ph" 'BEGIN {print (a <= 1.10*b) ? "met" : "MISSED"}')"
