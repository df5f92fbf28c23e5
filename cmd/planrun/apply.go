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
	"github.com/planrun/planrun/engine/store"
	"github.com/planrun/planrun/steps"
)

func cmdApply(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("apply", stderr)
	dryRun := fs.Bool("dry-run", false, "print what would run (resolved params, commands, files); run and record nothing")
	var envFiles listFlag
	fs.Var(&envFiles, "env-file", "env file to read instead of the plan's env_files (repeatable)")
	vars := varsFlag{}
	fs.Var(vars, "var", "override a plan var: name=value (repeatable)")
	wait := fs.Bool("wait", false, "wait for another run of the plan to finish instead of exiting 3")
	loose := fs.Bool("allow-loose-env-perms", false, "warn instead of refusing env files readable by group/others")
	db := fs.String("db", "", "run store path (default $PLANRUN_DB or <state dir>/runs.db)")
	logFormat := fs.String("log-format", "", "text or json (default $PLANRUN_LOG_FORMAT or text)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return engine.ExitInvalid
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: planrun apply PLAN [--dry-run] [--env-file F]... [--var k=v]... [--wait]")
		return engine.ExitInvalid
	}
	settings, err := runSettings(*db, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return engine.ExitInvalid
	}

	plan, err := engine.LoadFile(pos[0], steps.All())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return engine.ExitInvalid
	}
	scope, err := engine.Prepare(plan, engine.Invocation{
		Environ: os.Environ(), EnvFiles: envFiles, AllowLoosePerms: *loose, Vars: vars,
	})
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return engine.ExitInvalid
	}
	if *dryRun {
		if err := engine.DryRun(stdout, plan, scope); err != nil {
			fmt.Fprintf(stderr, "planrun: %v\n", err)
			return engine.ExitFailed
		}
		return engine.ExitOK
	}

	st, err := store.Open(settings.DB)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return engine.ExitFailed
	}
	defer st.Close()

	ctx, hard, stop := signalContexts()
	defer stop()

	res := engine.Apply(ctx, plan, scope, runOptions(st, settings, stderr, *wait, hard))
	var locked *engine.ErrLocked
	if errors.As(res.Err, &locked) {
		fmt.Fprintf(stderr, "planrun: %v\n", locked)
	}
	return res.ExitCode
}

// runSettings are the engine settings of a recorded run: the environment's
// (PLANRUN_*), with the --db and --log-format flags over them.
func runSettings(db, logFormat string) (engine.Settings, error) {
	settings, err := engine.LoadSettings(context.Background(), nil)
	if err != nil {
		return settings, fmt.Errorf("settings: %w", err)
	}
	if db != "" {
		settings.DB = db
	}
	if logFormat != "" {
		settings.LogFormat = logFormat
	}
	if settings.LogFormat != "text" && settings.LogFormat != "json" {
		return settings, fmt.Errorf("log format must be text or json, got %q", settings.LogFormat)
	}
	return settings, nil
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
func runOptions(st *store.Store, settings engine.Settings, stderr io.Writer, wait bool, hard context.Context) engine.Options {
	trigger := os.Getenv("PLANRUN_TRIGGER")
	if trigger == "" {
		trigger = "cli"
	}
	opts := engine.Options{
		Recorder: st, StateDir: settings.StateDir, LogFormat: settings.LogFormat,
		Stderr: stderr, Trigger: trigger, Wait: wait, Hard: hard,
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
