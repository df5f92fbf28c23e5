#!/usr/bin/env bash
# bench-pitr.sh - PostgreSQL PITR benchmarks (issue 13), side by side in one run.
#
# ---- WAL archive (this part) -------------------------------------------------------------
# For each archive_command below, a fresh private PostgreSQL 15 cluster (fsync on) on a free
# port, then:
#   drain   WAL archiving paused (archive_command ''), `pgbench -i -s SCALE` builds a backlog of
#           segments; the command is set and the server reloaded; the time until the archiver
#           has archived the whole backlog gives segments/s: pure archive throughput.
#   load    `pgbench -T DURATION -c CLIENTS` (TPC-B and a 500-row insert, half and half) with
#           the archiver on; pg_stat_archiver and the
#           current WAL position are sampled every 0.5 s: archive lag in segments (written,
#           complete, not yet archived: max and mean), segments/s archived during the load,
#           and the catch-up time after pgbench ends until the last segment is archived.
# Commands:
#   planrun      planrun wal-push (zstd -3 + age to a recipient), one process per segment
#   pgbackrest   pgbackrest archive-push (compress-type=zst, level 3, archive-async=n)
#   pgbackrest+aes  the same with repo1-cipher-type=aes-256-cbc (its own encryption)
# ROUNDS (default 2) rounds, alternating the order. Target: planrun >= 1.0x pgBackRest's (zstd)
# drain segments/s, best round of each.
# ---- base backup / restore (see below; added with the pg_basebackup and pitr-restore steps) ----
#
# Runs as root (the clusters run as postgres via runuser); installs Debian's pgbackrest when
# missing (apt-get). Not for CI: `make bench` (BENCH_ONLY=pitr) or directly:
#   SCALE=30 DURATION=30 CLIENTS=4 scripts/bench-pitr.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-30}
DURATION=${DURATION:-30}
CLIENTS=${CLIENTS:-4}
PGBIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
export PATH=/usr/local/go/bin:$PGBIN:$PATH
PGUSER_OS=postgres
[ "$(id -u)" = 0 ] || PGUSER_OS=$(id -un)

