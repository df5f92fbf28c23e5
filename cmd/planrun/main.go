// Command planrun runs declarative backup and disaster-recovery plans.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/planrun/planrun/engine"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// verb is one command as its usage shows it.
type verb struct {
	name    string
	forms   []string // synopses after "planrun NAME"
	summary string
}

// verbs are the commands in the order the usage lists them. run
// dispatches them; a test checks that every one answers -h.
var verbs = []verb{
	{"apply", []string{"PLAN [--dry-run] [--env-file F]... [--var k=v]... [--wait] [--db PATH] [--log-format text|json]"},
		"Run a plan and record the run (--dry-run: print what would run; run and record nothing)."},
	{"restore", []string{"PLAN [--run ID|latest [--host H]] [--only STEP,...] [--into scratch] [--keep] [--dry-run] [--yes]",
		"--manifest FILE [PLAN] [--identity-file F] [--env-file F]... ..."},
		"Restore a backup run from its manifest (the run store's record, or a manifest file)."},
	{"drill", []string{"PLAN [--run ID|latest [--host H]] [--manifest FILE] [--only STEP,...] [--keep] [--dry-run]"},
		"Restore into scratch targets and compare with the manifest; exit 1 on any difference."},
	{"validate", []string{"[--strict] [--online [--json]] [--env-file F]... [--db PATH] PLAN..."},
		"Check plans; --strict also checks the env files and that every step's tools are found on the PATH its process gets; --online also checks services, credentials, tool versions, secret files and disk room (exit 1 on a failed check)."},
	{"runs", []string{"[--plan NAME] [--host H|--all] [--limit N] [--json] [--db PATH]"},
		"List recorded runs, newest first (with a central store: this host's, another's, or every host's)."},
	{"show", []string{"RUN|latest [--plan NAME] [--host H] [--json] [--db PATH]"},
		"Show one run (id or unique prefix): every step attempt with status, duration, bytes, error, outputs and artifacts."},
	{"status", []string{"PLAN --max-age 26h [--drill-max-age 35d] [--host H] [--json] [--db PATH]",
		"[--all|--host H] [--max-age 26h] [--drill-max-age 35d] [--json] [--db PATH]"},
		"Exit 0 if the plan's last successful backup (and its last passed drill) is recent enough, else 1; without PLAN, list every plan (of every host with --all: the fleet view) with its last success and age."},
	{"metrics", []string{"[--plan NAME] [--host H|--all] [--db PATH]"},
		"Print the run store's Prometheus metrics per plan (what PLANRUN_TEXTFILE_DIR gets after every run); --all: every host's, with a host label."},
	{"history", []string{"prune [--keep-days N] [--keep-runs N] [--plan NAME] [--host H|--all] [--dry-run] [--db PATH]", "sync"},
		"prune: delete old runs and their log files; a run stays if either rule keeps it, and so do each host's plan's newest run and newest success of each kind. sync: copy the runs recorded locally while the central store was down."},
	{"schedule", []string{"install|show PLAN... [--backend systemd|cron] [--root DIR] [--exec BINARY] [--dry-run]",
		"remove PLAN...|--all [--backend systemd|cron] [--root DIR] [--dry-run]", "list [PLAN...] [--backend systemd|cron] [--root DIR]"},
		"Install, remove, list or show the systemd timers (or cron.d lines) that start plans when their schedule: says."},
	{"wal-push", []string{"[--config F] PATH"},
		"Archive a PostgreSQL WAL file (archive_command = 'planrun wal-push --config F %p'); exit 0 only once it is durably stored, never above 125."},
	{"wal-fetch", []string{"[--config F] NAME DEST"},
		"Restore an archived WAL file (restore_command = 'planrun wal-fetch --config F %f %p'); exit 1 when it is not archived, 126 when it is but cannot be restored."},
	{"wal-verify", []string{"[--config F] [--json]"},
		"Check that the WAL archive holds an unbroken chain from the oldest base backup to the newest segment; exit 1 naming the first gap."},
	{"steps", []string{"[TYPE]"}, "Print the step type reference."},
	{"schema", []string{""}, "Print the plan JSON Schema (draft 2020-12)."},
	{"version", []string{""}, "Print the version."},
}

