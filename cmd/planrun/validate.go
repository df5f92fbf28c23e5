package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps"
)

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stderr)
	strict := fs.Bool("strict", false, "also check that env files exist with safe permissions and that step tools are on PATH")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return engine.ExitInvalid
	}
	if len(pos) == 0 {
		fmt.Fprintln(stderr, "usage: planrun validate [--strict] PLAN...")
		return engine.ExitInvalid
	}
	reg := steps.All()
	bad := 0
	for _, file := range pos {
		plan, err := engine.LoadFile(file, reg)
		if err == nil && *strict {
			err = engine.CheckStrict(plan)
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
