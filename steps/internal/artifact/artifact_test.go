package artifact

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

const keyDir = "../../../testdata/keys"

func testEnv(t *testing.T) (*engine.Env, *bytes.Buffer) {
	var log bytes.Buffer
	return &engine.Env{
		Log:   slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Stats: &engine.Stats{}, Secrets: engine.NewRedactor(),
	}, &log
}

// sample is compressible text with some random bytes, several zstd chunks long.
func sample(t *testing.T, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		if i%50 == 0 {
			r := make([]byte, 4096)
			rand.Read(r)
			b.Write(r)
		}
		b.WriteString("line ")
		b.WriteString(strings.Repeat("x", i%97))
		b.WriteString(" the quick brown fox\n")
	}
	return b.Bytes()[:n]
}

func write(t *testing.T, env *engine.Env, opts WriteOptions, data []byte) Result {
	t.Helper()
	w, err := Create(context.Background(), env, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	// Odd-sized writes cross chunk and block boundaries.
	for rest := data; len(rest) > 0; {
		k := min(len(rest), 100_003)
		if _, err := w.Write(rest[:k]); err != nil {
			t.Fatal(err)
		}
		rest = rest[k:]
	}
	res, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func run(t *testing.T, stdin io.Reader, name string, args ...string) []byte {
	t.Helper()
	testenv.RequireTool(t, name)
	cmd := exec.Command(name, args...)
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func TestRoundTripWithStandardTools(t *testing.T) {
	data := sample(t, 9<<20+12345)
	pub, _ := os.ReadFile(filepath.Join(keyDir, "demo.agepub"))
	key := filepath.Join(keyDir, "demo.agekey")
	cases := []struct {
		name     string
		opts     WriteOptions
		decoders [][]string // piped in order
	}{
		{"zstd", WriteOptions{Compress: "zstd"}, [][]string{{"zstd", "-d", "-c"}}},
		{"zstd-level-19", WriteOptions{Compress: "zstd", Level: 19}, [][]string{{"zstd", "-d", "-c"}}},
		{"gzip", WriteOptions{Compress: "gzip"}, [][]string{{"gzip", "-d", "-c"}}},
		{"none", WriteOptions{Compress: "none"}, nil},
		{"age-zstd", WriteOptions{Compress: "zstd", Encrypt: &EncryptSpec{Recipients: []string{strings.TrimSpace(string(pub))}}},
			[][]string{{"age", "-d", "-i", key}, {"zstd", "-d", "-c"}}},
		{"age-recipients-file-gzip", WriteOptions{Compress: "gzip", Encrypt: &EncryptSpec{RecipientsFile: filepath.Join(keyDir, "demo.agepub")}},
			[][]string{{"age", "-d", "-i", key}, {"gzip", "-d", "-c"}}},
		{"age-none", WriteOptions{Compress: "none", Encrypt: &EncryptSpec{Recipients: []string{strings.TrimSpace(string(pub))}}},
			[][]string{{"age", "-d", "-i", key}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, _ := testEnv(t)
			c.opts.Output = filepath.Join(t.TempDir(), "sub", "dir", "out.bin")
			res := write(t, env, c.opts, data)
			raw, err := os.ReadFile(res.Path)
			if err != nil {
				t.Fatal(err)
			}
			// The sidecar checks with sha256sum -c, and matches the output.
			sum := sha256.Sum256(raw)
			if res.SHA256 != hex.EncodeToString(sum[:]) || res.Size != int64(len(raw)) || res.BytesIn != int64(len(data)) {
				t.Fatalf("result %+v does not describe the file (%d bytes)", res, len(raw))
			}
			cmd := exec.Command("sha256sum", "-c", filepath.Base(res.Path)+".sha256")
			cmd.Dir = filepath.Dir(res.Path)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sha256sum -c: %v: %s", err, out)
			}
			for _, p := range []string{res.Path, res.Path + ".sha256"} {
				if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
					t.Errorf("%s mode %v, want 0600", p, fi.Mode().Perm())
				}
			}
			if fi, _ := os.Stat(filepath.Dir(res.Path)); fi.Mode().Perm() != 0o700 {
				t.Errorf("created dir mode %v, want 0700", fi.Mode().Perm())
			}
			out := raw
			for _, d := range c.decoders {
				out = run(t, bytes.NewReader(out), d[0], d[1:]...)
			}
			if !bytes.Equal(out, data) {
				t.Fatalf("standard tools decoded %d bytes, want the %d written", len(out), len(data))
			}
			// And planrun's own reader.
			r, err := Open(res.Path, ReadOptions{IdentityFile: key})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			back, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(back, data) {
				t.Fatalf("Open read %d bytes, err %v", len(back), err)
			}
			if env.Stats.BytesIn.Load() != int64(len(data)) || env.Stats.BytesOut.Load() != res.Size {
				t.Errorf("stats in %d out %d", env.Stats.BytesIn.Load(), env.Stats.BytesOut.Load())
			}
		})
	}
}

func TestZstdIsMultiFrameAndEmptyIsValid(t *testing.T) {
	env, _ := testEnv(t)
	data := sample(t, 3*zstdChunk+7)
	res := write(t, env, WriteOptions{Output: filepath.Join(t.TempDir(), "a.zst"), Compress: "zstd"}, data)
	// zstd -l counts frames: one per chunk.
	out := string(run(t, nil, "zstd", "-l", "-v", res.Path))
	if !strings.Contains(out, "# Zstandard Frames: 4") {
		t.Errorf("want 4 frames:\n%s", out)
	}
	empty := write(t, env, WriteOptions{Output: filepath.Join(t.TempDir(), "e.zst"), Compress: "zstd"}, nil)
	if got := run(t, nil, "zstd", "-d", "-c", empty.Path); len(got) != 0 {
		t.Errorf("empty stream decoded to %d bytes", len(got))
	}
}

func TestFilesMadeByCLIsAreRead(t *testing.T) {
	data := sample(t, 2<<20)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(keyDir, "demo.agepub")
	key := filepath.Join(keyDir, "demo.agekey")
	mk := func(name string, cmds ...[]string) string {
		out := data
		for _, c := range cmds {
			out = run(t, bytes.NewReader(out), c[0], c[1:]...)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, out, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := map[string]string{
		"age":               mk("a.age", []string{"age", "-e", "-R", pub}),
		"age-armor":         mk("a.age.asc", []string{"age", "-e", "-a", "-R", pub}),
		"zstd|age":          mk("a.zst.age", []string{"zstd", "-c", "-T2"}, []string{"age", "-e", "-R", pub}),
		"gzip":              mk("a.gz", []string{"gzip", "-c"}),
		"pigz multi-member": mk("a.pigz", []string{"pigz", "-c", "-i"}),
		"zstd":              mk("a.zst", []string{"zstd", "-c", "--long"}),
	}
	for name, path := range files {
		t.Run(name, func(t *testing.T) {
			r, err := Open(path, ReadOptions{IdentityFile: key})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, err %v", len(got), err)
			}
		})
	}
	if _, err := Open(files["age"], ReadOptions{}); err == nil || !strings.Contains(err.Error(), "identity_file") {
		t.Errorf("no identity: %v", err)
	}
}

func TestPassphraseRoundTrip(t *testing.T) {
	env, _ := testEnv(t)
	data := sample(t, 1<<20)
	pass := filepath.Join(keyDir, "demo.passphrase")
	res := write(t, env, WriteOptions{Output: filepath.Join(t.TempDir(), "p.age"), Compress: "zstd", Encrypt: &EncryptSpec{PassphraseFile: pass}}, data)
	raw, _ := os.ReadFile(res.Path)
	if !bytes.HasPrefix(raw, ageMagic) || !bytes.Contains(raw[:200], []byte("scrypt")) {
		t.Fatalf("not an age scrypt file: %q", raw[:60])
	}
	r, err := Open(res.Path, ReadOptions{PassphraseFile: pass})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, err %v", len(got), err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrong, []byte("nope\n"), 0o600)
	if _, err := Open(res.Path, ReadOptions{PassphraseFile: wrong}); err == nil {
		t.Fatal("wrong passphrase accepted")
	}
}

func TestRefusesToOverwrite(t *testing.T) {
	env, _ := testEnv(t)
	out := filepath.Join(t.TempDir(), "x.zst")
	write(t, env, WriteOptions{Output: out, Compress: "zstd"}, []byte("one"))
	if _, err := Create(context.Background(), env, WriteOptions{Output: out, Compress: "zstd"}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second create: %v", err)
	}
	write(t, env, WriteOptions{Output: out, Compress: "none", Overwrite: true}, []byte("two"))
	if b, _ := os.ReadFile(out); string(b) != "two" {
		t.Fatalf("overwrite: %q", b)
	}
	assertOnly(t, filepath.Dir(out), "x.zst", "x.zst.sha256")
}

// A file that appears under the final name while we write is neither
// replaced nor given our checksum: its sidecar stays its own.
func TestNameAppearingDuringWriteKeepsItsSidecar(t *testing.T) {
	env, _ := testEnv(t)
	out := filepath.Join(t.TempDir(), "x.zst")
	w, err := Create(context.Background(), env, WriteOptions{Output: out, Compress: "zstd"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("ours")); err != nil {
		t.Fatal(err)
	}
	write(t, env, WriteOptions{Output: out, Compress: "none"}, []byte("theirs"))
	side, _ := os.ReadFile(out + ".sha256")
	if _, err := w.Commit(); err == nil {
		t.Fatal("commit replaced a file that appeared meanwhile")
	}
	if b, _ := os.ReadFile(out); string(b) != "theirs" {
		t.Fatalf("artifact changed: %q", b)
	}
	if b, _ := os.ReadFile(out + ".sha256"); string(b) != string(side) {
		t.Fatalf("sidecar changed: %q, was %q", b, side)
	}
	assertOnly(t, filepath.Dir(out), "x.zst", "x.zst.sha256")
}

// assertOnly fails unless dir holds exactly names (no temp files).
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}

func TestCancelMidStreamLeavesNothing(t *testing.T) {
	for _, comp := range []string{"zstd", "gzip", "none"} {
		t.Run(comp, func(t *testing.T) {
			env, _ := testEnv(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// Cancel from inside the stream, after the first MiB.
			env.Progress = engine.NewProgress(func(int64) { cancel() }, nil)
			dir := t.TempDir()
			w, err := Create(ctx, env, WriteOptions{Output: filepath.Join(dir, "big"), Compress: comp})
			if err != nil {
				t.Fatal(err)
			}
			chunk := sample(t, 1<<20)
			var werr error
			for i := 0; i < 64 && werr == nil; i++ {
				_, werr = w.Write(chunk)
			}
			if !errors.Is(werr, context.Canceled) {
				t.Fatalf("write after cancel: %v", werr)
			}
			if _, err := w.Commit(); !errors.Is(err, context.Canceled) {
				t.Fatalf("commit after cancel: %v", err)
			}
			w.Abort()
			assertOnly(t, dir)
		})
	}
}

func TestFullFilesystem(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		if testenv.InCI() {
			t.Fatalf("mount tmpfs: %v (CI must allow it)", err)
		}
		t.Skipf("cannot mount a small tmpfs here: %v", err)
	}
	defer syscall.Unmount(dir, 0)
	env, _ := testEnv(t)
	w, err := Create(context.Background(), env, WriteOptions{Output: filepath.Join(dir, "backups", "big.zst"), Compress: "zstd"})
	if err != nil {
		t.Fatal(err)
	}
	rnd := make([]byte, 1<<20)
	var werr error
	for i := 0; i < 16 && werr == nil; i++ {
		rand.Read(rnd)
		_, werr = w.Write(rnd)
	}
	_, err = w.Commit()
	if werr != nil {
		err = werr
	}
	w.Abort()
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), "big.zst") {
		t.Fatalf("want a clear ENOSPC error naming the artifact, got %v", err)
	}
	assertOnly(t, filepath.Join(dir, "backups"))
}

