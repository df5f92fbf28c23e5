package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decide evaluates a step's `when`. Without a status function in it, the
// step also needs success() (as in CI systems); an interrupted run only
// runs steps that ask for always()/failure()/cancelled().
func (r *run) decide(s *Step, scope map[string]any) (bool, string, error) {
	if r.dry && !s.whenDefault && r.unknownCode(s.When) {
		return true, "when " + s.When + " is decided when the run gets there (it reads an earlier step's outputs)", nil
	}
	failed := r.failed || r.interrupted != nil || r.timedOut
	if !s.whenStatus && failed {
		if r.interrupted != nil {
			return false, "run interrupted", nil
		}
		if r.lockLost != "" {
			return false, "resource lock " + r.lockLost + " was lost", nil
		}
		if r.preflightFail {
			return false, "preflight failed", nil
		}
		return false, "an earlier step failed", nil
	}
	if s.whenDefault {
		return true, "", nil
	}
	ok, err := EvalBool(s.when, s.When, scope)
	if err != nil {
		return false, "", err
	}
	if !ok {
		return false, "when " + s.When + " → false", nil
	}
	if !s.whenDefault {
		return true, "when " + s.When + " → true", nil
	}
	return true, "", nil
}

func (r *run) runStep(ctx context.Context, i int, s *Step) {
	r.noteCancel(ctx)
	r.pollLost()
	log := r.log.With("step", s.ID)
	scope := r.exprScope()
	st := &stepState{outputs: Outputs{}}
	r.steps[s.ID] = st
	started := time.Now().UTC()
	defer func() { st.finished = time.Now().UTC() }()

	skip := func(reason string, waits ...LockWait) {
		st.status, st.outcome = StatusSkipped, StatusSkipped
		log.Info("step skipped", "reason", reason)
		r.record(AttemptRecord{RunID: r.id, StepID: s.ID, StepType: s.TypeName, Status: StatusSkipped,
			Started: started, Finished: time.Now().UTC(), Reason: reason, LockWaits: waits})
	}
	// The kind is refined from the params once decoded; a failure before
	// that counts as a failed backup if the type can be one.
	kind := s.Type.Kind
	if s.Type.MayBackup() {
		kind = KindBackup
	}
	fail := func(err error) {
		msg := r.scope.Secrets.Redact(err.Error())
		st.outcome, st.err = StatusFailed, msg
		if kind == KindBackup && r.backupFailed == "" {
			r.backupFailed = s.ID
		}
		if s.ContinueOnError {
			st.status = StatusSuccess
			log.Warn("step failed; continuing (continue_on_error)", "err", msg)
		} else {
			st.status = StatusFailed
			r.failed = true
			if r.firstErr == nil {
				r.firstErr = fmt.Errorf("step %s: %s", s.ID, msg)
			}
			log.Error("step failed", "err", msg)
		}
	}

	run, reason, err := r.decide(s, scope)
	if err != nil {
		fail(err)
		r.record(AttemptRecord{RunID: r.id, StepID: s.ID, StepType: s.TypeName, Status: StatusFailed,
			Started: started, Finished: time.Now().UTC(), Error: r.scope.Secrets.Redact(err.Error())})
		return
	}
	if !run {
		skip(reason)
		return
	}

	// A cancelled run still runs its always()/failure() steps, under the
	// hard context that only a second signal cancels.
	parent := ctx
	if ctx.Err() != nil {
		parent = r.opts.Hard
	}

	params, _, err := r.params(s, scope)
	if err != nil {
		fail(err)
		r.record(AttemptRecord{RunID: r.id, StepID: s.ID, StepType: s.TypeName, Attempt: 1, Status: StatusFailed,
			Started: started, Finished: time.Now().UTC(), Error: r.scope.Secrets.Redact(err.Error())})
		return
	}
	kind = s.Type.KindFor(params)
	need, err := r.resolveLocks(s.Locks, fmt.Sprintf("step %q: locks", s.ID))
	if err == nil {
		for _, name := range need {
			if lost := r.lostLocks[name]; lost != nil {
				err = lost // another run may hold it by now
				break
			}
		}
	}
	if err != nil {
		fail(err)
		r.record(AttemptRecord{RunID: r.id, StepID: s.ID, StepType: s.TypeName, Attempt: 1, Status: StatusFailed,
			Started: started, Finished: time.Now().UTC(), Error: r.scope.Secrets.Redact(err.Error())})
		return
	}
	if kind == KindDestructive && r.lockLost != "" {
		// Not overridable: another run may be using the resource now.
		skip(fmt.Sprintf("safety interlock: resource lock %s was lost earlier in this run", r.lockLost))
		return
	}
	if kind == KindDestructive && !s.AfterBackupFailure {
		switch {
		case r.backupFailed != "":
			skip(fmt.Sprintf("safety interlock: backup step %q failed earlier in this run (set after_backup_failure: true to override)", r.backupFailed))
			return
		case r.guardTripped != "":
			skip(fmt.Sprintf("safety interlock: the guard of step %q tripped earlier in this run (set after_backup_failure: true to override)", r.guardTripped))
			return
		}
	}
	guard := r.guardOf(s, kind)

	// The step's own locks (those the plan does not hold already), held
	// from before its first attempt to after its last.
	var take []string
	for _, name := range need {
		if r.planHeld(name) == nil {
			take = append(take, name)
		}
	}
	own, waits, refusal := r.takeLocks(parent, take, s.ID, s.OnLock, s.LockWait, log)
	if refusal != nil {
		r.noteCancel(parent)
		switch refusal.outcome {
		case LockSkipped:
			skip(refusal.err.Error(), waits...)
			return
		case LockInterrupted:
			st.status, st.outcome, st.err = StatusInterrupted, StatusInterrupted, r.scope.Secrets.Redact(refusal.err.Error())
			if kind == KindBackup && r.backupFailed == "" {
				r.backupFailed = s.ID
			}
			log.Error("step interrupted", "err", st.err)
			r.record(AttemptRecord{RunID: r.id, StepID: s.ID, StepType: s.TypeName, Attempt: 1, Status: StatusInterrupted,
				Started: started, Finished: time.Now().UTC(), Error: st.err, LockWaits: waits})
			return
		}
		fail(refusal.err) // not retried: the holder is still there
		r.record(AttemptRecord{RunID: r.id, StepID: s.ID, StepType: s.TypeName, Attempt: 1, Status: StatusFailed,
			Started: started, Finished: time.Now().UTC(), Error: r.scope.Secrets.Redact(refusal.err.Error()), LockWaits: waits})
		return
	}
	defer func() {
		for _, h := range own {
			h.lock.Release()
		}
	}()
	// Every attempt runs under all the locks the run holds: it is checked
	// before it starts and cancelled if one of them is lost meanwhile.
	var watched []*heldLock
	for _, h := range r.planLocks {
		if h.lost == nil {
			watched = append(watched, h)
		}
	}
	watched = append(watched, own...)
	// lost notes a lost lock on the attempt's record: the step's own on
	// the first attempt's waits, later ones as an entry of their own.
	lost := func(rec *AttemptRecord, h *heldLock) {
		if !slices.Contains(own, h) {
			return // the plan's: on the run record
		}
		for i := range rec.LockWaits {
			if rec.LockWaits[i].Resource == h.name {
				rec.LockWaits[i].Outcome, rec.LockWaits[i].Error = LockLost, r.scope.Secrets.Redact(h.lost.Error())
				return
			}
		}
		rec.LockWaits = append(rec.LockWaits, LockWait{Resource: h.name, Scope: r.locker.Scope(), Outcome: LockLost,
			Error: r.scope.Secrets.Redact(h.lost.Error())})
	}

	log.Info("step started", "type", s.TypeName)
	var lastErr error
	for attempt := 1; attempt <= s.Retry.Attempts; attempt++ {
		began := time.Now().UTC()
		var lockWaits []LockWait
		if attempt == 1 {
			lockWaits = waits
		}
		if err := r.checkLocks(watched); err != nil {
			lastErr = err
			rec := AttemptRecord{RunID: r.id, StepID: s.ID, StepType: s.TypeName, Attempt: attempt, Status: StatusFailed,
				Started: began, Finished: time.Now().UTC(), Error: r.scope.Secrets.Redact(err.Error()), LockWaits: lockWaits}
			for _, h := range watched {
				if h.lost != nil {
					lost(&rec, h)
				}
			}
			r.record(rec)
			break
		}
		actx, unwatch := watchLocks(parent, watched)
		outputs, stats, arts, err := r.attempt(actx, s, params, log)
		// Lost while the attempt ran (the watcher may not have cancelled
		// yet): its work was not done under the lock.
		lostLock := lostDuring(actx, watched)
		unwatch()
		if lostLock.h != nil {
			err = r.markLost(lostLock.h, r.lostReason(lostLock.h))
		}
		st.outputs = outputs
		assertErr := error(nil)
		if err == nil {
			assertErr = r.checkAsserts(s)
			err = assertErr
		}
		finished := time.Now().UTC()
		rec := AttemptRecord{RunID: r.id, StepID: s.ID, StepType: s.TypeName, Attempt: attempt,
			Started: began, Finished: finished, Duration: finished.Sub(began),
			Outputs: r.redactOutputs(outputs), BytesIn: stats.BytesIn.Load(), BytesOut: stats.BytesOut.Load(),
			LockWaits: lockWaits}
		if lostLock.h != nil {
			lost(&rec, lostLock.h)
			assertErr = err // not retried: the lock is not taken again
		}
		if err == nil {
			for _, a := range arts {
				a.StepID, a.StepType = s.ID, s.TypeName
				// Records are stored and travel off-site: steps keep secrets
				// out of them, and the redactor makes sure.
				for k, v := range a.Source {
					a.Source[k] = r.scope.Secrets.Redact(v)
				}
				for k, v := range a.Tools {
					a.Tools[k] = r.scope.Secrets.Redact(v)
				}
				rec.Records = append(rec.Records, *a)
			}
		}
		if err == nil && guard != nil {
			// A tripped guard's attempt keeps its records (show lists what
			// was written), but only successful attempts make the manifest.
			g := r.checkGuard(guard, s, &rec, outputs)
			if g.Tripped() && r.guardTripped == "" {
				r.guardTripped = s.ID
			}
			switch g.Verdict {
			case VerdictFail:
				err = errors.New(g.Summary)
				assertErr = err // not retried: the same source would dump the same
			case VerdictWarn:
				log.Warn(g.Summary + "; destructive steps of this run are held back")
			default:
				log.Info(g.Summary)
			}
		}
		if err == nil {
			rec.Status = StatusSuccess
			r.artifacts = append(r.artifacts, rec.Records...)
			rec.Artifacts = artifactPaths(rec.Records)
			r.record(rec)
			st.status, st.outcome = StatusSuccess, StatusSuccess
			log.Info("step succeeded", "attempt", attempt, "duration", finished.Sub(began))
			return
		}
		lastErr = err
		rec.Status = StatusFailed
		if parent.Err() != nil && !errors.Is(context.Cause(parent), errPlanTimeout) {
			rec.Status = StatusInterrupted
		}
		rec.Error = r.scope.Secrets.Redact(err.Error())
		rec.Artifacts = artifactPaths(rec.Records)
		r.record(rec)
		if parent.Err() != nil {
			r.noteCancel(parent)
			break
		}
		if assertErr != nil {
			break // the step did its work; running it again would not change the facts
		}
		if attempt < s.Retry.Attempts {
			d := backoff(s.Retry, attempt)
			log.Warn("attempt failed; retrying", "attempt", attempt, "of", s.Retry.Attempts, "in", d, "err", rec.Error)
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-parent.Done():
				t.Stop()
			}
			if parent.Err() != nil {
				r.noteCancel(parent)
				break
			}
		}
	}
	if r.interrupted != nil && parent == ctx {
		st.status, st.outcome, st.err = StatusInterrupted, StatusInterrupted, r.scope.Secrets.Redact(lastErr.Error())
		if kind == KindBackup && r.backupFailed == "" {
			r.backupFailed = s.ID // a stopped backup is no backup: hold destructive steps
		}
		log.Error("step interrupted", "err", r.scope.Secrets.Redact(lastErr.Error()))
		return
	}
	fail(lastErr)
}

