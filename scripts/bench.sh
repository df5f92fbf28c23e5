#!/usr/bin/env bash
# scripts/bench.sh — `make bench`: every benchmark, side by side with the
# tool a user would otherwise use, in one run on this machine.
#   1. engine: validate throughput (50-step plan) and per-step overhead of
#      a 100-step plan of `exec true` (SQLite record included) against 100
#      bare fork/execs of `true`;
#   2. artifacts: tar/zstd/gzip/age against tar|zstd, tar -czf, age, openssl
#      (scripts/bench-artifact.sh; BENCH_SIZE=2GiB by default);
#   3. pg_dump step against the ChitLaq script and the shell pipeline
#      (scripts/bench-pgdump.sh; needs the test services: make testenv-start);
#   4. pg_dump step through docker exec against the same step on the host
#      (scripts/bench-container.sh; needs the test services' containers);
#   5. PostgreSQL PITR: wal-push against pgBackRest archive-push, the
#      pg_basebackup step against pg_basebackup | zstd | age and pgBackRest
#      backup, pitr-restore against pgBackRest restore (scripts/bench-pitr.sh);
#   6. history: runs, show, status and metrics with 100 000 recorded runs,
#      and history prune of 90 000 of them (scripts/bench-history.sh);
#   7. fleet: per-step overhead with a central PostgreSQL store against
#      SQLite and a bare spawn, and status --all over 100 hosts x 1 000
#      runs (scripts/bench-fleet.sh; needs the test services).
# BENCH_ONLY=engine|artifact|pgdump|container|pitr|history|fleet runs one part.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
only=${BENCH_ONLY:-all}

if [ "$only" = all ] || [ "$only" = engine ]; then
  echo "== engine (go test -bench, 5 runs each; medians) =="
  out=$(go test ./cmd/planrun -run '^$' -bench 'Validate50Steps|Apply100ExecTrue|BareExec100True' -benchtime 20x -count 5)
  median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
  metric() { echo "$out" | grep "^Benchmark$1" | awk -v u="$2" '{for (i=1;i<=NF;i++) if ($(i+1)==u) print $i}' | median; }
  v=$(metric Validate50Steps ms/plan)
  a=$(metric Apply100ExecTrue ms/step)
  e=$(metric BareExec100True ms/step)
  printf '%-44s %10s\n' "measure" "median"
  printf '%-44s %8.3f ms  (target < 5 ms)\n' "validate, 50-step plan" "$v"
  printf '%-44s %8.3f ms\n' "planrun exec true, per step (SQLite incl.)" "$a"
  printf '%-44s %8.3f ms\n' "bare fork/exec of true" "$e"
  printf '%-44s %8.3f ms  (target < 1 ms)\n' "engine overhead per step" "$(echo "$a - $e" | bc -l)"
  echo
fi
if [ "$only" = all ] || [ "$only" = artifact ]; then
  [ -x scripts/bench-artifact.sh ] && scripts/bench-artifact.sh
  echo
fi
if [ "$only" = all ] || [ "$only" = pgdump ]; then
  [ -x scripts/bench-pgdump.sh ] && scripts/bench-pgdump.sh
  echo
fi
if [ "$only" = all ] || [ "$only" = container ]; then
  scripts/bench-container.sh
  echo
fi
if [ "$only" = all ] || [ "$only" = pitr ]; then
  scripts/bench-pitr.sh
  echo
fi
if [ "$only" = all ] || [ "$only" = history ]; then
  scripts/bench-history.sh
  echo
fi
if [ "$only" = all ] || [ "$only" = fleet ]; then
  scripts/bench-fleet.sh
fi
