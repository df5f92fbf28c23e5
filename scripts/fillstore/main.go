// Command fillstore records many synthetic runs into a run store through
// the store's own API (so the rows are exactly what planrun writes), for
// the history benchmarks: years of runs of several plans, each with a few
// step attempts and artifact records, a failure now and then, and a
// monthly drill with its report.
//
//	go run ./scripts/fillstore -db /var/tmp/planrun-bench/runs.db -runs 100000
//	go run ./scripts/fillstore -db postgres://…/fleet -runs 100000 -hosts 100 -plans 2
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
)

func main() {
	db := flag.String("db", "", "run store to create (a file that must not exist, or a postgres:// URL of an empty database)")
	n := flag.Int("runs", 100000, "how many runs to record")
	plans := flag.Int("plans", 4, "spread over this many plans")
	hosts := flag.Int("hosts", 1, "and over this many hosts (a fleet sharing a central store)")
	logs := flag.String("logs", "", "also write a small per-run log file under this directory, as planrun does")
	flag.Parse()
	if *db == "" || *n <= 0 || *plans <= 0 || *hosts <= 0 {
		fmt.Fprintln(os.Stderr, "usage: fillstore -db PATH|URL [-runs 100000] [-plans 4] [-hosts 1] [-logs DIR]")
		os.Exit(2)
	}
	if _, err := os.Stat(*db); err == nil {
		fmt.Fprintf(os.Stderr, "fillstore: %s exists\n", *db)
		os.Exit(2)
	}
	st, err := store.Open(*db)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fillstore:", err)
		os.Exit(1)
	}
	defer st.Close()
	if err := fill(context.Background(), st, *n, *plans, *hosts, *logs); err != nil {
		fmt.Fprintln(os.Stderr, "fillstore:", err)
		os.Exit(1)
	}
}

// fill records n runs, newest one hour ago, one per plan every
// plans hours going back: with the defaults, 100 000 runs cover 11 years.
// With hosts > 1 the runs go round the hosts: each host runs every plan.
func fill(ctx context.Context, st *store.Store, n, plans, hosts int, logs string) error {
	now := time.Now().UTC().Truncate(time.Second)
	return st.Batch(ctx, func(rec engine.Recorder) error {
		for i := n - 1; i >= 0; i-- {
			plan := fmt.Sprintf("plan-%d", i%plans)
			host := "srv1"
			if hosts > 1 {
				host = fmt.Sprintf("host-%03d", (i/plans)%hosts)
			}
			started := now.Add(-time.Duration(i/hosts+1) * time.Hour)
			id := fmt.Sprintf("%08x-%04x-4000-8000-%012x", i, i%plans, i)
			kind := engine.KindApply
			if (i/plans)%180 == 1 { // about monthly
				kind = engine.KindDrill
			}
			r := engine.RunRecord{ID: id, Plan: plan, PlanFile: "/etc/planrun/" + plan + ".yaml", PlanSHA256: "5ca1ab1e",
				Host: host, Trigger: "cron", PID: 4242, Started: started, Status: engine.StatusRunning, Kind: kind}
			if logs != "" {
				r.LogFile = filepath.Join(logs, plan, started.Format("20060102T150405Z")+"-"+id[:8]+".log")
				if err := os.MkdirAll(filepath.Dir(r.LogFile), 0o700); err != nil {
					return err
				}
				if err := os.WriteFile(r.LogFile, []byte("run started\nrun finished\n"), 0o600); err != nil {
					return err
				}
			}
			if err := rec.StartRun(ctx, r); err != nil {
				return err
			}
			status := engine.StatusSuccess
			if i%50 == 3 {
				status = engine.StatusFailed
			}
			t := started
			for j, step := range []string{"dump", "archive", "upload"} {
				a := engine.AttemptRecord{RunID: id, StepID: step, StepType: "exec", Attempt: 1, Status: engine.StatusSuccess,
					Started: t, Finished: t.Add(time.Minute), Duration: time.Minute, BytesIn: 1 << 30, BytesOut: 300 << 20}
				if j == 1 {
					a.Artifacts = map[string]string{"/srv/backups/" + id + ".tar.zst": "9f86d081884c7d65"}
					a.Records = []engine.ArtifactRecord{{StepID: step, StepType: "tar", Path: "/srv/backups/" + id + ".tar.zst",
						Size: 300 << 20, SHA256: "9f86d081884c7d65", Compression: "zstd", Created: t.Add(time.Minute)}}
				}
				if j == 2 && status == engine.StatusFailed {
					a.Status, a.Error = engine.StatusFailed, "rclone: exit status 1"
				}
				if err := rec.RecordAttempt(ctx, a); err != nil {
					return err
				}
				t = t.Add(time.Minute)
			}
			r.Finished, r.Status = t, status
			if status == engine.StatusFailed {
				r.ExitCode, r.Error = engine.ExitFailed, `step "upload" failed: rclone: exit status 1`
			}
			if kind == engine.KindDrill {
				r.Report = &engine.RestoreReport{SourcePlan: plan, RTO: 3 * time.Minute, RPO: 20 * time.Hour, Passed: status == engine.StatusSuccess}
			}
			if err := rec.FinishRun(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
}
