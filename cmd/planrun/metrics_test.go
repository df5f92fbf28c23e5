package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

// samples parses the text format into "name{label="value",...}" → value,
// labels sorted by name.
func samples(t *testing.T, text string) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	require.NoError(t, err, text)
	out := map[string]float64{}
	for name, mf := range fams {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := name + "{" + strings.Join(ls, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_UNTYPED:
				out[key] = m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

func epoch(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func TestMetricsFromStore(t *testing.T) {
	st := tempStore(t)
	ctx := context.Background()
	dump := func(status string, took time.Duration, out int64, size int64) engine.AttemptRecord {
		a := engine.AttemptRecord{StepID: "dump", StepType: "pg_dump", Attempt: 1, Status: status, Duration: took, BytesOut: out}
		if size > 0 {
			a.Records = []engine.ArtifactRecord{{StepID: "dump", Path: "/backups/db.dump.zst", Size: size}}
		}
		return a
	}
	// A success, then a failure (of the upload, after a retried dump).
	ok := record(t, st, "aaaaaaaa11112222", "kaleem-daily", engine.StatusSuccess, base, 5*time.Minute,
		dump(engine.StatusSuccess, 50*time.Second, 1000, 700),
		engine.AttemptRecord{StepID: "upload", Attempt: 1, Status: engine.StatusSuccess, Duration: 30 * time.Second, BytesOut: 2000},
		engine.AttemptRecord{StepID: "notify", Status: engine.StatusSkipped})
	failed := record(t, st, "bbbbbbbb33334444", "kaleem-daily", engine.StatusFailed, base.Add(24*time.Hour), time.Minute,
		dump(engine.StatusFailed, 10*time.Second, 0, 0),
		dump(engine.StatusSuccess, 20*time.Second, 900, 600),
		engine.AttemptRecord{StepID: "upload", Attempt: 1, Status: engine.StatusFailed, Duration: 5 * time.Second, BytesOut: 10,
			LockWaits: []engine.LockWait{{Resource: "rclone:r2:b", Scope: "host", Waited: 90 * time.Second, Outcome: engine.LockAcquired}}})
	record(t, st, "dddddddd77778888", "kaleem-daily", "", base.Add(48*time.Hour), 0) // running
	// A passed drill.
	drill := engine.RunRecord{ID: "cccccccc55556666", Plan: "kaleem-daily", Kind: engine.KindDrill, Started: base.Add(30 * time.Hour),
		Status: engine.StatusRunning, SourceRun: ok.ID}
	require.NoError(t, st.StartRun(ctx, drill))
	drill.Status, drill.Finished = engine.StatusSuccess, drill.Started.Add(4*time.Minute)
	drill.Report = &engine.RestoreReport{SourceRun: ok.ID, RTO: 3 * time.Minute, RPO: 20 * time.Hour, RTOBudget: 5 * time.Minute, Passed: true}
	require.NoError(t, st.FinishRun(ctx, drill))
	record(t, st, "eeeeeeee99990000", "chitlaq-full", engine.StatusSuccess, base, time.Minute)

	r := runCLI(t, "metrics", "--db", st.Path())
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	got := samples(t, r.stdout)
	const apply = `kind="apply",plan="kaleem-daily"`
	for key, want := range map[string]float64{
		`planrun_build_info{goversion="` + runtime.Version() + `",version="` + version + `"}`: 1,

		`planrun_last_run_success{` + apply + `}`:                     0,
		`planrun_last_run_status{` + apply + `,status="failed"}`:      1,
		`planrun_last_run_status{` + apply + `,status="success"}`:     0,
		`planrun_last_run_status{` + apply + `,status="interrupted"}`: 0,
		`planrun_last_run_exit_code{` + apply + `}`:                   1,
		`planrun_last_run_timestamp_seconds{` + apply + `}`:           epoch(failed.Finished),
		`planrun_last_run_duration_seconds{` + apply + `}`:            60,
		`planrun_last_run_written_bytes{` + apply + `}`:               900, // the successful attempts only
		`planrun_last_run_artifacts{` + apply + `}`:                   1,
		`planrun_last_run_artifact_size_bytes{` + apply + `}`:         600,
		`planrun_last_run_lock_wait_seconds{` + apply + `}`:           90,
		`planrun_runs_in_progress{` + apply + `}`:                     1,

		// Set by the success only: the failure after it changes nothing here.
		`planrun_last_success_timestamp_seconds{` + apply + `}`:   epoch(ok.Finished),
		`planrun_last_success_written_bytes{` + apply + `}`:       3000,
		`planrun_last_success_artifact_size_bytes{` + apply + `}`: 700,

		// The newest run's steps: all attempts of a retried step.
		`planrun_step_duration_seconds{` + apply + `,step="dump"}`:   30,
		`planrun_step_success{` + apply + `,step="dump"}`:            1,
		`planrun_step_duration_seconds{` + apply + `,step="upload"}`: 5,
		`planrun_step_success{` + apply + `,step="upload"}`:          0,

		`planrun_last_run_success{kind="drill",plan="kaleem-daily"}`:               1,
		`planrun_last_success_timestamp_seconds{kind="drill",plan="kaleem-daily"}`: epoch(drill.Finished),
		`planrun_last_run_rto_seconds{kind="drill",plan="kaleem-daily"}`:           180,
		`planrun_last_run_rpo_seconds{kind="drill",plan="kaleem-daily"}`:           72000,
		`planrun_rto_budget_seconds{kind="drill",plan="kaleem-daily"}`:             300,

		`planrun_last_run_success{kind="apply",plan="chitlaq-full"}`: 1,
	} {
		v, found := got[key]
		if assert.True(t, found, "missing %s in\n%s", key, r.stdout) {
			assert.InDelta(t, want, v, 1e-3, key)
		}
	}
	// Skipped steps did nothing; a plan never restored has no restore series.
	assert.NotContains(t, r.stdout, `step="notify"`)
	assert.NotContains(t, r.stdout, `kind="restore"`)
	// No run ids (unbounded label values) and no error texts.
	for _, id := range []string{"aaaaaaaa", "bbbbbbbb", "cccccccc", "dddddddd", "rclone", "upload\" failed"} {
		assert.NotContains(t, r.stdout, id)
	}

	// --plan: that plan only.
	r = runCLI(t, "metrics", "--db", st.Path(), "--plan", "chitlaq-full")
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `plan="chitlaq-full"`)
	assert.NotContains(t, r.stdout, `plan="kaleem-daily"`)

	// An empty store: the build info only.
	r = runCLI(t, "metrics", "--db", filepath.Join(t.TempDir(), "empty.db"))
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Len(t, samples(t, r.stdout), 1)

	promtoolAccepts(t, []byte(r.stdout))
	r = runCLI(t, "metrics", "--db", st.Path())
	promtoolAccepts(t, []byte(r.stdout))
}

// promtoolAccepts runs `promtool check metrics`, Prometheus's own linter
// of the exposition format and its naming conventions.
func promtoolAccepts(t *testing.T, text []byte) {
	t.Helper()
	promtool := testenv.RequireTool(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	assert.NoError(t, err, "promtool check metrics: %s\n%s", out, text)
	assert.Empty(t, strings.TrimSpace(string(out)), "promtool's lint findings")
}

// pushReceiver is a Pushgateway test double: it records each request.
type pushReceiver struct {
	mu   sync.Mutex
	reqs []pushed
}

type pushed struct {
	method, path, user, password, contentType string
	body                                      string
}

func (p *pushReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	user, pw, _ := r.BasicAuth()
	p.mu.Lock()
	p.reqs = append(p.reqs, pushed{r.Method, r.URL.Path, user, pw, r.Header.Get("Content-Type"), string(body)})
	p.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (p *pushReceiver) got() []pushed {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pushed(nil), p.reqs...)
}

func TestPushgatewayPush(t *testing.T) {
	st := tempStore(t)
	record(t, st, "aaaaaaaa11112222", "kaleem-daily", engine.StatusSuccess, base, time.Minute)
	recv := &pushReceiver{}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://planrun:s3cret@", 1) + "/"

	require.NoError(t, pushMetrics(context.Background(), st, u, 5*time.Second))
	reqs := recv.got()
	require.Len(t, reqs, 1)
	host, _ := os.Hostname()
	assert.Equal(t, http.MethodPost, reqs[0].method)
	assert.Equal(t, "/metrics/job/planrun/instance/"+host, reqs[0].path)
	assert.Equal(t, "planrun", reqs[0].user)
	assert.Equal(t, "s3cret", reqs[0].password)
	assert.Contains(t, reqs[0].contentType, "text/plain")
	want, err := metricsText(context.Background(), st, metricsSelection{})
	require.NoError(t, err)
	assert.Equal(t, string(want), reqs[0].body, "the push carries what planrun metrics prints")
	assert.Contains(t, reqs[0].body, `planrun_last_run_success{kind="apply",plan="kaleem-daily"} 1`)

	// host:port alone, as the Pushgateway docs write it.
	require.NoError(t, pushMetrics(context.Background(), st, strings.TrimPrefix(srv.URL, "http://"), 5*time.Second))
	require.Len(t, recv.got(), 2)
}

func TestPushgatewayNeverHoldsTheRunUp(t *testing.T) {
	st := tempStore(t)
	record(t, st, "aaaaaaaa11112222", "kaleem-daily", engine.StatusSuccess, base, time.Minute)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // a gateway that never answers
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	u := strings.Replace(srv.URL, "http://", "http://planrun:s3cret@", 1)

	start := time.Now()
	err := pushMetrics(context.Background(), st, u, 300*time.Millisecond)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.NotContains(t, err.Error(), "s3cret")

	// A gateway that refuses: an error naming the status, not the password.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusBadRequest)
	}))
	defer bad.Close()
	err = pushMetrics(context.Background(), st, strings.Replace(bad.URL, "http://", "http://planrun:s3cret@", 1), time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "400")
	assert.NotContains(t, err.Error(), "s3cret")
}

