package engine

import (
	"fmt"
	"io"
	"strings"
)

// WriteTypeList prints one line per step type: name and summary.
func WriteTypeList(w io.Writer, reg *Registry) {
	width := 0
	for _, n := range reg.Names() {
		width = max(width, len(n))
	}
	for _, n := range reg.Names() {
		t := reg.Lookup(n)
		fmt.Fprintf(w, "%-*s  %s\n", width, n, t.Summary)
	}
}

// WriteTypeDoc prints a step type's reference: summary, params (type,
// default, required, secret, doc), outputs and an example.
func WriteTypeDoc(w io.Writer, t *Type) {
	fmt.Fprintf(w, "%s — %s\n", t.Name, t.Summary)
	if t.Doc != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(t.Doc))
	}
	if t.Kind != KindOther {
		fmt.Fprintf(w, "\nkind: %s\n", t.Kind)
	}
	if len(t.Tools) > 0 {
		fmt.Fprintf(w, "runs: %s\n", strings.Join(t.Tools, ", "))
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

func writeParams(w io.Writer, s *Spec, indent string) {
	for _, p := range s.Params {
		var tags []string
		tags = append(tags, string(p.Kind))
		if p.Required {
			tags = append(tags, "required")
		}
		if p.Default != "" {
			tags = append(tags, "default "+p.Default)
		}
		if len(p.Enum) > 0 {
			tags = append(tags, "one of "+strings.Join(p.Enum, "|"))
		}
		if p.Secret {
			tags = append(tags, "secret")
		}
		fmt.Fprintf(w, "%s%s (%s)\n", indent, p.Name, strings.Join(tags, ", "))
		if p.Doc != "" {
			fmt.Fprintf(w, "%s    %s\n", indent, p.Doc)
		}
		if p.Kind == KindObject {
			writeParams(w, p.Fields, indent+"    ")
		}
	}
}

// WriteMarkdownTable prints the README's step table.
func WriteMarkdownTable(w io.Writer, reg *Registry) {
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
