// Command bench-pgdump-driver runs the pg_dump step once, exactly as a plan
// would (params decoded and validated by the engine), for
// scripts/bench-pgdump.sh while the CLI is not available in this branch.
// It prints one JSON line: wall time, this process's peak RSS, outputs.
//
//	bench-pgdump-driver -with 'database: bench\nformat: plain\noutput: /tmp/x.sql.zst.age\nencrypt: {recipients: [age1...]}'
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps"
)

func main() {
	with := flag.String("with", "", "the step's `with:` block (YAML)")
	stepType := flag.String("type", "pg_dump", "step type")
	flag.Parse()
	typ := steps.All().Lookup(*stepType)
	if typ == nil {
		fail(fmt.Errorf("unknown step type %q", *stepType))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(*with), &doc); err != nil || len(doc.Content) == 0 {
		fail(fmt.Errorf("-with: %v", err))
	}
	p, probs := typ.Decode(doc.Content[0], false)
	if len(probs) > 0 {
		fail(fmt.Errorf("params: %v", probs))
	}
	tmp, err := os.MkdirTemp("", "planrun-bench-step-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(tmp)
	sec := engine.NewRedactor()
	sec.Add(typ.SecretValues(p)...)
	env := &engine.Env{RunID: "bench", PlanName: "bench", StepID: "dump", Environ: os.Environ(), Secrets: sec,
		TempDir: tmp, Stats: &engine.Stats{}, Log: slog.New(slog.NewTextHandler(sec.Writer(os.Stderr), nil))}
	start := time.Now()
	out, err := typ.Run(context.Background(), env, p)
	if err != nil {
		fail(err)
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"seconds": time.Since(start).Seconds(), "maxrss_kib": ru.Maxrss, "outputs": out,
	})
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench-pgdump-driver:", err)
	os.Exit(1)
}
