package store

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2024, 5, 1, 3, 0, 0, 0, time.UTC)

func run(id, plan string, started time.Time, status string) engine.RunRecord {
	return engine.RunRecord{
		ID: id, Plan: plan, PlanFile: "plans/" + plan + ".yaml", PlanSHA256: strings.Repeat("ab", 32),
		Host: "srv1", Trigger: "cron", PID: 4242, Started: started, Status: status,
		LogFile: "/var/lib/planrun/logs/" + id + ".log",
	}
}

// finished records a complete run: start, no attempts, finish.
func finished(t *testing.T, st *Store, r engine.RunRecord, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	status := r.Status
	r.Status = engine.StatusRunning
	if err := st.StartRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Status, r.Finished = status, r.Started.Add(d)
	if err := st.FinishRun(ctx, r); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	st, err := Open(filepath.Join(dir, "runs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for path, want := range map[string]os.FileMode{dir: 0o700, st.Path(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
	}
	// SQLite gives the WAL and shared-memory files the database's mode.
	finished(t, st, run("r", "p", t0, engine.StatusSuccess), time.Second)
	for _, suffix := range []string{"-wal", "-shm"} {
		fi, err := os.Stat(st.Path() + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s: mode %o, want 600", suffix, got)
		}
	}
	var mode string
	if err := st.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	var fk int
	if err := st.db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d, %v; want 1", fk, err)
	}
}

