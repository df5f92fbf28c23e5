// Command steprun runs one built-in step type outside a plan, for the
// artifact benchmarks (peak RSS of a real process) and fault tests, while
// the planrun CLI may not exist yet:
//
//	steprun tar '{paths: [/data], output: /tmp/x.tar.zst}'
//
// SIGINT/SIGTERM cancel the step's context, as the CLI does. Outputs are
// printed as JSON; progress goes to stderr as "progress <bytes>" lines.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps"
)

// memoryLimit is the soft heap limit planrun processes run with (the CLI
// should set the same): streaming buffers are ~30 MiB, and without a limit
// the GC lets garbage from per-file allocations double the heap first.
const memoryLimit = 40 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: steprun TYPE 'WITH-YAML'")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1], os.Args[2]))
}

func run(typ, with string) int {
	t := steps.All().Lookup(typ)
	if t == nil {
		fmt.Fprintf(os.Stderr, "steprun: unknown step type %q\n", typ)
		return 2
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(with), &doc); err != nil {
		fmt.Fprintln(os.Stderr, "steprun:", err)
		return 2
	}
	var node *yaml.Node
	if len(doc.Content) > 0 {
		node = doc.Content[0]
	}
	p, probs := t.Decode(node, false)
	if len(probs) > 0 {
		for _, pr := range probs {
			fmt.Fprintf(os.Stderr, "steprun: %d:%d: %s\n", pr.Line, pr.Col, pr.Msg)
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &engine.Env{
		RunID: "steprun", StepID: typ, Environ: os.Environ(),
		Log:     slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Secrets: engine.NewRedactor(), Stats: &engine.Stats{},
	}
	if os.Getenv("STEPRUN_PROGRESS") != "" {
		env.Progress = func(done int64) { fmt.Fprintf(os.Stderr, "progress %d\n", done) }
	}
	if path := os.Getenv("STEPRUN_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	defer env.Cleanup()
	out, err := t.Run(ctx, env, p)
	if out != nil {
		b, _ := json.Marshal(out)
		fmt.Println(string(b))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "steprun: error:", err)
		return 1
	}
	return 0
}