func TestProgressAndLoosePermissionWarning(t *testing.T) {
	env, log := testEnv(t)
	old := engine.ProgressLogEvery
	engine.ProgressLogEvery = 0 // every check logs
	defer func() { engine.ProgressLogEvery = old }()
	var calls []int64
	env.Progress = engine.NewProgress(func(n int64) { calls = append(calls, n) }, env.Log)
	data := sample(t, 5<<20)
	write(t, env, WriteOptions{Output: filepath.Join(t.TempDir(), "p"), Compress: "none"}, data)
	if len(calls) < 4 || env.Progress.Done() != int64(len(data)) {
		t.Fatalf("progress calls %v, done %d, want %d", calls, env.Progress.Done(), len(data))
	}
	for i := 1; i < len(calls); i++ {
		if calls[i] <= calls[i-1] {
			t.Fatalf("progress not increasing: %v", calls)
		}
	}
	if !strings.Contains(log.String(), "msg=progress") || !strings.Contains(log.String(), "rate=") {
		t.Errorf("no progress log line:\n%s", log.String())
	}
	key := filepath.Join(t.TempDir(), "k")
	b, _ := os.ReadFile(filepath.Join(keyDir, "demo.agekey"))
	os.WriteFile(key, b, 0o644)
	log.Reset()
	WarnLoosePermissions(env.Log, key)
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), key) {
		t.Errorf("no warning for a 0644 key: %q", log.String())
	}
	os.Chmod(key, 0o600)
	log.Reset()
	WarnLoosePermissions(env.Log, key)
	if log.Len() != 0 {
		t.Errorf("warning for a 0600 key: %q", log.String())
	}
}

