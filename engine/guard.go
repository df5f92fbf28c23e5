package engine

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// Guard compares what a successful step produced (the size of its
// artifacts, the counts in their records, its duration) with the medians
// of the same step in the plan's recorded successful runs: a dump that
// silently shrank to a fifth is not a success, and must not let retention
// or a mirror replace the good copies.
type Guard struct {
	Size, Counts, Duration *GuardLimit
	Action                 string // GuardFail, GuardWarn or GuardOff
}

// GuardLimit bounds one measurement by ratios to its median.
type GuardLimit struct {
	MinRatio, MaxRatio float64 // 0: no bound
	Window             int     // newest successful runs the median is taken over
	MinHistory         int     // fewer runs recorded: not checked yet
}

// Guard actions.
const (
	GuardFail = "fail"
	GuardWarn = "warn"
	GuardOff  = "off"
)

// Guard verdicts, as the step's `guard` output records them.
const (
	VerdictPass      = "pass"
	VerdictNoHistory = "no-history" // too few runs recorded: passes
	VerdictWarn      = "warn"
	VerdictFail      = "fail"
)

// HistoryReader is implemented by recorders that can return a step's
// recorded history (the SQLite store): guards and the history.*
// expression functions read it.
type HistoryReader interface {
	// StepHistory returns the successful attempts of step in the plan's
	// newest n successful backup runs on host that ran it successfully,
	// newest first (the same plan on another host backs up other data).
	StepHistory(ctx context.Context, host, plan, step string, n int) ([]AttemptRecord, error)
}

// guard builds a guard from a decoded `guard:` laid over base (defaults):
// each key given replaces base's.
func (l *loader) guard(g *guardFile, base *Guard, at where) *Guard {
	if g == nil || g.n == nil {
		return nil // absent, or not a mapping (reported while decoding)
	}
	out := &Guard{Action: GuardFail}
	if base != nil {
		*out = *base
	}
	if g.vals["action"] != nil {
		out.Action = g.Action
	}
	for _, x := range []struct {
		key string
		src *limitFile
		dst **GuardLimit
	}{{"size", g.Size, &out.Size}, {"counts", g.Counts, &out.Counts}, {"duration", g.Duration, &out.Duration}} {
		if g.vals[x.key] != nil {
			*x.dst = l.limit(x.src, at.key(x.key))
		}
	}
	if out.Action != GuardOff && out.Size == nil && out.Counts == nil && out.Duration == nil {
		l.errf(g.n, "%s: give size, counts and/or duration (or action: off)", at)
	}
	return out
}

func (l *loader) limit(f *limitFile, at where) *GuardLimit {
	if f == nil || f.n == nil {
		return nil
	}
	applyDefaults(limitSpec, reflect.ValueOf(f).Elem())
	switch {
	case f.MinRatio == 0 && f.MaxRatio == 0:
		l.errf(f.n, "%s: give min_ratio and/or max_ratio", at)
	case f.MaxRatio > 0 && f.MinRatio > f.MaxRatio:
		l.errf(f.n, "%s: min_ratio %g is above max_ratio %g", at, f.MinRatio, f.MaxRatio)
	}
	return &GuardLimit{MinRatio: f.MinRatio, MaxRatio: f.MaxRatio, Window: f.Window, MinHistory: f.MinHistory}
}

// String describes the guard for dry runs: "size 0.5..3×, counts ≥ 0.8×
// the median of the last 14 runs (checked from 3); action fail".
func (g *Guard) String() string {
	var parts []string
	for _, x := range []struct {
		name string
		lim  *GuardLimit
	}{{"size", g.Size}, {"counts", g.Counts}, {"duration", g.Duration}} {
		if x.lim == nil {
			continue
		}
		bound := ""
		switch {
		case x.lim.MinRatio > 0 && x.lim.MaxRatio > 0:
			bound = fmt.Sprintf("%g..%g×", x.lim.MinRatio, x.lim.MaxRatio)
		case x.lim.MinRatio > 0:
			bound = fmt.Sprintf("≥ %g×", x.lim.MinRatio)
		default:
			bound = fmt.Sprintf("≤ %g×", x.lim.MaxRatio)
		}
		parts = append(parts, fmt.Sprintf("%s %s the median of the last %d runs (checked from %d)", x.name, bound, x.lim.Window, x.lim.MinHistory))
	}
	return strings.Join(parts, ", ") + "; action " + g.Action
}

// window is the most runs any of the guard's limits looks at.
func (g *Guard) window() int {
	n := 0
	for _, lim := range []*GuardLimit{g.Size, g.Counts, g.Duration} {
		if lim != nil {
			n = max(n, lim.Window)
		}
	}
	return n
}

// Sample is what guards and history.* measure of one successful attempt.
type Sample struct {
	Size     int64 // the artifacts' total size; bytes written when it recorded none
	BytesIn  int64
	BytesOut int64
	Duration time.Duration
	Counts   map[string]int64 // summed over its artifact records
}