// params interpolates a step's `with:` and decodes it into typed params,
// registering the values of secret params with the redactor. Apply and
// the dry run share it; in a dry run, values that only the run will know
// (an earlier step's outputs) stay as written and are checked like
// validate checks them.
func (r *run) params(s *Step, scope map[string]any) (any, *yaml.Node, error) {
	var unknown func(*Template, error) bool
	if r.dry {
		unknown = r.unknownTemplate
	}
	with, err := r.plan.exprs.interpolateKnown(s.With, scope, unknown)
	if err != nil {
		return nil, nil, err
	}
	params, err := r.decode(s, with)
	return params, with, err
}

// unknownTemplate reports, in a dry run, whether a template reads what
// only the run will produce: outputs of earlier steps (known before
// evaluation), or files that newest()/files() did not find (known when
// evaluation fails): an earlier step may fetch them.
func (r *run) unknownTemplate(t *Template, evalErr error) bool {
	for _, code := range t.Codes() {
		if evalErr == nil && r.unknownCode(code) {
			return true
		}
		if evalErr != nil {
			if _, calls, _ := r.plan.exprs.references(code); contains(calls, "newest") || contains(calls, "files") {
				return true
			}
		}
	}
	return false
}

// unknownCode reports whether an expression reads an earlier step's
// outputs in a dry run (where no step has run).
func (r *run) unknownCode(code string) bool {
	if !r.dry {
		return false
	}
	refs, _, err := r.plan.exprs.references(code)
	if err != nil {
		return false
	}
	for _, ref := range refs {
		if ref[0] == "steps" && (len(ref) == 2 || len(ref) >= 3 && ref[2] == "outputs") {
			return true
		}
		if ref[0] == "history" { // the run store, which a dry run does not open
			return true
		}
	}
	return false
}

