package main

import (
	"fmt"
	"io"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps"
)

func cmdSteps(args []string, stdout, stderr io.Writer) int {
	reg := steps.All()
	switch len(args) {
	case 0:
		engine.WriteTypeList(stdout, reg)
		return 0
	case 1:
		t := reg.Lookup(args[0])
		if t == nil {
			msg := fmt.Sprintf("planrun: unknown step type %q", args[0])
			if hint := engine.Suggest(args[0], reg.Names()); hint != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", hint)
			}
			fmt.Fprintln(stderr, msg)
			return 2
		}
		engine.WriteTypeDoc(stdout, t)
		return 0
	}
	fmt.Fprintln(stderr, "usage: planrun steps [TYPE]")
	return 2
}

func cmdSchema(args []string, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: planrun schema")
		return 2
	}
	b, err := engine.Schema(steps.All())
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return 1
	}
	_, _ = stdout.Write(b)
	return 0
}
