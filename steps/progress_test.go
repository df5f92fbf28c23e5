package steps

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/planrun/planrun/engine"
)

// assertCountedOnce checks that a step that wrote one artifact reported
// each byte once: its progress and its stats' bytes in both equal the
// artifact's bytes_in (a second wrapper around the stream doubles them).
func assertCountedOnce(t *testing.T, env *engine.Env, out engine.Outputs) {
	t.Helper()
	in, ok := out["bytes_in"].(int64)
	if !ok || in <= 0 {
		t.Fatalf("no bytes_in output: %v", out)
	}
	if done := env.Progress.Done(); done != in {
		t.Errorf("progress counted %d bytes, the artifact holds %d: counted more than once", done, in)
	}
	if got := env.Stats.BytesIn.Load(); got != in {
		t.Errorf("stats counted %d bytes in, the artifact holds %d: counted more than once", got, in)
	}
}

// The whole-file steps read one artifact and write another: the stream is
// counted once, by the writer, not once more by the reader.
func TestTransformStepsCountEachByteOnce(t *testing.T) {
	data := bytes.Repeat([]byte("count me once\n"), 300000) // 4 MiB
	in := writeFile(t, data)
	dir := t.TempDir()
	for _, c := range []struct{ typ, with string }{
		{"compress", fmt.Sprintf("{input: %s, output: %s/a.zst}", in, dir)},
		{"encrypt", fmt.Sprintf("{input: %s/a.zst, output: %s/a.zst.age, compress: none, encrypt: {recipients: [%s]}}", dir, dir, pubKey(t))},
		{"decrypt", fmt.Sprintf("{input: %s/a.zst.age, output: %s/b.zst, identity_file: %s}", dir, dir, filepath.Join(keys, "demo.agekey"))},
		{"decompress", fmt.Sprintf("{input: %s/b.zst, output: %s/b}", dir, dir)},
	} {
		t.Run(c.typ, func(t *testing.T) {
			env, log := stepEnv(t)
			out, err := runStep(t, context.Background(), env, c.typ, c.with)
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			assertCountedOnce(t, env, out)
		})
	}
}
