package main

import (
	"fmt"
	"io"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps"
)

func cmdSteps(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("steps", stdout, stderr)
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	reg := steps.All()
	switch len(pos) {
	case 0:
		writeTypeList(stdout, reg)
		return engine.ExitOK
	case 1:
		t := reg.Lookup(pos[0])
		if t == nil {
			msg := fmt.Sprintf("planrun: unknown step type %q", pos[0])
			if hint := engine.Suggest(pos[0], reg.Names()); hint != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", hint)
			}
			fmt.Fprintln(stderr, msg)
			return exitUsage
		}
		writeTypeDoc(stdout, t)
		return engine.ExitOK
	}
	return fs.usageError("want at most one step type, got %d arguments", len(pos))
}

func cmdSchema(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("schema", stdout, stderr)
	if code, ok := fs.parseNone(args); !ok {
		return code
	}
	b, err := engine.Schema(steps.All())
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return engine.ExitFailed
	}
	_, _ = stdout.Write(b)
	return engine.ExitOK
}
