#!/usr/bin/env bash
# scripts/demo.sh — `make demo`: run the built-in demo plan (no external
# services) and show what planrun recorded. Everything stays under .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PLANRUN_STATE_DIR=$PWD/.demo/state
# Every run refreshes a node_exporter textfile here (what a scrape would serve).
export PLANRUN_TEXTFILE_DIR=$PWD/.demo/metrics
mkdir -p "$PLANRUN_TEXTFILE_DIR"
# git does not keep file modes: the demo identity must be private like a real one.
chmod 600 testdata/keys/demo.agekey
bin/planrun validate plans/demo.yaml
echo "== preflight: tools, secret files, the plan file, disk room predicted from earlier runs"
bin/planrun validate --online plans/demo.yaml
bin/planrun apply plans/demo.yaml
echo
echo "== runs recorded in $PLANRUN_STATE_DIR/runs.db"
bin/planrun runs --plan demo --limit 5
echo
echo "== the latest run, step by step"
bin/planrun show latest --plan demo
echo
echo "== the artifacts (.demo/backups)"
ls -l .demo/backups
latest=$(ls -1 .demo/backups/demo-*.tar.zst.age | tail -n 1)
echo
echo "They are standard formats. With the age and zstd CLIs:"
echo "  (cd .demo/backups && sha256sum -c $(basename "$latest").sha256)"
echo "  age -d -i testdata/keys/demo.agekey $latest | zstd -d | tar -t"
echo
echo "== restore the latest backup into a scratch directory, derived from its manifest"
bin/planrun restore demo --into scratch
echo
echo "== drill: restore into scratch and compare with the manifest (sha256, files, dirs, bytes)"
bin/planrun drill demo
echo
echo "== runs: the backup, the restore and the drill"
bin/planrun runs --plan demo --limit 3
echo
echo "Status check for monitoring: bin/planrun status demo --max-age 26h --drill-max-age 35d"
bin/planrun status demo --max-age 26h --drill-max-age 35d
echo
echo "== every plan of this host (with PLANRUN_DB=postgres://… shared by a fleet: status --all, every host)"
bin/planrun status --max-age 26h --drill-max-age 35d
echo
echo "== Prometheus metrics of the plan (also in $PLANRUN_TEXTFILE_DIR/planrun.prom for node_exporter's textfile collector)"
bin/planrun metrics --plan demo | grep -v '^#' | grep -E 'kind="apply"|rto_seconds' | grep -Ev 'status="(failed|interrupted|skipped)"' | head -20
echo "(bin/planrun metrics prints all of them, with HELP and TYPE lines)"
