package lines

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestWriterSplitsAcrossWrites(t *testing.T) {
	var got []string
	w := New(func(l []byte) { got = append(got, string(l)) })
	for _, chunk := range []string{"{\"a\":", "1}\r\n{\"b\"", ":2}\n\npartial"} {
		n, err := w.Write([]byte(chunk))
		assert.NoError(t, err)
		assert.Equal(t, len(chunk), n)
	}
	assert.Equal(t, []string{`{"a":1}`, `{"b":2}`, ""}, got)
	w.Flush()
	assert.Equal(t, "partial", got[len(got)-1])
}

func TestWriterBoundsAHugeLine(t *testing.T) {
	var sizes []int
	w := New(func(l []byte) { sizes = append(sizes, len(l)) })
	_, _ = w.Write([]byte(strings.Repeat("x", MaxLine+10)))
	assert.Equal(t, []int{MaxLine + 10}, sizes, "a line over the bound is passed on instead of growing forever")
}