func TestOpenRejectsQueryCharacters(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "runs.db?mode=ro"))
	if err == nil || !strings.Contains(err.Error(), "must not contain") {
		t.Fatalf("err = %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		r := run("01HXRUNROUNDTRIP", "kaleem-daily", t0.Add(123456789*time.Nanosecond), engine.StatusRunning)
		r.Kind = engine.KindApply
		if err := st.StartRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		rec := engine.ArtifactRecord{StepID: "dump", StepType: "mongodump", Path: "/backups/mongo/mongo-20240501.archive.zst.age",
			Size: 1 << 40, SHA256: strings.Repeat("0f", 32), Compression: "zstd",
			Encryption: &engine.Encryption{Method: "age-x25519", Recipients: []string{"age1example"}},
			Created:    t0.Add(90 * time.Second), Source: map[string]string{"kind": "mongodb", "db": "kaleem"},
			Counts: map[string]int64{"documents:kaleem.users": 1 << 40}}
		atts := []engine.AttemptRecord{
			{RunID: r.ID, StepID: "dump", StepType: "mongodump", Attempt: 1, Status: engine.StatusFailed,
				Started: t0, Finished: t0.Add(time.Second), Duration: time.Second,
				Error: "mongodump: exit status 1: connection refused (password ***)"},
			{RunID: r.ID, StepID: "dump", StepType: "mongodump", Attempt: 2, Status: engine.StatusSuccess,
				Started: t0.Add(2 * time.Second), Finished: t0.Add(90 * time.Second), Duration: 88 * time.Second,
				Outputs: map[string]any{
					"path": "/backups/mongo/mongo-20240501.archive.zst.age", "size": int64(1) << 40,
					"sha256": strings.Repeat("0f", 32), "nested": map[string]any{"a": []any{"x", true}},
				},
				BytesIn: 5 << 30, BytesOut: 1 << 30,
				Artifacts: map[string]string{"/backups/mongo/mongo-20240501.archive.zst.age": strings.Repeat("0f", 32)},
				Records:   []engine.ArtifactRecord{rec}},
			{RunID: r.ID, StepID: "prune", StepType: "prune", Attempt: 0, Status: engine.StatusSkipped,
				Reason: "when: false (vars.prune)"},
		}
		for _, a := range atts {
			if err := st.RecordAttempt(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		r.Finished, r.Status, r.ExitCode, r.Error = t0.Add(2*time.Minute), engine.StatusFailed, 1, "step upload failed"
		if err := st.FinishRun(ctx, r); err != nil {
			t.Fatal(err)
		}

		got, gotAtts, err := st.Run(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("run:\n got %+v\nwant %+v", got, r)
		}
		// Outputs come back through JSON (numbers as json.Number): compare as JSON.
		if g, w := mustJSON(t, gotAtts), mustJSON(t, atts); g != w {
			t.Errorf("attempts:\n got %s\nwant %s", g, w)
		}
		if n, ok := gotAtts[1].Outputs["size"].(json.Number); !ok || n.String() != "1099511627776" {
			t.Errorf("size output = %#v, want exact json.Number", gotAtts[1].Outputs["size"])
		}
		if !gotAtts[2].Started.IsZero() || gotAtts[2].Outputs != nil {
			t.Errorf("skipped attempt: zero time and nil outputs expected, got %+v", gotAtts[2])
		}
		m, err := st.Manifest(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Artifacts) != 1 || !reflect.DeepEqual(m.Artifacts[0], rec) || m.Plan != "kaleem-daily" || m.Format != engine.ManifestFormat {
			t.Errorf("manifest = %+v, want the one record of the successful attempt", m)
		}
	})
}

func TestDrillRunsAreNotBackups(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		backup := run("backup", "p", t0, engine.StatusSuccess)
		finished(t, st, backup, time.Minute)
		drill := run("drill", "p", t0.Add(time.Hour), engine.StatusSuccess)
		drill.Kind, drill.SourceRun = engine.KindDrill, "backup"
		drill.Report = &engine.RestoreReport{SourceRun: "backup", RTO: time.Minute, RPO: time.Hour, Passed: true,
			Checks: []engine.Check{{Step: "restore-db", What: "counts", Compared: 3}}}
		finished(t, st, drill, time.Minute)

		last, ok, err := st.LastSuccess(ctx, "p")
		if err != nil || !ok || last.ID != "backup" {
			t.Errorf("LastSuccess = %v, %v, %v; want the backup, not the later drill", last.ID, ok, err)
		}
		last, ok, err = st.LastSuccessOf(ctx, "", "p", engine.KindDrill)
		if err != nil || !ok || last.ID != "drill" || last.Report == nil || last.Report.RPO != time.Hour || len(last.Report.Checks) != 1 {
			t.Errorf("LastSuccessOf(drill) = %+v, %v, %v", last, ok, err)
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteErrorsNameTheRun(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		err := st.FinishRun(ctx, run("nope", "p", t0, engine.StatusSuccess))
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nope") {
			t.Errorf("FinishRun unknown: %v", err)
		}
		err = st.RecordAttempt(ctx, engine.AttemptRecord{RunID: "ghost", StepID: "s", Status: engine.StatusSuccess})
		if err == nil || !strings.Contains(err.Error(), "ghost") {
			t.Errorf("RecordAttempt for unknown run (foreign key): %v", err)
		}
		finished(t, st, run("dup", "p", t0, engine.StatusSuccess), time.Second)
		if err := st.StartRun(ctx, run("dup", "p", t0, engine.StatusRunning)); err == nil {
			t.Error("StartRun with a duplicate id succeeded")
		}
	})
}

func TestRunsNewestFirstFilterLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		// Same second, different fractions: stored text must still sort by time.
		finished(t, st, run("r1", "a", t0, engine.StatusSuccess), time.Second)
		finished(t, st, run("r2", "b", t0.Add(100*time.Millisecond), engine.StatusFailed), time.Second)
		finished(t, st, run("r3", "a", t0.Add(time.Second), engine.StatusSuccess), time.Second)
		finished(t, st, run("r4", "a", t0.Add(1120*time.Millisecond), engine.StatusFailed), time.Second)

		ids := func(f RunFilter) string {
			rs, err := st.Runs(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, r := range rs {
				s = append(s, r.ID)
			}
			return strings.Join(s, ",")
		}
		for _, tc := range []struct {
			f    RunFilter
			want string
		}{
			{RunFilter{}, "r4,r3,r2,r1"},
			{RunFilter{Plan: "a"}, "r4,r3,r1"},
			{RunFilter{Plan: "a", Limit: 2}, "r4,r3"},
			{RunFilter{Plan: "b", Limit: 5}, "r2"},
			{RunFilter{Plan: "none"}, ""},
		} {
			if got := ids(tc.f); got != tc.want {
				t.Errorf("Runs(%+v) = %s, want %s", tc.f, got, tc.want)
			}
		}
	})
}

