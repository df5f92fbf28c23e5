package main

// planrun metrics, the node_exporter textfile and the Pushgateway push:
// one set of Prometheus metrics, always made from the run store, so the
// file written after a run is what `planrun metrics` prints.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/sys/unix"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
)

// textfileName is the file written in the textfile directory;
// node_exporter's textfile collector reads *.prom.
const textfileName = "planrun.prom"

// pushTimeout bounds the Pushgateway push: a slow or dead gateway must
// not hold up the end of a run.
const pushTimeout = 5 * time.Second

// cmdMetrics: planrun metrics [--plan NAME] [--host H | --all] [--db PATH]
func cmdMetrics(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("metrics", stdout, stderr)
	plan := fs.String("plan", "", "only this plan's metrics")
	hf := addHostFlags(fs, "metrics")
	db := dbFlag(fs)
	if code, ok := fs.parseNone(args); !ok {
		return code
	}
	st, code := openStore(*db, &hf, stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	sel := metricsSelection{host: st.host, plan: *plan, hostLabel: *hf.all}
	text, err := metricsText(context.Background(), st.Store, sel)
	if err == nil {
		_, err = stdout.Write(text)
	}
	if err != nil {
		fmt.Fprintf(stderr, "planrun metrics: %v\n", err)
		return engine.ExitFailed
	}
	return engine.ExitOK
}

// metricsSelection says whose metrics: a host ("" every host) and a plan
// ("" every plan). hostLabel adds a host label to every series, for the
// metrics of a whole fleet from its central store (without it, two hosts'
// runs of one plan would be one series).
type metricsSelection struct {
	host, plan string
	hostLabel  bool
}

// metricsText is the store's metrics in the Prometheus text format.
func metricsText(ctx context.Context, st *store.Store, sel metricsSelection) ([]byte, error) {
	reg, err := metricsRegistry(ctx, st, sel)
	if err != nil {
		return nil, err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// runStatuses are the values of planrun_last_run_status's status label (a
// state set: one series per status, 1 for the current one).
var runStatuses = []string{engine.StatusSuccess, engine.StatusFailed, engine.StatusInterrupted, engine.StatusSkipped}

// metricsRegistry gathers the metrics of every plan (or one) from the
// store. Labels: plan, kind (apply, restore, drill) and step: few values
// each, never a run id.
func metricsRegistry(ctx context.Context, st *store.Store, sel metricsSelection) (*prometheus.Registry, error) {
	sums, err := st.Summaries(ctx, store.SummaryFilter{Host: sel.host, Plan: sel.plan})
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewPedanticRegistry()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "planrun_build_info", Help: "planrun's version (value always 1)."}, []string{"version", "goversion"})
	reg.MustRegister(build)
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		if sel.hostLabel {
			labels = append([]string{"host"}, labels...)
		}
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		reg.MustRegister(g)
		return g
	}
	// labels are a summary's series labels, with extra ones.
	labels := func(s store.Summary, extra prometheus.Labels) prometheus.Labels {
		l := prometheus.Labels{"plan": s.Plan, "kind": s.Kind}
		if sel.hostLabel {
			l["host"] = s.Host
		}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
	pk := []string{"plan", "kind"}
	var (
		running  = gauge("planrun_runs_in_progress", "Runs recorded as running (a run whose process died stays so until the plan's next run).", pk...)
		lastRun  = gauge("planrun_last_run_timestamp_seconds", "When the newest finished run finished.", pk...)
		success  = gauge("planrun_last_run_success", "1 if the newest finished run succeeded (for a drill: restored and compared equal), else 0.", pk...)
		status   = gauge("planrun_last_run_status", "The newest finished run's status: 1 for its status, 0 for the others.", "plan", "kind", "status")
		exitCode = gauge("planrun_last_run_exit_code", "The newest finished run's exit code.", pk...)
		duration = gauge("planrun_last_run_duration_seconds", "How long the newest finished run took.", pk...)
		written  = gauge("planrun_last_run_written_bytes", "Bytes the successful steps of the newest finished run wrote.", pk...)
		arts     = gauge("planrun_last_run_artifacts", "Artifacts the newest finished run recorded in its manifest.", pk...)
		artSize  = gauge("planrun_last_run_artifact_size_bytes", "Total size of the artifacts the newest finished run recorded.", pk...)
		lockWait = gauge("planrun_last_run_lock_wait_seconds", "How long the newest finished run waited for resource locks (locks:), the plan's and its steps'.", pk...)

		lastOK      = gauge("planrun_last_success_timestamp_seconds", "When the newest successful run finished (0: never succeeded).", pk...)
		okWritten   = gauge("planrun_last_success_written_bytes", "Bytes the newest successful run wrote.", pk...)
		okArtSize   = gauge("planrun_last_success_artifact_size_bytes", "Total size of the artifacts of the newest successful run.", pk...)
		stepSeconds = gauge("planrun_step_duration_seconds", "How long each step of the newest finished run took (all attempts; skipped steps left out).", "plan", "kind", "step")
		stepOK      = gauge("planrun_step_success", "1 if the step's last attempt in the newest finished run succeeded, else 0.", "plan", "kind", "step")
		usage       = gauge("planrun_disk_usage_bytes", "disk-usage steps of the newest finished run: the space their directory uses (du).", "plan", "kind", "step")
		usageMax    = gauge("planrun_disk_usage_limit_bytes", "disk-usage steps of the newest finished run: their max_total.", "plan", "kind", "step")

		rto    = gauge("planrun_last_run_rto_seconds", "Restores and drills: the newest finished run's recovery time (restore start to last restore step done).", pk...)
		rpo    = gauge("planrun_last_run_rpo_seconds", "Restores and drills: the age of the data the newest finished run restored.", pk...)
		budget = gauge("planrun_rto_budget_seconds", "Restores and drills: the plan's RTO budget (restore.rto).", pk...)
	)
	build.WithLabelValues(version, runtime.Version()).Set(1)
	for _, s := range sums {
		l := labels(s, nil)
		running.With(l).Set(float64(s.Running))
		if s.Last == nil {
			continue
		}
		r := s.Last
		lastRun.With(l).Set(unixSeconds(r.Finished))
		success.With(l).Set(boolValue(r.Status == engine.StatusSuccess))
		for _, v := range runStatuses {
			status.With(labels(s, prometheus.Labels{"status": v})).Set(boolValue(r.Status == v))
		}
		exitCode.With(l).Set(float64(r.ExitCode))
		duration.With(l).Set(r.Finished.Sub(r.Started).Seconds())
		w, n, size := attemptTotals(s.LastAttempts)
		written.With(l).Set(float64(w))
		arts.With(l).Set(float64(n))
		artSize.With(l).Set(float64(size))
		lockWait.With(l).Set(lockWaited(r, s.LastAttempts).Seconds())
		lastOK.With(l).Set(0)
		if ok := s.LastSuccess; ok != nil {
			at := ok.Finished
			if at.IsZero() {
				at = ok.Started
			}
			lastOK.With(l).Set(unixSeconds(at))
			w, _, size := attemptTotals(s.LastSuccessAttempts)
			okWritten.With(l).Set(float64(w))
			okArtSize.With(l).Set(float64(size))
		}
		for _, sd := range stepDurations(s.LastAttempts) {
			sl := labels(s, prometheus.Labels{"step": sd.step})
			stepSeconds.With(sl).Set(sd.took.Seconds())
			stepOK.With(sl).Set(boolValue(sd.ok))
		}
		for _, a := range s.LastAttempts {
			// A disk-usage over its limit fails, and still measured.
			if a.StepType != "disk-usage" {
				continue
			}
			sl := labels(s, prometheus.Labels{"step": a.StepID})
			if n, ok := outputNumber(a.Outputs["total_bytes"]); ok {
				usage.With(sl).Set(n)
			}
			if n, ok := outputNumber(a.Outputs["max_total_bytes"]); ok {
				usageMax.With(sl).Set(n)
			}
		}
		if rep := r.Report; rep != nil {
			rto.With(l).Set(rep.RTO.Seconds())
			rpo.With(l).Set(rep.RPO.Seconds())
			if rep.RTOBudget > 0 {
				budget.With(l).Set(rep.RTOBudget.Seconds())
			}
		}
	}
	return reg, nil
}

// lockWaited is how long a run waited for its resource locks.
func lockWaited(r *engine.RunRecord, atts []engine.AttemptRecord) time.Duration {
	var d time.Duration
	for _, w := range r.LockWaits {
		d += w.Waited
	}
	for _, a := range atts {
		for _, w := range a.LockWaits {
			d += w.Waited
		}
	}
	return d
}

// attemptTotals adds up the successful attempts of a run: bytes written,
// artifacts recorded and their total size.
func attemptTotals(atts []engine.AttemptRecord) (written int64, artifacts int, size int64) {
	for _, a := range atts {
		if a.Status != engine.StatusSuccess {
			continue
		}
		written += a.BytesOut
		artifacts += len(a.Records)
		for _, rec := range a.Records {
			size += rec.Size
		}
	}
	return written, artifacts, size
}

type stepDuration struct {
	step string
	took time.Duration
	ok   bool
}

// stepDurations are the run's steps in order with the time all their
// attempts took and whether the last one succeeded; skipped steps are left
// out (they did nothing).
func stepDurations(atts []engine.AttemptRecord) []stepDuration {
	var out []stepDuration
	at := map[string]int{}
	for _, a := range atts {
		if a.Status == engine.StatusSkipped {
			continue
		}
		i, seen := at[a.StepID]
		if !seen {
			i = len(out)
			at[a.StepID] = i
			out = append(out, stepDuration{step: a.StepID})
		}
		out[i].took += a.Duration
		out[i].ok = a.Status == engine.StatusSuccess
	}
	return out
}

// outputNumber reads a recorded numeric output (the store keeps numbers
// as json.Number).
func outputNumber(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// exportMetrics refreshes the textfile and pushes to the Pushgateway, as
// configured, after a run. Failures are warnings: metrics never fail a run.
func exportMetrics(st *store.Store, settings Settings, stderr io.Writer) {
	if settings.TextfileDir != "" {
		if err := writeTextfile(st, settings.TextfileDir); err != nil {
			fmt.Fprintf(stderr, "planrun: warning: metrics textfile: %v\n", err)
		}
	}
	if settings.PushgatewayURL != "" {
		if err := pushMetrics(context.Background(), st, settings.PushgatewayURL, pushTimeout); err != nil {
			fmt.Fprintf(stderr, "planrun: warning: pushgateway: %v\n", err)
		}
	}
}

// writeTextfile writes dir/planrun.prom atomically: a temp file in the
// same directory, synced, then renamed over the old one, so the collector
// never reads half a file. A lock serialises planrun processes, so the
// last file renamed is made from the latest store state.
func writeTextfile(st *store.Store, dir string) error {
	lock, err := os.OpenFile(filepath.Join(dir, ".planrun.prom.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	text, err := metricsText(context.Background(), st, metricsSelection{})
	if err != nil {
		return err
	}
	// node_exporter runs as its own user: the file must be readable (the
	// metrics hold plan and step names, no secrets). The temp name does not
	// end in .prom: the collector skips it.
	return writeFileAtomic(filepath.Join(dir, textfileName), text, 0o644)
}

// pushMetrics POSTs the metrics to a Pushgateway under job="planrun" and
// instance=<host>. Credentials in the URL go in the Authorization header
// and never into an error message.
func pushMetrics(ctx context.Context, st *store.Store, gateway string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !strings.Contains(gateway, "://") {
		gateway = "http://" + gateway // host:port, as the Pushgateway docs write it
	}
	u, err := url.Parse(gateway)
	if err != nil {
		return fmt.Errorf("PLANRUN_PUSHGATEWAY_URL is not a URL") // the parser's message would quote it
	}
	user := u.User
	u.User = nil
	reg, err := metricsRegistry(ctx, st, metricsSelection{})
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	p := push.New(u.String(), "planrun").Grouping("instance", host).Gatherer(reg).
		Client(&http.Client{Timeout: timeout}).Format(expfmt.NewFormat(expfmt.TypeTextPlain))
	if user != nil {
		pw, _ := user.Password()
		p = p.BasicAuth(user.Username(), pw)
	}
	return p.AddContext(ctx)
}