// SampleOf measures an attempt record.
func SampleOf(a AttemptRecord) Sample {
	s := Sample{BytesIn: a.BytesIn, BytesOut: a.BytesOut, Duration: a.Duration, Counts: map[string]int64{}}
	for _, r := range a.Records {
		s.Size += r.Size
		for k, v := range r.Counts {
			s.Counts[k] += v
		}
	}
	if len(a.Records) == 0 {
		s.Size = a.BytesOut
	}
	return s
}

// Metric is one named measurement: size, bytes_in, bytes_out, duration
// (seconds) or a count key (rows:public.users).
func (s Sample) Metric(name string) (float64, bool) {
	switch name {
	case "size":
		return float64(s.Size), true
	case "bytes_in":
		return float64(s.BytesIn), true
	case "bytes_out":
		return float64(s.BytesOut), true
	case "duration":
		return s.Duration.Seconds(), true
	}
	v, ok := s.Counts[name]
	return float64(v), ok
}

// Median of xs (nil: 0).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// guardCheck is one measurement compared with its median.
type guardCheck struct {
	metric  string
	value   float64
	median  float64
	samples int
	lim     *GuardLimit
	tripped bool
	skipped string // why not checked ("" when checked)
}

func (c guardCheck) ratio() float64 { return c.value / c.median }

func (c guardCheck) String() string {
	if c.skipped != "" {
		return c.metric + ": " + c.skipped
	}
	s := fmt.Sprintf("%s %s is %.2f× the median %s of the last %d runs", c.metric, fmtMetric(c.metric, c.value),
		c.ratio(), fmtMetric(c.metric, c.median), c.samples)
	if c.tripped {
		if c.lim.MinRatio > 0 && c.ratio() < c.lim.MinRatio {
			s += fmt.Sprintf(" (min_ratio %g)", c.lim.MinRatio)
		} else {
			s += fmt.Sprintf(" (max_ratio %g)", c.lim.MaxRatio)
		}
	}
	return s
}

