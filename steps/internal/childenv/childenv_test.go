package childenv

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSetAndUnset(t *testing.T) {
	in := []string{"A=1", "AWS_CA_BUNDLE=/x", "B=2", "A=3", "AB=4"}
	assert.Equal(t, []string{"AWS_CA_BUNDLE=/x", "B=2", "AB=4", "A=9"}, Set(in, "A", "9"))
	assert.Equal(t, []string{"A=1", "B=2", "A=3", "AB=4"}, Unset(in, "AWS_CA_BUNDLE"))
	assert.Equal(t, []string{"A=1", "AWS_CA_BUNDLE=/x", "B=2", "A=3", "AB=4"}, in, "input untouched")
}