func TestOpenWithHashesAndDetectsLayers(t *testing.T) {
	env, _ := testEnv(t)
	data := sample(t, 3<<20)
	res := write(t, env, WriteOptions{Output: filepath.Join(t.TempDir(), "v.zst.age"), Compress: "zstd",
		Encrypt: &EncryptSpec{RecipientsFile: filepath.Join(keyDir, "demo.agepub")}}, data)
	r, err := OpenWith(context.Background(), env, res.Path, ReadOptions{IdentityFile: filepath.Join(keyDir, "demo.agekey")}, Plain|HashRaw)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d, %v", len(got), err)
	}
	r.Drain()
	if r.SHA256() != res.SHA256 || r.Layers.String() != "age+zstd" {
		t.Errorf("sha %s (want %s), layers %s", r.SHA256(), res.SHA256, r.Layers)
	}
}

func TestDescribe(t *testing.T) {
	o := WriteOptions{Output: "/b/x.tar.zst", Compress: "zstd", Encrypt: &EncryptSpec{Recipients: []string{"age1a", "age1b"}}}
	if got := o.Describe(); got != "/b/x.tar.zst (zstd, age to 2 recipient(s); + x.tar.zst.sha256)" {
		t.Errorf("Describe() = %q", got)
	}
	o = WriteOptions{Output: "/b/x.gz", Compress: "gzip", Level: 9, Encrypt: &EncryptSpec{PassphraseFile: "/etc/p"}}
	if got := o.Describe(); got != "/b/x.gz (gzip level 9, age passphrase from /etc/p; + x.gz.sha256)" {
		t.Errorf("Describe() = %q", got)
	}
}

