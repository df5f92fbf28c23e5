#!/usr/bin/env bash
# bench-container.sh - the pg_dump step through `docker exec` against the same step on the host.
#
# Both servers are the test environment's PostgreSQL 15 (same binaries, fsync off): the host's
# server, and the one in the planrun-test-pg container (network none: reachable only through
# docker exec, or from the host through its unix socket under /proc/PID/root). Each gets the same
# pgbench database (default scale 70, ~1 GiB). Timed RUNS rounds, the variants interleaved in
# each round (this VM's speed drifts by 10-20% within a minute), medians:
#   floor-host         pg_dump -d DB > /dev/null
#   floor-container    docker exec -u postgres CTR pg_dump -d DB > /dev/null
#   step-host          the pg_dump step (plain, zstd 3, age, counts: false), host server
#   step-host-samedb   the same step on the host against the container's server (its socket):
#                      what a user whose database runs in a container does without container:
#   step-container     the same step with container: {name: CTR, user: postgres}
# Target: step-container <= 1.10x step-host-samedb (the same database, the tool run through
# docker exec instead of on the host). step-host is shown too: the server's own cost of running
# in a container (cgroup scheduling on this VM) is in both of the others.
#   RUNS=5 SCALE=70 BENCH_KEEP_DB=0 scripts/bench-container.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SCALE=${SCALE:-70}
DB=planrun_bench_s$SCALE
export PATH=/usr/local/go/bin:$PATH
[ -n "${PG_CONTAINER:-}" ] || eval "$(scripts/testenv.sh env)"
for t in pg_dump pgbench psql age-keygen docker; do
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
go build -o bin/planrun ./cmd/planrun # never a stale binary
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
sock=/proc/$(docker inspect -f '{{.State.Pid}}' "$CTR")/root/var/run/postgresql
[ -S "$sock/.s.PGSQL.5432" ] || { echo "bench-container: no socket at $sock (run as root on the engine's host)" >&2; exit 1; }
plan host ""
plan samedb ", host: $sock, port: 5432, user: postgres"
plan container ", container: {name: $CTR, user: postgres}"

names=(floor-host floor-container step-host step-host-samedb step-container)
cmds=(
  "pg_dump -d $DB > /dev/null"
  "docker exec -u postgres $CTR pg_dump -d $DB > /dev/null"
  "bin/planrun apply $W/host.yaml 2>/dev/null"
  "bin/planrun apply $W/samedb.yaml 2>/dev/null"
  "bin/planrun apply $W/container.yaml 2>/dev/null"
)
echo "bench-container: $DB (host $hsize, container $csize), $RUNS rounds, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)" >&2
for i in "${!cmds[@]}"; do bash -c "${cmds[$i]}" || { echo "bench-container: ${names[$i]} failed" >&2; exit 1; }; done # warm-up
for r in $(seq 1 "$RUNS"); do
  for i in "${!cmds[@]}"; do
    s=$(date +%s%N)
    bash -c "${cmds[$i]}"
    echo "${names[$i]} $(( $(date +%s%N) - s ))" >> "$W/times"
  done
  echo "bench-container: round $r: $(awk -v r="$r" '{n[$1]++; if (n[$1] == r) printf "%s %.2f  ", $1, $2/1e9}' "$W/times")" >&2
done

med() { awk -v n="$1" '$1 == n {print $2/1e9}' "$W/times" | sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a/b}'; }
fh=$(med floor-host); fc=$(med floor-container); ph=$(med step-host); psame=$(med step-host-samedb); pc=$(med step-container)
printf '\npg_dump through docker exec, %s, median of %s interleaved rounds, %s cores\n\n' "$DB" "$RUNS" "$(nproc)"
printf '| %-62s | %8s | %8s |\n' "variant" "median s" "ratio"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..64})" "----------" "----------"
printf '| %-62s | %8.2f | %8s |\n' "floor: pg_dump > /dev/null (host server)" "$fh" "1.00x"
printf '| %-62s | %8.2f | %8s |\n' "floor: docker exec pg_dump > /dev/null (the engine's relay)" "$fc" "$(ratio "$fc" "$fh")"
printf '| %-62s | %8.2f | %8s |\n' "step on the host, host server (plain, zstd 3, age)" "$ph" "1.00x"
printf '| %-62s | %8.2f | %8s |\n' "step on the host, the container's server (its socket)" "$psame" "$(ratio "$psame" "$ph")"
printf '| %-62s | %8.2f | %8s |\n' "step with container: (docker exec), the container's server" "$pc" "$(ratio "$pc" "$ph")"
printf '\ntarget: the step through docker exec <= 1.10x the same step on the host, same database: %s (%s)\n' \
  "$(awk -v a="$pc" -v b="$psame" 'BEGIN {print (a <= 1.10*b) ? "met" : "MISSED"}')" "$(ratio "$pc" "$psame")"
