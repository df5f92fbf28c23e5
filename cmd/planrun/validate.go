package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps"
)

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stdout, stderr)
	strict := fs.Bool("strict", false, "also check that env files exist with safe permissions and that step tools are found on the PATH the step's process gets")
	var envFiles listFlag
	fs.Var(&envFiles, "env-file", "with --strict: env `file` to read instead of the plan's env_files, as apply --env-file (repeatable)")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return fs.usageError("want at least one plan file")
	}
	reg := steps.All()
	inv := engine.Invocation{Environ: os.Environ(), EnvFiles: envFiles}
	bad := 0
	for _, file := range pos {
		plan, err := engine.LoadFile(file, reg)
		if err == nil && *strict {
			err = engine.CheckStrict(plan, inv)
		}
		if err != nil {
			var probs engine.Problems
			if errors.As(err, &probs) {
				bad += len(probs)
			} else {
				bad++
			}
			fmt.Fprintln(stderr, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok (%s, %d steps)\n", file, plan.Name, len(plan.Steps))
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "%d problem(s)\n", bad)
		return engine.ExitInvalid
	}
	return engine.ExitOK
}
