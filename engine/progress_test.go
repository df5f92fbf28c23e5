package engine_test

import (
	"testing"

	"github.com/planrun/planrun/engine"
)

// Add counts every byte and shows the total at each MiB it crosses; Set
// takes a tool's own total; a nil Progress counts nothing and never fails.
func TestProgressCountsOnce(t *testing.T) {
	var shown []int64
	p := engine.NewProgress(func(n int64) { shown = append(shown, n) }, nil)
	for i := 0; i < 5; i++ {
		p.Add(600 << 10)
	}
	if p.Done() != 5*600<<10 {
		t.Fatalf("Done() = %d, want %d", p.Done(), 5*600<<10)
	}
	want := []int64{2 * 600 << 10, 4 * 600 << 10} // the adds that cross 1 and 2 MiB
	if len(shown) != 2 || shown[0] != want[0] || shown[1] != want[1] {
		t.Fatalf("shown %v, want the totals at the MiB boundaries %v", shown, want)
	}
	p.Set(7 << 20)
	if p.Done() != 7<<20 || shown[len(shown)-1] != 7<<20 {
		t.Fatalf("after Set: Done() = %d, shown %v", p.Done(), shown)
	}
	var none *engine.Progress
	none.Add(1)
	none.Set(2)
	if none.Done() != 0 {
		t.Fatal("a nil Progress counted")
	}
}
