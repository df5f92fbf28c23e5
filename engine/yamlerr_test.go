package engine

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"gopkg.in/yaml.v3"
)

// yaml.v3 numbers a parser error's line from the 0-based context mark and
// a scanner error's 1-based; the fallback maps both to the context line.
func TestV3SyntaxProblemNumbering(t *testing.T) {
	for _, tc := range []struct {
		src       string
		line      int
		msgPrefix string
	}{
		// parser error: block sequence on line 2, reported as "line 1"
		{"steps:\n  - a\n  b: c\n", 2, "invalid YAML: did not find expected '-' indicator"},
		// scanner error: the quoted scalar starts on line 2, reported as "line 2"
		{"a: 1\nb: \"x\n", 2, "invalid YAML: found unexpected end of stream"},
		// no line at all (both marks on the first line)
		{"a: b: c\n", 1, "invalid YAML: mapping values are not allowed in this context"},
	} {
		var n yaml.Node
		err := yaml.Unmarshal([]byte(tc.src), &n)
		if !assert.Error(t, err, tc.src) {
			continue
		}
		p := v3SyntaxProblem(err)
		assert.Equal(t, tc.line, p.Line, tc.src)
		assert.Equal(t, tc.msgPrefix, p.Msg, tc.src)
	}
	assert.Equal(t, Problem{Line: 1, Col: 1, Msg: "invalid YAML: odd"}, v3SyntaxProblem(errors.New("yaml: odd")))
}

// yaml.v3 and the v4 parser that locates the problem must agree that a
// text is malformed, or positions would come from the fallback.
func TestSyntaxProblemUsesExactMarks(t *testing.T) {
	src := "version: 1\nsteps: [\n  {id: a, type: exec\n  ]\n"
	var n yaml.Node
	err := yaml.Unmarshal([]byte(src), &n)
	assert.EqualError(t, err, "yaml: line 2: did not find expected ',' or '}'", "yaml.v3 reports the 0-based context line")
	p := syntaxProblem([]byte(src), err)
	assert.Equal(t, Problem{Line: 3, Col: 3, Msg: "invalid YAML: did not find expected ',' or '}' at 4:3 (while parsing a flow mapping that starts here)"}, p)
}
