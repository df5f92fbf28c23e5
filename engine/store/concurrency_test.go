package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
)

const writesPerWriter = 60

// writeRuns records n complete runs of plan, each with three attempts,
// the way the runner does (one statement at a time, no shared transaction).
func writeRuns(ctx context.Context, st *Store, plan string, n int) error {
	for i := 0; i < n; i++ {
		r := engine.RunRecord{ID: fmt.Sprintf("%s-%04d", plan, i), Plan: plan, Host: "h",
			Started: time.Now(), Status: engine.StatusRunning}
		if err := st.StartRun(ctx, r); err != nil {
			return err
		}
		for j := 1; j <= 3; j++ {
			if err := st.RecordAttempt(ctx, engine.AttemptRecord{RunID: r.ID, StepID: "s" + strconv.Itoa(j),
				Attempt: 1, Status: engine.StatusSuccess, Outputs: map[string]any{"i": i}}); err != nil {
				return err
			}
		}
		// A reader in between, as `planrun status` from monitoring would be.
		if _, _, err := st.LastSuccess(ctx, plan); err != nil {
			return err
		}
		r.Status, r.Finished = engine.StatusSuccess, time.Now()
		if err := st.FinishRun(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func countRuns(t *testing.T, dsn, plan string) int {
	t.Helper()
	st, err := Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rs, err := st.Runs(context.Background(), RunFilter{Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		_, atts, err := st.Run(context.Background(), r.ID)
		if err != nil || len(atts) != 3 || r.Status != engine.StatusSuccess {
			t.Errorf("run %s: %d attempts, status %s, err %v", r.ID, len(atts), r.Status, err)
		}
	}
	return len(rs)
}

// Two stores on one fresh database (as two cron jobs starting at the same
// minute, or two hosts on the central store): opening (migrations) and
// writing must not fail (SQLite: with SQLITE_BUSY).
func TestConcurrentStoresSameDatabase(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.dsn(t)
		plans := []string{"kaleem-daily", "chitlaq-full"}
		start := make(chan struct{})
		errs := make(chan error, len(plans))
		var wg sync.WaitGroup
		for _, plan := range plans {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				st, err := Open(dsn)
				if err != nil {
					errs <- err
					return
				}
				defer st.Close()
				errs <- writeRuns(context.Background(), st, plan, writesPerWriter)
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		for _, plan := range plans {
			if n := countRuns(t, dsn, plan); n != writesPerWriter {
				t.Errorf("%s: %d runs recorded, want %d", plan, n, writesPerWriter)
			}
		}
	})
}

// The same with separate processes, which lock the file through the OS,
// or migrate one fresh PostgreSQL database at once (two hosts upgrading
// planrun: the advisory lock serialises them).
func TestConcurrentProcessesSameDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.dsn(t)
		plans := []string{"proc-a", "proc-b"}
		var cmds []*exec.Cmd
		outs := make([]bytes.Buffer, len(plans))
		for i, plan := range plans {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriterProcess$", "-test.v")
			cmd.Env = append(os.Environ(), "PLANRUN_STORE_HELPER_DB="+dsn, "PLANRUN_STORE_HELPER_PLAN="+plan)
			cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, cmd)
		}
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Errorf("writer %s: %v\n%s", plans[i], err, outs[i].String())
			}
		}
		for _, plan := range plans {
			if n := countRuns(t, dsn, plan); n != writesPerWriter {
				t.Errorf("%s: %d runs recorded, want %d", plan, n, writesPerWriter)
			}
		}
	})
}

// TestHelperWriterProcess is the child of TestConcurrentProcessesSameDatabase.
func TestHelperWriterProcess(t *testing.T) {
	dsn := os.Getenv("PLANRUN_STORE_HELPER_DB")
	if dsn == "" {
		t.Skip("helper process for TestConcurrentProcessesSameDatabase")
	}
	st, err := Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := writeRuns(context.Background(), st, os.Getenv("PLANRUN_STORE_HELPER_PLAN"), writesPerWriter); err != nil {
		t.Fatal(err)
	}
}
