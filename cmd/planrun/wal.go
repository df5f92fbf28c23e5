package main

// wal-push (archive_command), wal-fetch (restore_command) and wal-verify:
// the PostgreSQL WAL archive of steps/walarchive. wal-push runs once per
// 16 MiB segment, so it opens no run store and does nothing but the push.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/walarchive"
)

const (
	// exitWALFatal is wal-fetch's answer when the file is in the archive
	// but cannot be restored (corrupt, no key) or the config cannot be
	// read: PostgreSQL aborts recovery on an exit status above 125, where
	// 1 would make it end recovery early, at the last good segment.
	exitWALFatal = 126
)

// walSignals turns SIGINT/SIGTERM/SIGHUP into a cancelled context: the
// artifact writer then removes its temporary file, and the command exits
// 1. Death by a signal would make PostgreSQL's archiver exit (exit codes
// above 125 and signals are fatal to it).
func walSignals() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

// walArgs parses a wal verb's flags and want positional arguments (what
// names them, for the usage error) and loads the archive config from
// --config or $PLANRUN_WAL_CONFIG. When cfg is nil the verb returns code
// (the usage or the load error is printed; loadFail is the code of the
// latter).
func walArgs(verb string, args []string, want int, what string, loadFail int, stdout, stderr io.Writer,
	extra func(*verbFlags)) (cfg *walarchive.Config, pos []string, code int) {
	fs := newFlags(verb, stdout, stderr)
	config := fs.String("config", "", "archive config file (default $"+walarchive.ConfigEnv+")")
	if extra != nil {
		extra(fs)
	}
	pos, code, ok := fs.parse(args)
	if !ok {
		return nil, nil, code
	}
	if len(pos) != want {
		return nil, nil, fs.usageError("want %s, got %d arguments", what, len(pos))
	}
	path := *config
	if path == "" {
		path = os.Getenv(walarchive.ConfigEnv)
	}
	if path == "" {
		return nil, nil, fs.usageError("no archive config: give --config FILE or set %s", walarchive.ConfigEnv)
	}
	cfg, err := walarchive.LoadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "planrun %s: %v\n", verb, err)
		return nil, nil, loadFail
	}
	return cfg, pos, engine.ExitOK
}

// noPanic turns a panic into exit code 1 with a message: Go's own panic
// exit code (2) is harmless, but the message should say which command.
func noPanic(verb string, stderr io.Writer, code *int) {
	if r := recover(); r != nil {
		fmt.Fprintf(stderr, "planrun %s: internal error: %v\n", verb, r)
		*code = engine.ExitFailed
	}
}

func cmdWALPush(args []string, stdout, stderr io.Writer) (code int) {
	defer noPanic("wal-push", stderr, &code)
	cfg, pos, code := walArgs("wal-push", args, 1, "one WAL file path (%p)", engine.ExitFailed, stdout, stderr, nil)
	if cfg == nil {
		return code
	}
	// A short-lived process that allocates a few compression buffers:
	// collecting garbage would cost more than the memory it frees.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(512 << 20))
	// One core: the archiver pushes one segment at a time while the
	// database needs the others, and compressing a 16 MiB segment on two
	// cores costs a fifth more CPU (hand-offs, spinning) than on one.
	if os.Getenv("GOMAXPROCS") == "" {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	}
	ctx, stop := walSignals()
	defer stop()
	if err := walarchive.Push(ctx, cfg, pos[0]); err != nil {
		fmt.Fprintf(stderr, "planrun wal-push: %v\n", err)
		return engine.ExitFailed
	}
	return engine.ExitOK
}

func cmdWALFetch(args []string, stdout, stderr io.Writer) (code int) {
	defer noPanic("wal-fetch", stderr, &code)
	cfg, pos, code := walArgs("wal-fetch", args, 2, "the WAL file name (%f) and the destination (%p)", exitWALFatal, stdout, stderr, nil)
	if cfg == nil {
		return code
	}
	ctx, stop := walSignals()
	defer stop()
	err := walarchive.Fetch(ctx, cfg, pos[0], pos[1])
	switch {
	case err == nil:
		return engine.ExitOK
	case errors.Is(err, walarchive.ErrNotFound):
		// How recovery learns where the archive ends: one quiet line.
		fmt.Fprintf(stderr, "planrun wal-fetch: %s not in the archive\n", pos[0])
		return engine.ExitFailed
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "planrun wal-fetch: %s: interrupted\n", pos[0])
		return engine.ExitFailed
	}
	fmt.Fprintf(stderr, "planrun wal-fetch: %v\n", err)
	return exitWALFatal
}

func cmdWALVerify(args []string, stdout, stderr io.Writer) (code int) {
	var asJSON *bool
	cfg, _, code := walArgs("wal-verify", args, 0, "no arguments", engine.ExitFailed, stdout, stderr, func(fs *verbFlags) {
		asJSON = fs.Bool("json", false, "print the report as JSON")
	})
	if cfg == nil {
		return code
	}
	ctx, stop := walSignals()
	defer stop()
	rep, err := walarchive.Verify(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "planrun wal-verify: %v\n", err)
		return engine.ExitFailed
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return engine.ExitFailed
		}
	} else {
		writeVerifyReport(stdout, cfg.Dir, rep)
	}
	if !rep.OK() {
		fmt.Fprintf(stderr, "planrun wal-verify: %s\n", rep.Problem())
		return engine.ExitFailed
	}
	return engine.ExitOK
}

func writeVerifyReport(w io.Writer, dir string, rep *walarchive.VerifyReport) {
	fmt.Fprintf(w, "archive: %s\n", dir)
	if rep.Backup != "" {
		fmt.Fprintf(w, "oldest backup: %s\n", rep.Backup)
	}
	if rep.From != "" {
		fmt.Fprintf(w, "chain: %s .. %s (timeline %d), %d segments present\n", rep.From, rep.To, rep.Timeline, rep.Segments)
	}
	for _, g := range rep.Gaps {
		if g.From == g.To {
			fmt.Fprintf(w, "missing: %s\n", g.From)
		} else {
			fmt.Fprintf(w, "missing: %s .. %s\n", g.From, g.To)
		}
	}
	for _, c := range rep.Corrupt {
		fmt.Fprintf(w, "corrupt: %s\n", c)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if rep.OK() {
		fmt.Fprintln(w, "ok")
	}
}