const tinyPlan = `version: 1
name: tiny
vars:
  cmd: "true"
steps:
  - id: work
    type: exec
    with: {command: ["${{ vars.cmd }}"]}
`

// tinyEnv sets up a state dir, a textfile dir and a plan file.
func tinyEnv(t *testing.T) (plan, textfiles, state string) {
	t.Helper()
	dir := t.TempDir()
	state, textfiles = filepath.Join(dir, "state"), filepath.Join(dir, "textfiles")
	require.NoError(t, os.Mkdir(textfiles, 0o755))
	plan = filepath.Join(dir, "tiny.yaml")
	require.NoError(t, os.WriteFile(plan, []byte(tinyPlan), 0o644))
	t.Setenv("PLANRUN_STATE_DIR", state)
	t.Setenv("PLANRUN_DB", "")
	t.Setenv("PLANRUN_TEXTFILE_DIR", textfiles)
	t.Setenv("PLANRUN_PUSHGATEWAY_URL", "")
	return plan, textfiles, state
}

// Every run refreshes the textfile from the store; a failed run changes
// the status but not the last success.
func TestTextfileAfterEveryRun(t *testing.T) {
	plan, textfiles, _ := tinyEnv(t)
	recv := &pushReceiver{}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	t.Setenv("PLANRUN_PUSHGATEWAY_URL", srv.URL)
	prom := filepath.Join(textfiles, "planrun.prom")
	const tiny = `kind="apply",plan="tiny"`

	r := runCLI(t, "apply", plan)
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	b, err := os.ReadFile(prom)
	require.NoError(t, err)
	first := samples(t, string(b))
	assert.Equal(t, 1.0, first[`planrun_last_run_success{`+tiny+`}`])
	lastOK := first[`planrun_last_success_timestamp_seconds{`+tiny+`}`]
	assert.InDelta(t, float64(time.Now().Unix()), lastOK, 60)
	promtoolAccepts(t, b)
	fi, err := os.Stat(prom)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm(), "node_exporter's user reads it")

	r = runCLI(t, "apply", plan, "--var", "cmd=false")
	require.Equal(t, engine.ExitFailed, r.code, r.stderr)
	b, err = os.ReadFile(prom)
	require.NoError(t, err)
	second := samples(t, string(b))
	assert.Equal(t, 0.0, second[`planrun_last_run_success{`+tiny+`}`])
	assert.Equal(t, 1.0, second[`planrun_last_run_exit_code{`+tiny+`}`])
	assert.Equal(t, 1.0, second[`planrun_last_run_status{`+tiny+`,status="failed"}`])
	assert.Greater(t, second[`planrun_last_run_timestamp_seconds{`+tiny+`}`], lastOK)
	assert.Equal(t, lastOK, second[`planrun_last_success_timestamp_seconds{`+tiny+`}`], "a failure leaves the last success alone")

	// The file is what planrun metrics prints, and the push carried it.
	r = runCLI(t, "metrics")
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Equal(t, r.stdout, string(b))
	reqs := recv.got()
	require.Len(t, reqs, 2)
	assert.Equal(t, r.stdout, reqs[1].body)

	// Only the file (and its lock) is left: no temp files.
	ents, err := os.ReadDir(textfiles)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{".planrun.prom.lock", "planrun.prom"}, names)
}

