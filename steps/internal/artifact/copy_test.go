package artifact

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func writeRandom(t *testing.T, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), "input")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// WriteTo yields the file's bytes and counts them, mapped (Raw) or read
// ahead (hashed), for sizes around the chunk and window boundaries.
func TestWriteToCopiesAndCounts(t *testing.T) {
	for _, n := range []int{0, 1, mapChunk - 1, mapChunk, 3*mapWindow + 12345} {
		path, data := writeRandom(t, n)
		for _, mode := range []OpenMode{Raw, Raw | HashRaw} {
			env, _ := testEnv(t)
			r, err := OpenWith(context.Background(), env, path, ReadOptions{}, mode)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if n, err := r.WriteTo(&got); err != nil || n != int64(len(data)) {
				t.Fatalf("size %d mode %d: wrote %d, %v", n, mode, got.Len(), err)
			}
			r.Close()
			if !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("size %d mode %d: copied %d bytes that differ from the file's %d", n, mode, got.Len(), n)
			}
			if in := env.Stats.BytesIn.Load(); in != int64(n) || r.RawBytes() != int64(n) {
				t.Errorf("size %d mode %d: BytesIn %d, RawBytes %d", n, mode, in, r.RawBytes())
			}
		}
	}
}

// toucher reads every byte it is given (as age and zstd do) and runs
// hook after its first write.
type toucher struct {
	n    int
	sum  byte
	hook func()
}

func (w *toucher) Write(p []byte) (int, error) {
	for _, b := range p {
		w.sum ^= b
	}
	w.n += len(p)
	if w.hook != nil {
		w.hook()
		w.hook = nil
	}
	return len(p), nil
}

// A file cut short while it is mapped raises SIGBUS on the next page:
// that must be an error of the step, not a crash of planrun, and not a
// silently short copy.
func TestWriteToFileShrinksWhileMapped(t *testing.T) {
	path, _ := writeRandom(t, 2*mapWindow)
	r, err := OpenWith(context.Background(), nil, path, ReadOptions{}, Raw)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w := &toucher{hook: func() {
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
	}}
	_, err = r.WriteTo(w)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("changed size or could not be read")) {
		t.Fatalf("WriteTo of a file truncated midway: err %v after %d bytes", err, w.n)
	}
	if w.n != mapChunk {
		t.Errorf("wrote %d bytes before the error, want the first chunk (%d)", w.n, mapChunk)
	}
}

// A panic that is not a fault in the map is not swallowed.
func TestWriteToRepanicsOtherPanics(t *testing.T) {
	path, _ := writeRandom(t, mapChunk*2)
	r, err := OpenWith(context.Background(), nil, path, ReadOptions{}, Raw)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer func() {
		if p := recover(); p != "boom" {
			t.Fatalf("recovered %v, want the writer's own panic", p)
		}
	}()
	_, _ = r.WriteTo(&toucher{hook: func() { panic("boom") }})
	t.Fatal("WriteTo returned after the writer panicked")
}

func TestWriteToStopsWhenCancelled(t *testing.T) {
	// Larger than the read-ahead, which may have read its buffers already.
	size := 4 * aheadBufs * aheadBuf
	path, _ := writeRandom(t, size)
	for _, mode := range []OpenMode{Raw, Raw | HashRaw} {
		ctx, cancel := context.WithCancel(context.Background())
		r, err := OpenWith(ctx, nil, path, ReadOptions{}, mode)
		if err != nil {
			t.Fatal(err)
		}
		w := &toucher{hook: cancel}
		if _, err := r.WriteTo(w); !errors.Is(err, context.Canceled) {
			t.Errorf("mode %d: WriteTo after cancel: %v", mode, err)
		}
		if w.n >= size {
			t.Errorf("mode %d: copied all %d bytes despite the cancel", mode, w.n)
		}
		r.Close()
	}
}

// Once something was read through Read, WriteTo must continue from there,
// not map the file again from its start.
func TestWriteToAfterReadContinues(t *testing.T) {
	path, data := writeRandom(t, 3*mapChunk)
	r, err := OpenWith(context.Background(), nil, path, ReadOptions{}, Raw)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	var rest bytes.Buffer
	if _, err := r.WriteTo(&rest); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(head, rest.Bytes()...), data) {
		t.Fatalf("Read + WriteTo gave %d bytes that differ from the file", len(head)+rest.Len())
	}
}

// A truncated compressed or encrypted stream ends in io.ErrUnexpectedEOF
// from the decoder: that is an error of the copy, never a clean end.
func TestWriteToTruncatedStreamFails(t *testing.T) {
	for _, opts := range []WriteOptions{
		{Compress: "zstd"},
		{Compress: "gzip"},
		{Compress: "none", Encrypt: &EncryptSpec{RecipientsFile: filepath.Join(keyDir, "demo.agepub")}},
	} {
		env, _ := testEnv(t)
		opts.Output = filepath.Join(t.TempDir(), "a")
		res := write(t, env, opts, sample(t, 3*aheadBuf*aheadBufs))
		b, err := os.ReadFile(res.Path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(res.Path, b[:len(b)*3/4], 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := OpenWith(context.Background(), env, res.Path, ReadOptions{IdentityFile: filepath.Join(keyDir, "demo.agekey")}, Plain)
		if err != nil {
			t.Fatal(err)
		}
		n, err := r.WriteTo(io.Discard)
		r.Close()
		if err == nil {
			t.Errorf("%s, cut to 3/4: copied %d bytes and no error", opts.Describe(), n)
		}
	}
}