func fmtMetric(metric string, v float64) string {
	switch metric {
	case "size":
		return humanBytes(v)
	case "duration":
		return time.Duration(v * float64(time.Second)).Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%g", v)
}

// GuardResult is a guard's verdict on one attempt.
type GuardResult struct {
	Verdict string // VerdictPass, VerdictNoHistory, VerdictWarn or VerdictFail
	Summary string // one line: what was compared, what tripped
	checks  []guardCheck
}

// Tripped reports whether a check failed (verdict warn or fail).
func (r GuardResult) Tripped() bool { return r.Verdict == VerdictWarn || r.Verdict == VerdictFail }

// Check compares cur with hist (newest first).
func (g *Guard) Check(cur Sample, hist []Sample) GuardResult {
	var checks []guardCheck
	one := func(metric string, lim *GuardLimit) {
		var xs []float64
		for _, h := range hist[:min(len(hist), lim.Window)] {
			if v, ok := h.Metric(metric); ok {
				xs = append(xs, v)
			}
		}
		v, _ := cur.Metric(metric) // a count the history has and this run lacks: 0
		c := guardCheck{metric: metric, value: v, samples: len(xs), lim: lim, median: Median(xs)}
		switch {
		case len(xs) < lim.MinHistory:
			c.skipped = fmt.Sprintf("not checked yet: %d successful run(s) recorded, min_history %d", len(xs), lim.MinHistory)
		case c.median == 0:
			c.skipped = fmt.Sprintf("not checked: the median of the last %d runs is 0", len(xs))
		default:
			r := c.ratio()
			c.tripped = lim.MinRatio > 0 && r < lim.MinRatio || lim.MaxRatio > 0 && r > lim.MaxRatio
		}
		checks = append(checks, c)
	}
	if g.Size != nil {
		one("size", g.Size)
	}
	if g.Counts != nil {
		keys := map[string]bool{}
		for k := range cur.Counts {
			keys[k] = true
		}
		for _, h := range hist[:min(len(hist), g.Counts.Window)] {
			for k := range h.Counts {
				keys[k] = true
			}
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			one(k, g.Counts)
		}
	}
	if g.Duration != nil {
		one("duration", g.Duration)
	}
	return g.verdict(checks)
}

func (g *Guard) verdict(checks []guardCheck) GuardResult {
	res := GuardResult{Verdict: VerdictNoHistory, checks: checks}
	var tripped, passed, waiting []string
	for _, c := range checks {
		switch {
		case c.tripped:
			tripped = append(tripped, c.String())
		case c.skipped == "":
			passed = append(passed, c.String())
		default:
			waiting = append(waiting, c.String())
		}
	}
	switch {
	case len(tripped) > 0:
		res.Verdict = VerdictFail
		if g.Action == GuardWarn {
			res.Verdict = VerdictWarn
		}
		res.Summary = "guard tripped: " + strings.Join(tripped, "; ")
	case len(passed) > 0:
		res.Verdict = VerdictPass
		res.Summary = "guard passed: " + strings.Join(passed, "; ")
	case len(waiting) > 0:
		res.Summary = "guard passed without a verdict (too little history): " + waiting[0]
	default:
		res.Summary = "guard passed: nothing to compare (no counts recorded)"
	}
	if len(passed) > 0 || len(tripped) > 0 {
		if n := len(waiting); n > 0 {
			res.Summary += fmt.Sprintf("; %d measurement(s) not checked yet", n)
		}
	}
	return res
}

// mayGuard reports whether a guard may check the step (and set its guard
// output): its own, or the plan's default for a backup step.
func (s *Step) mayGuard(defaultGuard bool) bool {
	if s.ownGuard {
		return s.Guard != nil && s.Guard.Action != GuardOff
	}
	return defaultGuard && s.Type != nil && s.Type.MayBackup()
}

// guardOf is the guard that applies to step s of kind k in this run.
func (r *run) guardOf(s *Step, k Kind) *Guard {
	g := s.Guard
	if !s.ownGuard && k == KindBackup {
		g = r.plan.Defaults.Guard
	}
	if g == nil || g.Action == GuardOff || r.kind() != KindApply {
		return nil
	}
	return g
}

// checkGuard runs a step's guard on its successful attempt rec: the
// verdict goes into rec (reason) and the outputs, and the log.
func (r *run) checkGuard(g *Guard, s *Step, rec *AttemptRecord, outputs Outputs) GuardResult {
	var res GuardResult
	hist, err := r.stepHistory(s.ID, g.window())
	if err != nil {
		// A guard that cannot see the history cannot vouch for the backup.
		res = GuardResult{Verdict: VerdictFail, Summary: "guard: cannot read the run history: " + err.Error()}
		if g.Action == GuardWarn {
			res.Verdict = VerdictWarn
		}
	} else {
		samples := make([]Sample, len(hist))
		for i, a := range hist {
			samples[i] = SampleOf(a)
		}
		res = g.Check(SampleOf(*rec), samples)
	}
	res.Summary = r.scope.Secrets.Redact(res.Summary)
	outputs["guard"] = res.Verdict
	rec.Reason = res.Summary
	rec.Outputs = r.redactOutputs(outputs)
	return res
}

// stepHistory reads the step's recorded successful attempts, newest first
// (none without a run store that keeps history).
func (r *run) stepHistory(step string, n int) ([]AttemptRecord, error) {
	h, ok := r.opts.Recorder.(HistoryReader)
	if !ok || n <= 0 {
		return nil, nil
	}
	return storeWrite(func(ctx context.Context) ([]AttemptRecord, error) {
		return h.StepHistory(ctx, r.host, r.plan.Name, step, n)
	})
}

// historyFuncs are the history.* expression functions: medians and the
// newest value of a step's recorded successful runs, for custom checks in
// when and assert. A run store that keeps no history has none: count is 0,
// median and last are 0.
func (r *run) historyFuncs() map[string]any {
	samples := func(step string, n int) ([]Sample, error) {
		if r.dry {
			return nil, nil
		}
		hist, err := r.stepHistory(step, n)
		if err != nil {
			return nil, err
		}
		out := make([]Sample, len(hist))
		for i, a := range hist {
			out[i] = SampleOf(a)
		}
		return out, nil
	}
	values := func(step, metric string, n int) ([]float64, error) {
		hs, err := samples(step, n)
		if err != nil {
			return nil, fmt.Errorf("history of step %q: %w", step, err)
		}
		var xs []float64
		for _, h := range hs {
			if v, ok := h.Metric(metric); ok {
				xs = append(xs, v)
			}
		}
		return xs, nil
	}
	return map[string]any{
		"median": func(step, metric string, window int) (float64, error) {
			if window < 1 {
				return 0, fmt.Errorf("history.median: window must be at least 1, got %d", window)
			}
			xs, err := values(step, metric, window)
			return Median(xs), err
		},
		"last": func(step, metric string) (float64, error) {
			xs, err := values(step, metric, 1)
			if len(xs) == 0 {
				return 0, err
			}
			return xs[0], err
		},
		"count": func(step string, window int) (int, error) {
			if window < 1 {
				return 0, fmt.Errorf("history.count: window must be at least 1, got %d", window)
			}
			hs, err := samples(step, window)
			return len(hs), err
		},
	}
}

// historyProto gives the history functions' shapes to the compiler.
var historyProto = map[string]any{
	"median": func(step, metric string, window int) (float64, error) { return 0, nil },
	"last":   func(step, metric string) (float64, error) { return 0, nil },
	"count":  func(step string, window int) (int, error) { return 0, nil },
}