// Metrics problems are warnings: the run's exit code stays the run's.
func TestMetricsNeverFailTheRun(t *testing.T) {
	plan, textfiles, _ := tinyEnv(t)
	t.Setenv("PLANRUN_TEXTFILE_DIR", filepath.Join(textfiles, "missing"))
	t.Setenv("PLANRUN_PUSHGATEWAY_URL", "http://127.0.0.1:1")
	r := runCLI(t, "apply", plan)
	assert.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stderr, "warning: metrics textfile")
	assert.Contains(t, r.stderr, "warning: pushgateway")
}

// The demo plan's run, scraped by a real node_exporter through its
// textfile collector; then a failed run, scraped again.
func TestDemoMetricsServedByNodeExporter(t *testing.T) {
	exporter := nodeExporter(t)
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	work := t.TempDir()
	key := filepath.Join(work, "demo.agekey")
	b, err := os.ReadFile(filepath.Join(root, "testdata", "keys", "demo.agekey"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(key, b, 0o600))
	textfiles := filepath.Join(work, "textfiles")
	require.NoError(t, os.Mkdir(textfiles, 0o755))
	t.Setenv("PLANRUN_STATE_DIR", filepath.Join(work, "state"))
	t.Setenv("PLANRUN_DB", "")
	t.Setenv("PLANRUN_TEXTFILE_DIR", textfiles)
	t.Setenv("PLANRUN_PUSHGATEWAY_URL", "")
	t.Chdir(root) // the demo's paths are relative to the repository
	demo := []string{"apply", "plans/demo.yaml", "--var", "out=" + filepath.Join(work, "out"), "--var", "identity_file=" + key}

	r := runCLI(t, demo...)
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	text, err := os.ReadFile(filepath.Join(textfiles, "planrun.prom"))
	require.NoError(t, err)
	promtoolAccepts(t, text)
	inFile := samples(t, string(text))

	addr := startNodeExporter(t, exporter, textfiles)
	scraped := scrape(t, addr)
	const demoApply = `kind="apply",plan="demo"`
	for _, key := range []string{
		`planrun_last_run_success{` + demoApply + `}`,
		`planrun_last_success_timestamp_seconds{` + demoApply + `}`,
		`planrun_last_run_artifacts{` + demoApply + `}`,
		`planrun_step_duration_seconds{` + demoApply + `,step="archive"}`,
	} {
		v, ok := scraped[key]
		if assert.True(t, ok, "node_exporter does not serve %s", key) {
			assert.Equal(t, inFile[key], v, key)
		}
	}
	assert.Equal(t, 1.0, scraped[`planrun_last_run_success{`+demoApply+`}`])
	assert.GreaterOrEqual(t, scraped[`planrun_last_run_artifacts{`+demoApply+`}`], 2.0)
	assert.Equal(t, 0.0, scraped[`node_textfile_scrape_error{}`])

	// A failed run (its source is gone): node_exporter serves the new
	// status at the next scrape; the last success stays.
	r = runCLI(t, append(demo, "--var", "source="+filepath.Join(work, "no-such-dir"))...)
	require.Equal(t, engine.ExitFailed, r.code, r.stderr)
	again := scrape(t, addr)
	assert.Equal(t, 0.0, again[`planrun_last_run_success{`+demoApply+`}`])
	assert.Equal(t, 1.0, again[`planrun_last_run_exit_code{`+demoApply+`}`])
	assert.Equal(t, inFile[`planrun_last_success_timestamp_seconds{`+demoApply+`}`],
		again[`planrun_last_success_timestamp_seconds{`+demoApply+`}`])
}

// nodeExporter finds node_exporter (Debian names it prometheus-node-exporter).
func nodeExporter(t *testing.T) string {
	if p, err := exec.LookPath("node_exporter"); err == nil {
		return p
	}
	return testenv.RequireTool(t, "prometheus-node-exporter")
}

// startNodeExporter starts node_exporter on a free port of 127.0.0.1 with
// only the textfile collector, and returns its address once it listens
// (it logs the address it bound).
func startNodeExporter(t *testing.T, exporter, dir string) string {
	t.Helper()
	cmd := exec.Command(exporter, "--web.listen-address=127.0.0.1:0", "--collector.disable-defaults",
		"--collector.textfile", "--collector.textfile.directory="+dir)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	listening := regexp.MustCompile(`msg="Listening on" address=(127\.0\.0\.1:\d+)`)
	sc := bufio.NewScanner(stderr)
	var log strings.Builder
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if m := listening.FindStringSubmatch(sc.Text()); m != nil {
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			return m[1]
		}
	}
	t.Fatalf("node_exporter exited without listening:\n%s", log.String())
	return ""
}