func TestRunByPrefix(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		for i, id := range []string{"abc123", "abc456", "abd789", "xyz", "xyz_long"} {
			finished(t, st, run(id, "p", t0.Add(time.Duration(i)*time.Minute), engine.StatusSuccess), time.Second)
		}
		for _, tc := range []struct {
			arg, want string
			err       error
		}{
			{"abc123", "abc123", nil},
			{"abc1", "abc123", nil},
			{"abd", "abd789", nil},
			{"xyz", "xyz", nil}, // exact id wins over longer ids it prefixes
			{"xyz_", "xyz_long", nil},
			{"abc", "", ErrAmbiguous},
			{"a", "", ErrAmbiguous},
			{"ABC1", "", ErrNotFound}, // ids are case-sensitive
			{"ab%", "", ErrNotFound},  // no LIKE wildcards
			{"q", "", ErrNotFound},
		} {
			r, _, err := st.Run(ctx, tc.arg)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.arg) {
					t.Errorf("Run(%q) err = %v, want %v naming the argument", tc.arg, err, tc.err)
				}
				continue
			}
			if err != nil || r.ID != tc.want {
				t.Errorf("Run(%q) = %q, %v; want %q", tc.arg, r.ID, err, tc.want)
			}
		}
		_, _, err := st.Run(ctx, "abc")
		if err == nil || !strings.Contains(err.Error(), "abc123") || !strings.Contains(err.Error(), "abc456") {
			t.Errorf("ambiguous error should list the candidates: %v", err)
		}
	})
}

func TestLastSuccess(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		finished(t, st, run("old-ok", "kaleem", t0, engine.StatusSuccess), time.Minute)
		finished(t, st, run("new-ok", "kaleem", t0.Add(24*time.Hour), engine.StatusSuccess), time.Minute)
		finished(t, st, run("newest-fail", "kaleem", t0.Add(48*time.Hour), engine.StatusFailed), time.Minute)
		finished(t, st, run("other-ok", "chitlaq", t0.Add(72*time.Hour), engine.StatusSuccess), time.Minute)
		finished(t, st, run("never-fail", "never", t0, engine.StatusFailed), time.Minute)

		r, ok, err := st.LastSuccess(ctx, "kaleem")
		if err != nil || !ok || r.ID != "new-ok" || !r.Finished.Equal(t0.Add(24*time.Hour+time.Minute)) {
			t.Errorf("LastSuccess(kaleem) = %+v, %v, %v; want new-ok", r, ok, err)
		}
		if r, ok, err := st.LastSuccess(ctx, "never"); err != nil || ok {
			t.Errorf("LastSuccess(never) = %+v, %v, %v; want none", r, ok, err)
		}
	})
}