func lookupVerb(name string) *verb {
	for i := range verbs {
		if verbs[i].name == name {
			return &verbs[i]
		}
	}
	return nil
}

// writeUsage prints planrun's usage: every verb's synopsis, the exit
// codes and the settings.
func writeUsage(w io.Writer) {
	fmt.Fprint(w, "planrun — declarative backup and disaster-recovery plans\n\nUsage:\n")
	for _, v := range verbs {
		for _, form := range v.forms {
			fmt.Fprintf(w, "  planrun %s\n", strings.TrimSpace(v.name+" "+form))
		}
	}
	fmt.Fprintf(w, `  planrun help VERB

Exit codes: %d success, %d a step failed, %d invalid plan or usage,
%d another run of the plan holds its lock, %d/143 interrupted (SIGINT/SIGTERM).
Settings: PLANRUN_DB (a file, or postgres://… for a central store), PLANRUN_STATE_DIR,
PLANRUN_HOST, PLANRUN_LOCK_FALLBACK (fail|local), PLANRUN_LOG_FORMAT (text|json),
PLANRUN_TEXTFILE_DIR, PLANRUN_PUSHGATEWAY_URL (metrics after every run),
PLANRUN_HISTORY_KEEP_DAYS (default 400; 0: off), PLANRUN_HISTORY_KEEP_RUNS (default 100).
`, engine.ExitOK, engine.ExitFailed, engine.ExitInvalid, engine.ExitLocked, engine.ExitInterrupted)
}

func main() {
	// Streaming needs ~30 MiB of buffers; a soft limit keeps the GC from
	// letting garbage double the heap (peak RSS ~40 MiB instead of ~64).
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(40 << 20)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a verb and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		writeUsage(stderr)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "apply":
		return cmdApply(rest, stdout, stderr)
	case "restore":
		return cmdRestore(rest, os.Stdin, stdout, stderr, false)
	case "drill":
		return cmdRestore(rest, os.Stdin, stdout, stderr, true)
	case "validate":
		return cmdValidate(rest, stdout, stderr)
	case "runs":
		return cmdRuns(rest, stdout, stderr)
	case "show":
		return cmdShow(rest, stdout, stderr)
	case "status":
		return cmdStatus(rest, stdout, stderr)
	case "metrics":
		return cmdMetrics(rest, stdout, stderr)
	case "history":
		return cmdHistory(rest, stdout, stderr)
	case "schedule":
		return cmdSchedule(rest, stdout, stderr)
	case "wal-push":
		return cmdWALPush(rest, stdout, stderr)
	case "wal-fetch":
		return cmdWALFetch(rest, stdout, stderr)
	case "wal-verify":
		return cmdWALVerify(rest, stdout, stderr)
	case "steps":
		return cmdSteps(rest, stdout, stderr)
	case "schema":
		return cmdSchema(rest, stdout, stderr)
	case "version", "--version":
		return cmdVersion(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		return cmdHelp(rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, "planrun: unknown command %q\n\n", name)
	writeUsage(stderr)
	return exitUsage
}

// cmdHelp: planrun help [VERB] is planrun VERB -h.
func cmdHelp(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		writeUsage(stdout)
		return engine.ExitOK
	case len(args) == 1 && lookupVerb(args[0]) != nil:
		return run([]string{args[0], "-h"}, stdout, stderr)
	}
	fmt.Fprintf(stderr, "planrun help: want one command name, got %q\n\n", args)
	writeUsage(stderr)
	return exitUsage
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", stdout, stderr)
	if code, ok := fs.parseNone(args); !ok {
		return code
	}
	fmt.Fprintln(stdout, "planrun", version)
	return engine.ExitOK
}