func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return samples(t, string(b))
}

// The alert rules the README tells operators to copy are valid rules.
func TestReadmeAlertRules(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool")
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	const start = "```yaml\n# /etc/prometheus/rules/planrun.yml\n"
	_, rest, ok := strings.Cut(string(readme), start)
	require.True(t, ok, "README has no %q block", start)
	rules, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	file := filepath.Join(t.TempDir(), "planrun.yml")
	require.NoError(t, os.WriteFile(file, []byte(rules), 0o644))
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "SUCCESS: 6 rules found")
	// Every metric the rules use is one planrun exports.
	for _, m := range regexp.MustCompile(`planrun_[a-z_]+`).FindAllString(rules, -1) {
		listed := strings.Contains(string(readme), "`"+m+"`") || strings.Contains(string(readme), "`"+m+"{")
		assert.True(t, listed, "the rules use %s, which the metrics table does not list", m)
	}
}

func TestMetricsDiskUsage(t *testing.T) {
	st := tempStore(t)
	// A disk-usage step over its limit fails, and its total is still exported.
	record(t, st, "ffffffff12345678", "chitlaq-full", engine.StatusFailed, base, time.Minute,
		engine.AttemptRecord{StepID: "backup-size", StepType: "disk-usage", Attempt: 1, Status: engine.StatusFailed,
			Outputs: map[string]any{"total_bytes": int64(12 << 30), "max_total_bytes": int64(10 << 30), "ok": false}})
	r := runCLI(t, "metrics", "--db", st.Path())
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	got := samples(t, r.stdout)
	const l = `{kind="apply",plan="chitlaq-full",step="backup-size"}`
	assert.Equal(t, float64(12<<30), got["planrun_disk_usage_bytes"+l], r.stdout)
	assert.Equal(t, float64(10<<30), got["planrun_disk_usage_limit_bytes"+l])
}
