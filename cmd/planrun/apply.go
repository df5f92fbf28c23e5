package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps"
)

func cmdApply(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("apply", stdout, stderr)
	dryRun := fs.Bool("dry-run", false, "print what would run (resolved params, commands, files); run and record nothing")
	var envFiles listFlag
	fs.Var(&envFiles, "env-file", "env `file` to read instead of the plan's env_files (repeatable)")
	vars := varsFlag{}
	fs.Var(vars, "var", "override a plan var: `name=value` (repeatable)")
	wait := fs.Bool("wait", false, "wait for another run of the plan to finish instead of exiting 3")
	loose := fs.Bool("allow-loose-env-perms", false, "warn instead of refusing env files readable by group/others")
	settingsOf := settingsFlags(fs)
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return fs.usageError("want one plan file, got %d arguments", len(pos))
	}
	settings, err := settingsOf()
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return engine.ExitInvalid
	}

	inv := engine.Invocation{Environ: os.Environ(), EnvFiles: envFiles, AllowLoosePerms: *loose, Vars: vars, Host: settings.Host}
	// A run that cannot start still tells the plan's monitors (a dry run
	// never signals).
	refuse := func(p *engine.Plan, code int, err error) int {
		if !*dryRun {
			engine.Refuse(p, inv, runOptions(nil, settings, stderr, false, nil), code, err)
		}
		return code
	}
	reg := steps.All()
	plan, err := engine.LoadFile(pos[0], reg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return refuse(engine.LoadMonitors(pos[0], reg), engine.ExitInvalid, fmt.Errorf("invalid plan: %w", err))
	}
	scope, err := engine.Prepare(plan, inv)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return refuse(plan, engine.ExitInvalid, err)
	}
	if *dryRun {
		if err := engine.DryRun(stdout, plan, scope); err != nil {
			fmt.Fprintf(stderr, "planrun: %v\n", err)
			return engine.ExitFailed
		}
		return engine.ExitOK
	}

	// Without its run store a run does not start (fails loudly, with a fail
	// signal): an unrecorded backup would be invisible to status, metrics,
	// retention and restore, and a dead run could not be found later.
	rs, err := openRunStore(settings, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return refuse(plan, engine.ExitFailed, err)
	}
	defer rs.Close()

	ctx, hard, stop := signalContexts()
	defer stop()

	res := engine.Apply(ctx, plan, scope, runOptions(rs, settings, stderr, *wait, hard))
	afterRun(rs, settings, stderr)
	var locked *engine.ErrLocked
	if errors.As(res.Err, &locked) {
		fmt.Fprintf(stderr, "planrun: %v\n", locked)
	}
	return res.ExitCode
}

// signalContexts turns the first SIGINT/SIGTERM into a cancellation of
// ctx (the running step stops, always()/failure() steps still run) and a
// second one into a cancellation of hard (which aborts those too).
func signalContexts() (ctx, hard context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	hard, hardCancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		n := 0
		for sig := range sigs {
			n++
			if n == 1 {
				cancel(engine.SignalCause{Signal: sig.(syscall.Signal)})
			} else {
				hardCancel()
			}
		}
	}()
	return ctx, hard, func() {
		signal.Stop(sigs)
		cancel(nil)
		hardCancel()
	}
}

// runOptions are the engine options of a recorded run from the CLI.
func runOptions(rs *runStore, settings Settings, stderr io.Writer, wait bool, hard context.Context) engine.Options {
	trigger := os.Getenv("PLANRUN_TRIGGER")
	if trigger == "" {
		trigger = "cli"
	}
	opts := engine.Options{
		StateDir: settings.StateDir, LogFormat: settings.LogFormat,
		Stderr: stderr, Trigger: trigger, Wait: wait, Hard: hard,
	}
	if rs != nil {
		opts.Recorder, opts.Locker = rs.recorder, rs.locker
	}
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		opts.TTY = f
	}
	return opts
}

// isTerminal reports whether f is a character device (a terminal, not a
// cron log file or a pipe).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
