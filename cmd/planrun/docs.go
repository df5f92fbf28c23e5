package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/planrun/planrun/engine"
)

// The docs `planrun steps` prints and the README tables `make docs`
// writes, rendered from the declarations in engine.

// writeTypeList prints one line per step type: name and summary.
func writeTypeList(w io.Writer, reg *engine.Registry) {
	width := 0
	for _, n := range reg.Names() {
		width = max(width, len(n))
	}
	for _, n := range reg.Names() {
		t := reg.Lookup(n)
		fmt.Fprintf(w, "%-*s  %s\n", width, n, t.Summary)
	}
}

// writeTypeDoc prints a step type's reference: summary, params (type,
// default, required, secret, doc), outputs and an example.
func writeTypeDoc(w io.Writer, t *engine.Type) {
	fmt.Fprintf(w, "%s — %s\n", t.Name, t.Summary)
	if t.Doc != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(t.Doc))
	}
	if t.Kind != engine.KindOther {
		fmt.Fprintf(w, "\nkind: %s\n", t.Kind)
	}
	if len(t.Tools) > 0 {
		fmt.Fprintf(w, "runs: %s\n", strings.Join(t.Tools, ", "))
	}
	if t.Monitor {
		fmt.Fprintf(w, "monitor: yes (a plan's monitor: may use it; the engine sets %s)\n", strings.Join(engine.MonitorParams, ", "))
	}
	fmt.Fprintf(w, "\nparams (with:):\n")
	writeParams(w, t.Params, "  ")
	if len(t.Outputs) > 0 {
		fmt.Fprintf(w, "\noutputs (steps.<id>.outputs.<name>):\n")
		for _, o := range t.Outputs {
			fmt.Fprintf(w, "  %-16s %s\n", o.Name, o.Doc)
		}
	}
	if t.Example != "" {
		fmt.Fprintf(w, "\nexample:\n  - id: %s\n    type: %s\n    with:\n", strings.ReplaceAll(t.Name, "_", "-"), t.Name)
		for _, line := range strings.Split(strings.TrimRight(t.Example, "\n"), "\n") {
			fmt.Fprintf(w, "      %s\n", line)
		}
	}
}

func writeParams(w io.Writer, s *engine.Spec, indent string) {
	for _, p := range s.Params {
		tags := []string{string(p.Kind)}
		if p.Required {
			tags = append(tags, "required")
		}
		if p.Default != "" {
			tags = append(tags, "default "+p.Default)
		}
		if len(p.Enum) > 0 {
			tags = append(tags, "one of "+strings.Join(p.Enum, "|"))
		}
		if r := paramRange(p); r != "" {
			tags = append(tags, r)
		}
		if p.Pattern != nil {
			tags = append(tags, "matching "+p.Pattern.String())
		}
		if p.Secret {
			tags = append(tags, "secret")
		}
		if p.SecretFile {
			tags = append(tags, "secret file: must be private (validate --online)")
		}
		fmt.Fprintf(w, "%s%s (%s)\n", indent, p.Name, strings.Join(tags, ", "))
		if p.Doc != "" {
			fmt.Fprintf(w, "%s    %s\n", indent, p.Doc)
		}
		if p.Kind == engine.KindObject {
			writeParams(w, p.Fields, indent+"    ")
		}
	}
}

// paramRange renders the min and max tags ("1..100", "at least 1").
func paramRange(p *engine.Param) string {
	switch {
	case p.Min != nil && p.Max != nil:
		return fmt.Sprintf("%v..%v", *p.Min, *p.Max)
	case p.Min != nil:
		return fmt.Sprintf("at least %v", *p.Min)
	case p.Max != nil:
		return fmt.Sprintf("at most %v", *p.Max)
	}
	return ""
}

// writeStepTable prints the README's step table.
func writeStepTable(w io.Writer, reg *engine.Registry) {
	fmt.Fprintln(w, "| step type | what it does | params |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, n := range reg.Names() {
		t := reg.Lookup(n)
		var ps []string
		for _, p := range t.Params.Params {
			name := "`" + p.Name + "`"
			if p.Required {
				name += "*"
			}
			ps = append(ps, name)
		}
		fmt.Fprintf(w, "| `%s` | %s | %s |\n", n, t.Summary, strings.Join(ps, ", "))
	}
}

// writeFormatTable prints the README's plan format table: one row per key,
// nested keys by path (defaults.retry.attempts, steps[].id); an object
// declared once but used twice is expanded at its first place only.
func writeFormatTable(w io.Writer, format *engine.Spec) {
	fmt.Fprintln(w, "| key | type | default | meaning |")
	fmt.Fprintln(w, "|---|---|---|---|")
	var seen []struct {
		spec *engine.Spec
		path string
	}
	var rows func(s *engine.Spec, prefix string)
	rows = func(s *engine.Spec, prefix string) {
		for _, p := range s.Params {
			path := prefix + p.Name
			key := "`" + path + "`"
			if p.Required {
				key += "*"
			}
			typ := formatType(p)
			var expand *engine.Spec
			if p.Fields != nil {
				expand = p.Fields
				for _, x := range seen {
					if x.spec.Same(p.Fields) {
						typ += " (keys as `" + x.path + "`)"
						expand = nil
					}
				}
			}
			def := ""
			if p.Default != "" {
				def = "`" + p.Default + "`"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", key, typ, def, mdEscape(p.Doc))
			if expand != nil {
				seen = append(seen, struct {
					spec *engine.Spec
					path string
				}{expand, path})
				sub := path + "."
				if p.Kind == engine.KindObjectList {
					sub = path + "[]."
				}
				rows(expand, sub)
			}
		}
	}
	rows(format, "")
}

// formatType is the type column of a format key.
func formatType(p *engine.Param) string {
	typ := string(p.Kind)
	switch p.Kind {
	case engine.KindObject:
		typ = "mapping"
	case engine.KindObjectList:
		typ = "list of mappings"
	}
	if len(p.Enum) == 1 {
		return "`" + p.Enum[0] + "`"
	}
	if len(p.Enum) > 1 {
		quoted := make([]string, len(p.Enum))
		for i, e := range p.Enum {
			quoted[i] = "`" + e + "`"
		}
		return strings.Join(quoted, " or ")
	}
	if r := paramRange(p); r != "" {
		if p.Kind == engine.KindObjectList || p.Kind == engine.KindStringList {
			r += " entries"
			if p.Max == nil && *p.Min == 1 {
				r = "at least 1 entry"
			}
		}
		typ += ", " + r
	}
	if p.Pattern != nil {
		what := "matching"
		if p.Kind == engine.KindMapping {
			what = "keys matching"
		}
		typ += ", " + what + " `" + p.Pattern.String() + "`"
	}
	return strings.ReplaceAll(typ, "|", `\|`)
}

// mdEscape keeps text inside a table cell and out of markdown syntax.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;", "*", `\*`).Replace(s)
}