// A zstd artifact cut exactly at a frame boundary decodes cleanly; a
// restore that opens with VerifySidecar still refuses it at the end.
func TestVerifySidecarCatchesCutAtFrameBoundary(t *testing.T) {
	env, _ := testEnv(t)
	out := filepath.Join(t.TempDir(), "dump.sql.zst")
	write(t, env, WriteOptions{Output: out, Compress: "zstd"}, sample(t, 6<<20))
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	cut := bytes.Index(b[4:], zstdMagic) + 4 // start of the second frame
	if cut < 4 {
		t.Fatal("expected several zstd frames")
	}
	if err := os.WriteFile(out, b[:cut], 0o600); err != nil {
		t.Fatal(err)
	}
	read := func(mode OpenMode) error {
		r, err := OpenWith(context.Background(), env, out, ReadOptions{}, mode)
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(io.Discard, r)
		return err
	}
	if err := read(Plain); err != nil {
		t.Fatalf("the cut stream is expected to decode cleanly without the check: %v", err)
	}
	err = read(Plain | VerifySidecar)
	if err == nil || !strings.Contains(err.Error(), "does not match its .sha256 sidecar") {
		t.Fatalf("VerifySidecar: %v", err)
	}
}

// Each byte is counted once: a Reader counts the raw bytes it reads, and
// opened Uncounted it leaves the count to the Writer its plaintext is
// copied into (what the encrypt/compress steps do), on both copy paths.
func TestCopyIsCountedOnce(t *testing.T) {
	env, _ := testEnv(t)
	dir := t.TempDir()
	data := sample(t, 3<<20)
	src := write(t, env, WriteOptions{Output: filepath.Join(dir, "src.zst"), Compress: "zstd"}, data)
	for _, mode := range []OpenMode{Plain, Raw} {
		env.Progress, env.Stats = engine.NewProgress(nil, nil), &engine.Stats{}
		r, err := OpenWith(context.Background(), env, src.Path, ReadOptions{}, mode|Uncounted)
		if err != nil {
			t.Fatal(err)
		}
		w, err := Create(context.Background(), env, WriteOptions{Output: filepath.Join(dir, fmt.Sprintf("dst-%d", mode)), Compress: "gzip"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.WriteTo(w); err != nil {
			t.Fatal(err)
		}
		r.Close()
		res, err := w.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if done, in := env.Progress.Done(), env.Stats.BytesIn.Load(); done != res.BytesIn || in != res.BytesIn {
			t.Errorf("mode %d: progress %d, stats in %d; want each %d (the bytes written, once)", mode, done, in, res.BytesIn)
		}
	}
	env.Progress, env.Stats = engine.NewProgress(nil, nil), &engine.Stats{}
	r, err := OpenWith(context.Background(), env, src.Path, ReadOptions{}, Plain)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	if done, in := env.Progress.Done(), env.Stats.BytesIn.Load(); done != src.Size || in != src.Size {
		t.Errorf("reading alone: progress %d, stats in %d; want each %d (the raw bytes)", done, in, src.Size)
	}
}
