package engine

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	yaml4 "go.yaml.in/yaml/v4"
)

// syntaxProblem turns yaml.v3's syntax error into a problem at the real
// position. yaml.v3 does not expose positions: its message says
// "yaml: line N: ..." where N comes from the 0-based context mark (the
// start of the construct being read) or, when that is on the first line,
// the problem mark; it adds 1 only for scanner errors, so a parser error
// is one line early, and the column is lost (gopkg.in/yaml.v3 decode.go,
// parser.fail). go.yaml.in/yaml/v4, the same parser maintained on,
// reports both marks 1-based, so the text is parsed again with it.
//
// The problem is where the parser found what it did not expect, except
// for a quoted string or flow collection that is never closed: there the
// opening quote or bracket is the place to fix.
func syntaxProblem(data []byte, v3err error) Problem {
	var n yaml4.Node
	var le *yaml4.LoadError
	if err := yaml4.Unmarshal(data, &n); errors.As(err, &le) && le.Mark.Line > 0 {
		at, msg := le.Mark, le.Message
		if le.ContextMark.Line > 0 && le.ContextMsg != "" {
			if unclosed(le.ContextMsg) {
				at = le.ContextMark
				msg += fmt.Sprintf(" at %d:%d (%s that starts here)", le.Mark.Line, max(le.Mark.Column, 1), le.ContextMsg)
			} else {
				msg += fmt.Sprintf(" (%s at %d:%d)", le.ContextMsg, le.ContextMark.Line, max(le.ContextMark.Column, 1))
			}
		}
		return Problem{Line: at.Line, Col: max(at.Column, 1), Msg: "invalid YAML: " + msg}
	}
	return v3SyntaxProblem(v3err)
}

// unclosed tells the contexts whose problem is a missing closing quote or
// bracket.
func unclosed(context string) bool {
	for _, c := range []string{"quoted scalar", "flow sequence", "flow mapping"} {
		if strings.HasSuffix(context, c) {
			return true
		}
	}
	return false
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are yaml.v3's parser (not scanner) messages: their line
// is 0-based (gopkg.in/yaml.v3 parserc.go).
var parserProblems = []string{
	"did not find expected <stream-start>", "did not find expected <document start>",
	"did not find expected key", "did not find expected '-' indicator",
	"did not find expected node content", "did not find expected ',' or ']'",
	"did not find expected ',' or '}'", "found duplicate %YAML directive",
	"found incompatible YAML document", "found undefined tag handle",
	"found duplicate %TAG directive",
}

// v3SyntaxProblem maps yaml.v3's message by its numbering rule when v4
// does not fail on the same text (the line of the context; column 1).
func v3SyntaxProblem(err error) Problem {
	msg := err.Error()
	m := yamlLineRe.FindStringSubmatch(msg)
	if m == nil {
		return Problem{Line: 1, Col: 1, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	for _, p := range parserProblems {
		if strings.HasPrefix(m[2], p) {
			line++
			break
		}
	}
	return Problem{Line: line, Col: 1, Msg: "invalid YAML: " + m[2]}
}