// decode turns an interpolated `with:` into typed params.
func (r *run) decode(s *Step, with *yaml.Node) (any, error) {
	at := with
	if at == nil {
		at = &yaml.Node{Kind: yaml.MappingNode, Line: s.Line, Column: s.Col}
	}
	params, probs := s.Type.Decode(at, r.dry)
	r.scope.Secrets.Add(s.Type.SecretValues(params)...)
	if len(probs) > 0 {
		msgs := make([]string, len(probs))
		for i, p := range probs {
			msgs[i] = p.Msg
		}
		return nil, fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return params, nil
}

// attempt runs one attempt under the step timeout, with a private temp dir.
func (r *run) attempt(parent context.Context, s *Step, params any, log *slog.Logger) (out Outputs, stats *Stats, arts []*ArtifactRecord, err error) {
	stats = &Stats{}
	actx, cancel := context.WithTimeout(parent, s.Timeout)
	defer cancel()
	env := &Env{
		RunID: r.id, PlanName: r.plan.Name, StepID: s.ID, Environ: r.scope.Environ,
		Log: log, Secrets: r.scope.Secrets, Stats: stats,
		runInfo: r.manifestInfo,
	}
	defer env.Cleanup()
	var show func(int64)
	if r.opts.TTY != nil {
		line := newProgressLine(r.opts.TTY, s.ID)
		show = line.update
		defer line.done()
	}
	env.Progress = NewProgress(show, log)
	defer func() {
		if p := recover(); p != nil {
			log.Error("step panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error in step type %s: %v", s.TypeName, p)
		}
	}()
	out, err = s.Type.Run(actx, env, params)
	if out == nil {
		out = Outputs{}
	}
	if err != nil && errors.Is(actx.Err(), context.DeadlineExceeded) && parent.Err() == nil {
		err = fmt.Errorf("step timeout %s exceeded: %w", s.Timeout, err)
	}
	return out, stats, env.artifacts, err
}

// backoff is exponential from Retry.Delay, capped at MaxDelay, with jitter
// in [d/2, d) so that many hosts retrying do not stampede.
func backoff(rt Retry, attempt int) time.Duration {
	d := rt.Delay // the loader fills the declared default (retryFile)
	for i := 1; i < attempt && d < time.Hour; i++ {
		d *= 2
	}
	if rt.MaxDelay > 0 && d > rt.MaxDelay {
		d = rt.MaxDelay
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

func (r *run) record(a AttemptRecord) {
	if r.opts.Recorder == nil {
		return
	}
	if _, err := storeWrite(func(ctx context.Context) (any, error) { return nil, r.opts.Recorder.RecordAttempt(ctx, a) }); err != nil {
		r.log.Error("run store", "err", err)
	}
}

// redactOutputs masks secrets in string outputs for the record.
func (r *run) redactOutputs(o Outputs) map[string]any {
	if len(o) == 0 {
		return nil
	}
	out := make(map[string]any, len(o))
	for k, v := range o {
		out[k] = redactValue(r.scope.Secrets, v)
	}
	return out
}

func redactValue(rd *Redactor, v any) any {
	switch x := v.(type) {
	case string:
		return rd.Redact(x)
	case []string:
		return rd.RedactArgs(x)
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = redactValue(rd, e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = redactValue(rd, e)
		}
		return l
	}
	return v
}

// artifactPaths is the path → sha256 summary of an attempt's artifacts.
func artifactPaths(recs []ArtifactRecord) map[string]string {
	if len(recs) == 0 {
		return nil
	}
	m := make(map[string]string, len(recs))
	for _, a := range recs {
		m[a.Path] = a.SHA256
	}
	return m
}

// manifestInfo is the run's manifest so far.
func (r *run) manifestInfo() Manifest {
	return Manifest{Format: ManifestFormat, RunID: r.id, Plan: r.plan.Name, PlanFile: r.plan.File,
		PlanSHA256: r.plan.SHA256, Host: r.host, Started: r.scope.Started,
		Artifacts: append([]ArtifactRecord(nil), r.artifacts...)}
}

// notify drives the plan's monitor steps with a signal (start, success,
// fail). A monitor failure is logged, never fatal.
func (r *run) notify(ctx context.Context, n notice, body string) {
	n.err = r.scope.Secrets.Redact(n.err)
	r.sig = n
	for _, m := range r.plan.Monitor {
		log := r.log.With("monitor", m.TypeName, "signal", n.signal)
		code := n.code
		if n.signal != "fail" {
			code = 0 // only a failure has a code to report (a skip's 3 is in run.exit_code)
		}
		err := r.notifyOne(ctx, m, n.signal, code, body, log)
		if err != nil {
			log.Warn("monitor notification failed", "err", r.scope.Secrets.Redact(err.Error()))
		}
	}
}

func (r *run) notifyOne(ctx context.Context, m *Step, signal string, exitCode int, body string, log *slog.Logger) error {
	with, err := r.plan.exprs.interpolate(m.With, r.exprScope())
	if err != nil {
		return err
	}
	// Engine-set values are added after interpolation: a log tail is data,
	// never an expression.
	n := &yaml.Node{Kind: yaml.MappingNode, Line: m.Line, Column: m.Col}
	if with != nil && with.Kind == yaml.MappingNode {
		n.Content = append(n.Content, with.Content...)
	}
	for _, kv := range [][2]string{{"signal", signal}, {"exit_code", fmt.Sprint(exitCode)}, {"body", r.scope.Secrets.Redact(body)}} {
		if !hasKey(n.Content, kv[0]) {
			n.Content = append(n.Content,
				&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: kv[0]},
				&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: kv[1]})
		}
	}
	params, err := r.decode(m, n)
	if err != nil {
		return err
	}
	_, _, _, err = r.attempt(ctx, m, params, log)
	return err
}

// checkAsserts evaluates a finished step's `assert:` over its own outputs
// and earlier steps'. A false one names the expression and the values it
// read.
func (r *run) checkAsserts(s *Step) error {
	if len(s.Asserts) == 0 {
		return nil
	}
	scope := r.exprScope() // holds the step's own outputs already
	var failed []string
	for _, a := range s.Asserts {
		ok, err := EvalBool(a.prog, a.Code, scope)
		switch {
		case err != nil:
			failed = append(failed, fmt.Sprintf("assert %s: %v", a.Code, err))
		case !ok:
			failed = append(failed, "assert failed: "+a.Code+r.assertValues(a.Code, scope))
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// assertValues renders the values an expression read ("(a = 1, b = 2)").
func (r *run) assertValues(code string, scope map[string]any) string {
	refs, _, err := r.plan.exprs.references(code)
	if err != nil || len(refs) == 0 {
		return ""
	}
	var parts []string
	seen := map[string]bool{}
	for _, ref := range refs {
		name := strings.Join(ref, ".")
		if seen[name] || len(ref) < 2 || ref[0] == "history" { // history.* are functions
			continue
		}
		seen[name] = true
		var v any = scope
		for _, k := range ref {
			m, ok := v.(map[string]any)
			if !ok {
				if o, isOut := v.(Outputs); isOut {
					m, ok = map[string]any(o), true
				}
			}
			if !ok {
				v = nil
				break
			}
			v = m[k]
		}
		parts = append(parts, name+" = "+FormatValue(v))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
