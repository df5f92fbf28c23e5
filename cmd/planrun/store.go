package main

import (
	"context"
	"fmt"
	"io"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
)

// withStore opens the run store for the read-side verbs.
func withStore(verb string, args []string, stdout, stderr io.Writer) int {
	settings, err := engine.LoadSettings(context.Background(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: settings: %v\n", err)
		return 2
	}
	// --db may appear anywhere in args; strip it here.
	var rest []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--db" || a == "-db":
			if i+1 >= len(args) {
				fmt.Fprintln(stderr, "planrun: --db needs a path")
				return 2
			}
			settings.DB = args[i+1]
			i++
		case len(a) > 5 && (a[:5] == "--db="):
			settings.DB = a[5:]
		default:
			rest = append(rest, a)
		}
	}
	st, err := store.Open(settings.DB)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return 1
	}
	defer st.Close()
	switch verb {
	case "runs":
		return cmdRuns(st, rest, stdout, stderr)
	case "show":
		return cmdShow(st, rest, stdout, stderr)
	default:
		return cmdStatus(st, rest, stdout, stderr)
	}
}