// BenchmarkRecordRun measures what the runner adds per run: one start, five
// attempts and one finish, each its own durable transaction (SQLite: WAL;
// PostgreSQL: a round trip and a commit on the server).
func BenchmarkRecordRun(b *testing.B) {
	benchEachBackend(b, func(b *testing.B, st *Store) {
		ctx := context.Background()
		outputs := map[string]any{"path": "/backups/mongo/x.archive.zst.age", "size": 123456789, "sha256": strings.Repeat("ab", 32)}
		for i := 0; b.Loop(); i++ {
			r := run("bench-"+strconv.Itoa(i), "kaleem-daily", t0, engine.StatusRunning)
			if err := st.StartRun(ctx, r); err != nil {
				b.Fatal(err)
			}
			for j := 0; j < 5; j++ {
				if err := st.RecordAttempt(ctx, engine.AttemptRecord{RunID: r.ID, StepID: "s", Attempt: 1,
					Status: engine.StatusSuccess, Outputs: outputs}); err != nil {
					b.Fatal(err)
				}
			}
			r.Status, r.Finished = engine.StatusSuccess, t0.Add(time.Minute)
			if err := st.FinishRun(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestAbandonRunsClosesOnlyRunningRunsOfThePlan(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		now := time.Now().UTC()
		for _, r := range []engine.RunRecord{
			{ID: "dead-1", Plan: "p", Host: "h", Started: now, Status: engine.StatusRunning},
			{ID: "done-1", Plan: "p", Host: "h", Started: now, Status: engine.StatusRunning},
			{ID: "other-1", Plan: "q", Host: "h", Started: now, Status: engine.StatusRunning},
			{ID: "elsewhere-1", Plan: "p", Host: "h2", Started: now, Status: engine.StatusRunning},
		} {
			require.NoError(t, st.StartRun(ctx, r))
		}
		require.NoError(t, st.FinishRun(ctx, engine.RunRecord{ID: "done-1", Finished: now, Status: engine.StatusSuccess}))
		n, err := st.AbandonRuns(ctx, "h", "p", engine.KindApply, now)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		r, _, err := st.Run(ctx, "dead-1")
		require.NoError(t, err)
		assert.Equal(t, engine.StatusInterrupted, r.Status)
		assert.Contains(t, r.Error, "process died")
		r, _, _ = st.Run(ctx, "done-1")
		assert.Equal(t, engine.StatusSuccess, r.Status)
		r, _, _ = st.Run(ctx, "other-1")
		assert.Equal(t, engine.StatusRunning, r.Status, "other plans are not touched")
		r, _, _ = st.Run(ctx, "elsewhere-1")
		assert.Equal(t, engine.StatusRunning, r.Status, "other hosts' runs are not touched")
	})
}

// LatestManifest skips runs that failed or wrote nothing: a restore of
// "latest" starts from the newest backup that has something to restore.
func TestLatestManifest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		rec := func(path string) engine.ArtifactRecord {
			return engine.ArtifactRecord{StepID: "dump", StepType: "pg_dump", Path: path, SHA256: strings.Repeat("ab", 32)}
		}
		for _, r := range []struct {
			id     string
			at     time.Duration
			status string
			recs   []engine.ArtifactRecord
		}{
			{"with-artifacts", 0, engine.StatusSuccess, []engine.ArtifactRecord{rec("/b/1.dump")}},
			{"nothing-written", time.Hour, engine.StatusSuccess, nil},
			{"failed", 2 * time.Hour, engine.StatusFailed, []engine.ArtifactRecord{rec("/b/3.dump")}},
		} {
			run := run(r.id, "p", t0.Add(r.at), engine.StatusRunning)
			require.NoError(t, st.StartRun(ctx, run))
			require.NoError(t, st.RecordAttempt(ctx, engine.AttemptRecord{RunID: r.id, StepID: "dump", StepType: "pg_dump",
				Attempt: 1, Status: r.status, Started: run.Started, Finished: run.Started, Records: r.recs}))
			run.Status, run.Finished = r.status, run.Started.Add(time.Minute)
			require.NoError(t, st.FinishRun(ctx, run))
		}
		m, err := st.LatestManifest(ctx, "", "p")
		require.NoError(t, err)
		assert.Equal(t, "with-artifacts", m.RunID)
		require.Len(t, m.Artifacts, 1)
		assert.Equal(t, "/b/1.dump", m.Artifacts[0].Path)
		_, err = st.LatestManifest(ctx, "", "other")
		assert.ErrorIs(t, err, ErrNotFound)
	})
}
