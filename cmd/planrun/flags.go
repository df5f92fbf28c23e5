package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/planrun/planrun/engine"
)

// exitUsage is the exit code of a command used wrongly (unknown verb or
// flag, missing or extra argument): the same as an invalid plan, as both
// mean "fix what you wrote". The other codes are engine.Exit*.
const exitUsage = engine.ExitInvalid

// verbFlags is a verb's flag set with its usage: -h prints the usage to
// stdout and exits 0; a usage error prints it to stderr and exits 2.
type verbFlags struct {
	*flag.FlagSet
	verb           string
	stdout, stderr io.Writer
}

func newFlags(verb string, stdout, stderr io.Writer) *verbFlags {
	fs := flag.NewFlagSet("planrun "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr) // where the flag package reports a bad flag
	fs.Usage = func() {} // parse prints the usage, on the right stream
	return &verbFlags{FlagSet: fs, verb: verb, stdout: stdout, stderr: stderr}
}

// parse parses flags that may come before or after positional arguments
// (planrun apply PLAN --dry-run) and returns the positionals. ok is false
// when the verb must return code at once: after -h (0) or a bad flag.
func (v *verbFlags) parse(args []string) (pos []string, code int, ok bool) {
	pos, err := parseInterleaved(v.FlagSet, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		v.printUsage(v.stdout)
		return nil, engine.ExitOK, false
	case err != nil: // the flag package has printed the error
		v.printUsage(v.stderr)
		return nil, exitUsage, false
	}
	return pos, engine.ExitOK, true
}

// parseNone is parse for a verb that takes no arguments.
func (v *verbFlags) parseNone(args []string) (code int, ok bool) {
	pos, code, ok := v.parse(args)
	if ok && len(pos) != 0 {
		return v.usageError("unexpected argument %q", pos[0]), false
	}
	return code, ok
}

// usageError reports a wrong use of the verb, with its usage.
func (v *verbFlags) usageError(format string, args ...any) int {
	fmt.Fprintf(v.stderr, "planrun %s: %s\n", v.verb, fmt.Sprintf(format, args...))
	v.printUsage(v.stderr)
	return exitUsage
}

// printUsage prints the verb's synopsis, summary and flags.
func (v *verbFlags) printUsage(w io.Writer) {
	vb := lookupVerb(v.verb)
	for i, form := range vb.forms {
		prefix := "usage: "
		if i > 0 {
			prefix = "       "
		}
		fmt.Fprintf(w, "%splanrun %s\n", prefix, strings.TrimSpace(vb.name+" "+form))
	}
	fmt.Fprintf(w, "\n%s\n", vb.summary)
	first := true
	v.VisitAll(func(f *flag.Flag) {
		if first {
			fmt.Fprintln(w, "\nFlags:")
			first = false
		}
		name, help := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  %s\n", strings.TrimSpace("--"+f.Name+" "+name))
		if d := f.DefValue; d != "" && d != "false" && d != "[]" {
			help += " (default " + d + ")"
		}
		fmt.Fprintf(w, "      %s\n", help)
	})
}

// parseInterleaved parses flags that may come before or after positional
// arguments and returns the positionals.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string // everything after a literal "--" is positional
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, tail...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// varsFlag collects repeatable name=value flags.
type varsFlag map[string]string

func (v varsFlag) String() string { return "" }
func (v varsFlag) Set(s string) error {
	k, val, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want name=value, got %q", s)
	}
	v[k] = val
	return nil
}
