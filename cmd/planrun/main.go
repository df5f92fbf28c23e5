// Command planrun runs declarative backup and disaster-recovery plans.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

const usage = `planrun — declarative backup and disaster-recovery plans

Usage:
  planrun apply PLAN [--dry-run] [--env-file F]... [--var k=v]... [--wait] [--db PATH]
  planrun restore PLAN [--run ID|latest] [--only STEP,...] [--into scratch] [--keep] [--dry-run] [--yes]
  planrun restore --manifest FILE [PLAN] [--identity-file F] [--env-file F]... ...
  planrun drill PLAN [--run ID|latest] [--manifest FILE] [--only STEP,...] [--keep] [--dry-run]
  planrun validate [--strict] PLAN...
  planrun runs [--plan NAME] [--limit N] [--json]
  planrun show RUN [--json]
  planrun status PLAN --max-age 26h [--drill-max-age 35d]
  planrun steps [TYPE]
  planrun schema
  planrun version

Exit codes: 0 success, 1 a step failed, 2 invalid plan or usage,
3 another run of the plan holds its lock, 130/143 interrupted (SIGINT/SIGTERM).
Settings: PLANRUN_DB, PLANRUN_STATE_DIR, PLANRUN_LOG_FORMAT (text|json).
`

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
		fmt.Fprint(stderr, usage)
		return 2
	}
	verb, rest := args[0], args[1:]
	switch verb {
	case "apply":
		return cmdApply(rest, stdout, stderr)
	case "restore":
		return cmdRestore(rest, os.Stdin, stdout, stderr, false)
	case "drill":
		return cmdRestore(rest, os.Stdin, stdout, stderr, true)
	case "validate":
		return cmdValidate(rest, stdout, stderr)
	case "steps":
		return cmdSteps(rest, stdout, stderr)
	case "schema":
		return cmdSchema(rest, stdout, stderr)
	case "runs", "show", "status":
		return withStore(verb, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "planrun", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "planrun: unknown command %q\n\n%s", verb, usage)
	return 2
}