log() { echo "bench-pitr: $*" >&2; }
die() { echo "bench-pitr: ERROR: $*" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
freeport() { local p; for _ in $(seq 1 200); do p=$((20000 + RANDOM % 40000)); [ -z "$(ss -Hltn "sport = :$p")" ] && { echo "$p"; return; }; done; die "no free port"; }

if ! command -v pgbackrest >/dev/null; then
  log "installing pgbackrest (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbackrest >/dev/null
fi
for t in initdb pg_ctl pgbench psql pgbackrest age-keygen jq bc; do
  command -v "$t" >/dev/null || die "$t not found"
done

W=$(mktemp -d /tmp/planrun-bench-pitr.XXXXXX)
chmod 755 "$W"
cleanup() {
  for d in "$W"/c-*/data; do
    [ -f "$d/postmaster.pid" ] && as_pg pg_ctl -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
  done
  rm -rf "$W"
}
trap cleanup EXIT

[ -x bin/planrun ] && [ -z "$(find cmd steps engine -newer bin/planrun -name '*.go' -print -quit)" ] ||
  { mkdir -p bin && go build -o bin/planrun ./cmd/planrun; }
install -m 755 bin/planrun "$W/planrun"   # in a directory the postgres user can reach
age-keygen -o "$W/key" 2>/dev/null
RECIPIENT=$(age-keygen -y "$W/key")

# segno NAME: the segment number of a WAL segment name (16 MiB segments).
segno() { echo $(( 16#${1:8:8} * 256 + 16#${1:16:8} )); }
now() { date +%s.%N; }

# setup_cluster NAME: initdb + start, archiving paused; sets C, DATA, SOCK, PORT.
setup_cluster() {
  C=$W/c-$1; DATA=$C/data; SOCK=$C/sock; PORT=$(freeport)
  mkdir -p "$SOCK" "$C/archive"; chown -R "$PGUSER_OS" "$C"
  as_pg initdb -D "$DATA" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
  cat >> "$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
wal_level = replica
archive_mode = on
archive_command = ''
max_wal_size = 1GB
shared_buffers = 128MB
EOF
  as_pg pg_ctl -D "$DATA" -l "$C/server.log" -w -t 60 start >/dev/null
}
q() { psql -X -A -t -q -h "$SOCK" -p "$PORT" -U postgres -d postgres -c "$1"; }
stop_cluster() { as_pg pg_ctl -D "$DATA" -m fast -w stop >/dev/null; }

# archive_command_for TOOL: the command line (and any config it needs).
archive_command_for() {
  case $1 in
    planrun)
      printf 'dir: %s\ncompress: zstd\nlevel: 3\nencrypt:\n  recipients: [%s]\n' "$C/archive" "$RECIPIENT" > "$C/wal.yaml"
      chown "$PGUSER_OS" "$C/wal.yaml"
      echo "$W/planrun wal-push --config $C/wal.yaml %p" ;;
    pgbackrest|pgbackrest+aes)
      mkdir -p "$C/pgbr-log" "$C/pgbr-lock"
      { printf '[global]\nrepo1-path=%s\ncompress-type=zst\ncompress-level=3\narchive-async=n\n' "$C/archive"
        printf 'log-path=%s\nlock-path=%s\nlog-level-console=warn\nlog-level-file=warn\n' "$C/pgbr-log" "$C/pgbr-lock"
        [ "$1" = pgbackrest+aes ] && printf 'repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=%s\n' "$(head -c 24 /dev/urandom | base64)"
        printf '[bench]\npg1-path=%s\npg1-socket-path=%s\npg1-port=%s\n' "$DATA" "$SOCK" "$PORT"
      } > "$C/pgbackrest.conf"
      chown -R "$PGUSER_OS" "$C/pgbackrest.conf" "$C/pgbr-log" "$C/pgbr-lock"
      chmod 600 "$C/pgbackrest.conf"
      as_pg pgbackrest --config="$C/pgbackrest.conf" --stanza=bench stanza-create >/dev/null
      echo "pgbackrest --config=$C/pgbackrest.conf --stanza=bench archive-push %p" ;;
  esac
}

# wait_archived SEG: until pg_stat_archiver's last archived segment reaches SEG.
wait_archived() {
  local want; want=$(segno "$1")
  for _ in $(seq 1 6000); do
    local last; last=$(q "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    if [ -n "$last" ] && [ ${#last} -ge 24 ] && [ "$(segno "${last:0:24}")" -ge "$want" ]; then return 0; fi
    sleep 0.1
  done
  die "segment $1 not archived after 600 s (see $C/server.log)"
}

# switch_segment: force a switch and print the name of the segment it completes.
switch_segment() { q "SELECT pg_walfile_name(pg_logical_emit_message(false, 'bench', 'x'))" && q "SELECT pg_switch_wal()" >/dev/null; }

# TPC-B alone writes ~1 KiB of WAL per transaction, well under a segment a second: half the
# transactions also insert 500 rows (~100 KiB of WAL), so the archiver has work to keep up with.
cat > "$W/insert.sql" <<'SQL'
INSERT INTO walbench SELECT g, md5(g::text) || md5(random()::text) FROM generate_series(1, 500) g;
SQL
RESULTS=$W/results
bench_archive() {
  local tool=$1 round=$2
  log "$tool (round $round): cluster, pgbench -i -s $SCALE with archiving paused"
  setup_cluster "$tool-$round"
  local cmd; cmd=$(archive_command_for "$tool")
  # Each run's own elapsed and CPU seconds: the machine's other load (2 cores) moves the
  # drain rate; the CPU a segment costs is what a dedicated archiver host would see.
  cmd="/usr/bin/time -a -o $C/cmdtime -f '%e %U %S' $cmd"
  local base; base=$(q "SELECT archived_count FROM pg_stat_archiver")
  pgbench -i -q -s "$SCALE" -h "$SOCK" -p "$PORT" -U postgres postgres >/dev/null 2>&1
  local last; last=$(switch_segment)
  local backlog; backlog=$(ls "$DATA/pg_wal/archive_status" | grep -c '\.ready$' || true)
  # -- drain
  q "ALTER SYSTEM SET archive_command = '${cmd//\'/\'\'}'" >/dev/null
  local t0; t0=$(now)
  q "SELECT pg_reload_conf()" >/dev/null
  wait_archived "$last"
  local t1; t1=$(now)
  local drained=$(( $(q "SELECT archived_count FROM pg_stat_archiver") - base ))
  local failed; failed=$(q "SELECT failed_count FROM pg_stat_archiver")
  [ "$failed" = 0 ] || die "$tool: $failed archive failures (see $C/server.log)"
  local drain_s; drain_s=$(echo "$t1 - $t0" | bc -l)
  log "$tool: drained $drained segments ($backlog ready) in ${drain_s}s"
  # -- under load
  q "CREATE TABLE walbench (id int, pad text)" >/dev/null
  local a0; a0=$(q "SELECT archived_count FROM pg_stat_archiver")
  : > "$C/samples"
  ( while :; do
      q "SELECT pg_walfile_name(pg_current_wal_lsn()) || ' ' || coalesce(last_archived_wal, '')  FROM pg_stat_archiver" >> "$C/samples" 2>/dev/null || true
      sleep 0.5
    done ) &
  local sampler=$!
  local l0; l0=$(now)
  pgbench -n -T "$DURATION" -c "$CLIENTS" -j 2 -b tpcb-like@1 -f "$W/insert.sql@1" \
    -h "$SOCK" -p "$PORT" -U postgres postgres > "$C/pgbench.out" 2>&1
  local l1; l1=$(now)
  last=$(switch_segment)
  wait_archived "$last"
  local l2; l2=$(now)
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  local loaded=$(( $(q "SELECT archived_count FROM pg_stat_archiver") - a0 ))
  local tps; tps=$(awk '/^tps/ {printf "%.0f", $3; exit}' "$C/pgbench.out")
  # lag: complete segments not yet archived = current - last archived - 1
  local lag m=0 sum=0 n=0 cur arch l
  while read -r cur arch; do
    [ ${#arch} -ge 24 ] || continue
    l=$(( $(segno "$cur") - $(segno "${arch:0:24}") - 1 )); [ $l -ge 0 ] || l=0
    sum=$((sum + l)); n=$((n + 1)); [ $l -le $m ] || m=$l
  done < "$C/samples"
  lag="$m $( [ $n -gt 0 ] && echo "scale=1; $sum / $n" | bc -l || echo 0)"
  local size; size=$(du -sb "$C/archive" | cut -f1)
  failed=$(q "SELECT failed_count FROM pg_stat_archiver")
  [ "$failed" = 0 ] || die "$tool: $failed archive failures under load (see $C/server.log)"
  stop_cluster
  local per; per=$(awk 'NF == 3 { e += $1; c += $2 + $3; n++ } END { printf "%.3f %.3f", e / n, c / n }' "$C/cmdtime")
  echo "$round $tool $drained $drain_s $loaded $(echo "$l2 - $l0" | bc -l) $(echo "$l2 - $l1" | bc -l) $lag $tps $size $per" >> "$RESULTS"
  rm -rf "$C"   # a cluster and its archive per tool and round: free the disk
}

# BENCH_PITR_ARCHIVE=0 skips this part.
if [ "${BENCH_PITR_ARCHIVE:-1}" = 1 ]; then
: > "$RESULTS"
# ROUNDS rounds, the order reversed every other round: the machine's other load drifts.
tools=(${BENCH_PITR_TOOLS:-planrun pgbackrest pgbackrest+aes})
for round in $(seq 1 "${ROUNDS:-2}"); do
  order=("${tools[@]}")
  [ $((round % 2)) = 0 ] && order=($(printf '%s\n' "${tools[@]}" | tac))
  for tool in "${order[@]}"; do bench_archive "$tool" "$round"; done
done

printf '\nWAL archive throughput, pgbench -s %s backlog, then pgbench -T %s -c %s (%s cores, %s)\n\n' \
  "$SCALE" "$DURATION" "$CLIENTS" "$(nproc)" "$(pgbackrest version)"
printf '| %5s | %-46s | %8s | %9s | %7s | %9s | %9s | %8s | %6s | %9s | %8s | %8s |\n' \
  "round" "archive_command" "drain seg" "drain s/s" "ratio" "load seg/s" "lag max/avg" "catch-up" "tps" "archive" "cmd s/seg" "CPU s/seg"
while read -r round tool drained drain_s loaded load_s catch lagmax lagavg tps size cmd_s cpu_s; do
  case $tool in
    planrun) label="planrun wal-push (zstd -3 + age)" ;;
    pgbackrest) label="pgbackrest archive-push (zst 3)" ;;
    pgbackrest+aes) label="pgbackrest archive-push (zst 3 + aes-256-cbc)" ;;
  esac
  rate=$(echo "$drained / $drain_s" | bc -l)
  ref=$(awk -v r="$round" '$1 == r && $2 == "pgbackrest" { print $3 / $4 }' "$RESULTS")
  ratio=$( [ -n "$ref" ] && echo "$rate / $ref" | bc -l || echo 0)
  printf '| %5s | %-46s | %8d | %9.1f | %6.2fx | %9.1f | %5d/%-5.1f | %7.1fs | %6s | %6.0f MiB | %8.3f | %8.3f |\n' \
    "$round" "$label" "$drained" "$rate" "$ratio" "$(echo "$loaded / $load_s" | bc -l)" "$lagmax" "$lagavg" "$catch" "$tps" "$(echo "$size / 1048576" | bc -l)" "$cmd_s" "$cpu_s"
done < "$RESULTS"
# Best round of each: the least disturbed by the machine's other load.
best() { awk -v t="$1" '$2 == t { r = $3 / $4; if (r > m) m = r } END { if (m) print m }' "$RESULTS"; }
cpu() { awk -v t="$1" '$2 == t { c += $13; n++ } END { if (n) printf "%.3f", c / n }' "$RESULTS"; }
pr=$(best planrun); ref=$(best pgbackrest)
[ -n "$pr" ] && [ -n "$ref" ] &&
  printf 'best drain: planrun %.1f seg/s, pgbackrest %.1f seg/s (%.2fx); mean CPU per segment: planrun %s s, pgbackrest %s s\ntarget: planrun drain >= 1.0x pgbackrest archive-push (zst): %s\n' \
    "$pr" "$ref" "$(echo "$pr / $ref" | bc -l)" "$(cpu planrun)" "$(cpu pgbackrest)" "$(awk -v a="$pr" -v b="$ref" 'BEGIN {print (a >= b) ? "met" : "MISSED"}')"
fi
# ---- base backup / restore benchmarks: below this line (pg_basebackup and pitr-restore steps) ----
#
# ---- Base backup and recovery time (pg_basebackup and pitr-restore steps) -----------------
# One cluster of ~1 GiB (pgbench -i -s SCALE_BASE, fsync on), archiving into both archives at
# once (archive_command = planrun wal-push && pgbackrest archive-push), so each tool has the WAL
# it needs. Rows, each after a read of the data directory (warm cache for all):
#   base backup:  the pg_basebackup step (zstd -3 + age; its archive checks included), via
#                 planrun apply, vs `pg_basebackup -Ft -D - -X fetch -c fast | zstd -3 -T0 | age`
#                 (target: <= 1.10x) and vs `pgbackrest backup --type=full` (zst 3).
#   recover:      after pgbench -T RECOVER_LOAD s of load, a target time, more load; then into an
#                 empty data dir: the pitr-restore step (extract, replay to the target, promote,
#                 stop) vs `pgbackrest restore --type=time` + pg_ctl start until promoted + stop.
# BENCH_PITR_BASE=0 skips this part.
if [ "${BENCH_PITR_BASE:-1}" = 1 ]; then
  SCALE_BASE=${SCALE_BASE:-68}
  RECOVER_LOAD=${RECOVER_LOAD:-20}
  command -v zstd >/dev/null && command -v age >/dev/null || die "zstd and age are needed"
  log "base: cluster, pgbench -i -s $SCALE_BASE (~$((SCALE_BASE * 15)) MiB)"
  setup_cluster base
  BASE_C=$C
  install -m 600 -o "$PGUSER_OS" "$W/key" "$C/key"
  printf 'dir: %s\ncompress: zstd\nlevel: 3\nencrypt:\n  recipients: [%s]\n' "$C/archive" "$RECIPIENT" > "$C/wal.yaml"
  chown "$PGUSER_OS" "$C/wal.yaml"
  mkdir -p "$C/pgbr"; chown "$PGUSER_OS" "$C/pgbr"
  pgbr_cmd=$(C=$C/pgbr; DATA=$DATA; archive_command_for pgbackrest)
  PGBR="pgbackrest --config=$C/pgbr/pgbackrest.conf --stanza=bench"
  both="$W/planrun wal-push --config $C/wal.yaml %p && $pgbr_cmd"
  q "ALTER SYSTEM SET archive_command = '${both//\'/\'\'}'" >/dev/null
  q "ALTER SYSTEM SET synchronous_commit = on" >/dev/null
  q "SELECT pg_reload_conf()" >/dev/null
  pgbench -i -q -s "$SCALE_BASE" -h "$SOCK" -p "$PORT" -U postgres postgres >/dev/null 2>&1
  wait_archived "$(switch_segment)"
  dbsize=$(q "SELECT pg_database_size('postgres')")
  warm() { tar -cf - -C "$DATA" . 2>/dev/null | cat > /dev/null; }
  export PLANRUN_STATE_DIR=$W/state
  cat > "$W/base.yaml" <<YAML
version: 1
name: bench-base
steps:
  - id: base
    type: pg_basebackup
    timeout: 1h
    with: {host: $SOCK, port: $PORT, user: postgres, archive_config: $C/wal.yaml}
YAML
  BASE_RESULTS=$W/base-results; : > "$BASE_RESULTS"
  # timed CMD...: CMD's run time in seconds on stdout (CMD's own stdout goes to stderr).
  timed() { local t0 t1 rc=0; t0=$(now); "$@" >&2 || rc=$?; t1=$(now); echo "$t1 - $t0" | bc -l; return $rc; }
  base_step() { "$W/planrun" apply "$W/base.yaml" 2>"$W/base.log" || { cat "$W/base.log"; return 1; }; }
  restore_step() { "$W/planrun" apply "$W/restore.yaml" 2>"$W/restore.log" || { cat "$W/restore.log"; return 1; }; }

  warm
  log "base: pg_basebackup | zstd | age"
  t=$(timed bash -c "set -o pipefail; pg_basebackup -h '$SOCK' -p $PORT -U postgres -Ft -D - -X fetch -c fast | zstd -3 -T0 -q | age -r '$RECIPIENT' > '$W/pipeline.tar.zst.age'")
  echo "pipeline $t $(stat -c %s "$W/pipeline.tar.zst.age")" >> "$BASE_RESULTS"
  warm
  log "base: planrun pg_basebackup step"
  t=$(timed base_step) || die "pg_basebackup step failed"
  echo "planrun $t $(du -cb "$C"/archive/base/*/base.tar.* | awk 'END {print $1}')" >> "$BASE_RESULTS"
  # The stream alone (pg_basebackup to the published tar), without the archive checks.
  stream=$(sed -n 's/.*msg="base backup complete".* stream_ms=\([0-9]*\).*/\1/p' "$W/base.log")
  echo "planrun-stream $(echo "$stream / 1000" | bc -l) $(du -cb "$C"/archive/base/*/base.tar.* | awk 'END {print $1}')" >> "$BASE_RESULTS"
  sed -n 's/^time=\([^ ]*\) level=INFO msg="\([^"]*\)".*/  \1 \2/p' "$W/base.log" >&2
  warm
  log "base: pgbackrest backup --type=full"
  t=$(timed as_pg $PGBR --log-level-console=warn backup --type=full --start-fast) || die "pgbackrest backup failed"
  echo "pgbackrest $t $(du -sb "$C/pgbr/archive/backup" 2>/dev/null | cut -f1 || echo 0)" >> "$BASE_RESULTS"

  # A target in the middle of RECOVER_LOAD*2 seconds of load after the backups.
  pgbench -n -T "$RECOVER_LOAD" -c "$CLIENTS" -j 2 -h "$SOCK" -p "$PORT" -U postgres postgres >/dev/null 2>&1
  target=$(q "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
  want=$(q "SELECT sum(abalance) FROM pgbench_accounts")
  pgbench -n -T "$RECOVER_LOAD" -c "$CLIENTS" -j 2 -h "$SOCK" -p "$PORT" -U postgres postgres >/dev/null 2>&1
  wait_archived "$(switch_segment)"
  replay=$(q "SELECT pg_size_pretty(pg_current_wal_lsn() - '0/0'::pg_lsn)")
  stop_cluster

  R=$W/restore; mkdir -p "$R"; chown "$PGUSER_OS" "$R"
  rport=$(freeport)
  cat > "$W/restore.yaml" <<YAML
version: 1
name: bench-restore
steps:
  - id: recover
    type: pitr-restore
    timeout: 2h
    with: {archive_config: $C/wal.yaml, identity_file: $C/key, data_dir: $R/planrun, target_time: "$target",
           start: true, port: $rport, socket_dir: $R, user: postgres, check_query: "SELECT sum(abalance) FROM pgbench_accounts",
           check_expect: "$want", stop_after: true}
YAML
  log "recover: planrun pitr-restore to $target"
  t=$(timed restore_step) || die "pitr-restore failed"
  echo "planrun-restore $t $(du -sb "$R/planrun" | cut -f1)" >> "$BASE_RESULTS"
  rm -rf "$R/planrun"

  log "recover: pgbackrest restore --type=time to $target"
  mkdir -p "$R/pgbr"; chown "$PGUSER_OS" "$R/pgbr"; chmod 700 "$R/pgbr"
  pgbr_recover() {
    as_pg $PGBR --log-level-console=warn --pg1-path="$R/pgbr" restore --type=time "--target=$target" --target-action=promote
    as_pg pg_ctl -D "$R/pgbr" -l "$R/pgbr.log" -w -t 3600 \
      -o "-p $rport -k $R -c listen_addresses= -c archive_mode=off" start >/dev/null
    until [ "$(psql -X -A -t -q -h "$R" -p "$rport" -U postgres -d postgres -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do sleep 0.1; done
    got=$(psql -X -A -t -q -h "$R" -p "$rport" -U postgres -d postgres -c "SELECT sum(abalance) FROM pgbench_accounts")
    [ "$got" = "$want" ] || die "pgbackrest restore: sum(abalance) $got, want $want"
    as_pg pg_ctl -D "$R/pgbr" -m fast -w stop >/dev/null
  }
  t=$(timed pgbr_recover) || die "pgbackrest restore failed"
  echo "pgbackrest-restore $t $(du -sb "$R/pgbr" | cut -f1)" >> "$BASE_RESULTS"

  printf '\nBase backup of the pgbench database (%s MiB, -s %s) and recovery to a time (%s of WAL in all; %s cores)\n\n' \
    "$((dbsize / 1048576))" "$SCALE_BASE" "$replay" "$(nproc)"
  printf '| %-62s | %8s | %7s | %9s |\n' "what" "seconds" "ratio" "size"
  ref=$(awk '$1 == "pipeline" { print $2 }' "$BASE_RESULTS")
  rref=$(awk '$1 == "pgbackrest-restore" { print $2 }' "$BASE_RESULTS")
  while read -r what secs size; do
    case $what in
      pipeline) label="pg_basebackup -Ft -D - -X fetch | zstd -3 -T0 | age"; r=$ref ;;
      planrun) label="pg_basebackup step (zstd 3 + age, archive checks)"; r=$ref ;;
      planrun-stream) label="  of which pg_basebackup streaming into the archive"; r=$ref ;;
      pgbackrest) label="pgbackrest backup --type=full (zst 3)"; r=$ref ;;
      planrun-restore) label="pitr-restore to a time (extract, replay, promote, stop)"; r=$rref ;;
      pgbackrest-restore) label="pgbackrest restore --type=time + start + promote + stop"; r=$rref ;;
    esac
    printf '| %-62s | %8.1f | %6.2fx | %5.0f MiB |\n' "$label" "$secs" "$(echo "$secs / $r" | bc -l)" "$(echo "$size / 1048576" | bc -l)"
  done < "$BASE_RESULTS"
  pb=$(awk '$1 == "planrun" { print $2 }' "$BASE_RESULTS")
  printf 'target: pg_basebackup step <= 1.10x the pipeline: %s\n' "$(awk -v a="$pb" -v b="$ref" 'BEGIN {print (a <= 1.10 * b) ? "met" : "MISSED"}')"
fi
