package artifact

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	"github.com/planrun/planrun/engine"
)

// Layers says what an artifact was wrapped in, as detected by magic bytes.
type Layers struct {
	Encrypted   bool
	Compression string // zstd, gzip or none
}

func (l Layers) String() string {
	s := l.Compression
	if l.Encrypted {
		s = "age+" + s
	}
	return s
}

// Reader is an opened artifact: Read yields the plaintext; the raw bytes
// are hashed as they are read, so a full read also checks the sha256
// without reading the file twice.
type Reader struct {
	Path    string
	Layers  Layers
	plain   io.Reader
	close   func() error
	raw     *hashingReader
	file    *os.File // the raw file; mapped by WriteTo while mapOK
	mapOK   bool     // the plaintext is the file itself and nothing was read yet
	counted int64    // raw bytes reported to progress and stats
	want    string   // sidecar sum to check at EOF (VerifySidecar)
	ctx     context.Context
	prog    *engine.Progress
	stats   *engine.Stats
}

// Options for OpenWith beyond ReadOptions.
type OpenMode int

const (
	// Plain decrypts and decompresses (what restore steps want).
	Plain OpenMode = iota
	// DecryptOnly removes the age layer but keeps the compression.
	DecryptOnly
	// Raw returns the bytes on disk.
	Raw
	// HashRaw (or-ed into a mode) computes the sha256 of the raw file
	// while reading, for SHA256.
	HashRaw OpenMode = 1 << 4
	// VerifySidecar (or-ed into a mode) makes the end of the stream an
	// error unless the raw file matches its <path>.sha256, when it has one:
	// restores must not accept a file cut at a compression frame boundary,
	// which decodes cleanly.
	VerifySidecar OpenMode = 1 << 5
	// Uncounted (or-ed into a mode) leaves progress and stats to whoever
	// counts the same stream, e.g. the Writer the plaintext is copied into
	// or a first pass over the same file: each byte is counted once.
	Uncounted OpenMode = 1 << 6
)

// OpenWith opens an artifact for streaming with cancellation, progress and
// stats (bytes read from disk count as BytesIn; not with Uncounted) and a
// running sha256 of the raw file. It warns (never fails) when an identity or passphrase file
// is readable by group or others.
func OpenWith(ctx context.Context, env *engine.Env, path string, opts ReadOptions, mode OpenMode) (*Reader, error) {
	var log *slog.Logger
	if env != nil {
		log = env.Log
	}
	WarnLoosePermissions(log, opts.IdentityFile, opts.PassphraseFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r := &Reader{Path: path, ctx: ctx, close: f.Close, file: f}
	if env != nil && mode&Uncounted == 0 {
		r.stats, r.prog = env.Stats, env.Progress
	}
	mode &^= Uncounted
	r.raw = &hashingReader{r: f}
	if mode&VerifySidecar != 0 {
		if sum, err := ReadSidecar(path); err == nil {
			r.want = sum
			mode |= HashRaw
		} else if !os.IsNotExist(err) {
			f.Close()
			return nil, err
		}
		mode &^= VerifySidecar
	}
	if mode&HashRaw != 0 {
		r.raw.h = sha256.New()
		mode &^= HashRaw
	}
	br := bufio.NewReaderSize(r.raw, 256<<10)
	head, _ := br.Peek(len(armorMagic))
	r.Layers.Encrypted = bytes.HasPrefix(head, ageMagic) || bytes.HasPrefix(head, armorMagic)
	fail := func(err error) (*Reader, error) {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if mode == Raw {
		r.Layers.Compression = sniffCompression(head)
		if r.Layers.Encrypted {
			r.Layers.Compression = "unknown" // inside the encryption
		}
		r.plain = br
		r.mapOK = r.raw.h == nil
		return r, nil
	}
	dec, err := DecryptReader(br, opts)
	if err != nil {
		return fail(err)
	}
	dbr := dec.(*bufio.Reader)
	head, _ = dbr.Peek(4)
	r.Layers.Compression = sniffCompression(head)
	if mode == DecryptOnly {
		r.plain = dbr
		return r, nil
	}
	plain, err := Decompress(dbr)
	if err != nil {
		return fail(err)
	}
	r.plain = plain
	r.close = func() error { plain.Close(); return f.Close() }
	return r, nil
}

func sniffCompression(head []byte) string {
	switch {
	case bytes.HasPrefix(head, zstdMagic):
		return "zstd"
	case bytes.HasPrefix(head, gzipMagic):
		return "gzip"
	}
	return "none"
}

func (r *Reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	r.mapOK = false
	n, err := r.plain.Read(p)
	r.count(r.raw.n.Load())
	if err == io.EOF && r.want != "" {
		want := r.want
		r.want = "" // checked once
		if _, derr := r.Drain(); derr != nil {
			return n, derr
		}
		if got := r.SHA256(); got != want {
			return n, fmt.Errorf("%s: sha256 %s does not match its .sha256 sidecar (%s): truncated or altered", r.Path, got[:12], want[:12])
		}
	}
	return n, err
}

// count reports the raw bytes read up to offset (progress, stats).
func (r *Reader) count(offset int64) {
	if d := offset - r.counted; d > 0 {
		r.counted = offset
		r.prog.Add(d)
		if r.stats != nil {
			r.stats.BytesIn.Add(d)
		}
	}
}

// Close releases the file.
func (r *Reader) Close() error { return r.close() }

// Drain reads what the decoders left unread of the raw file (trailing
// bytes) so SHA256 covers the whole file, and returns the count.
func (r *Reader) Drain() (int64, error) {
	return io.Copy(io.Discard, r.raw)
}

// SHA256 is the hex sha256 of the raw bytes read so far (call Drain
// first); empty unless opened with HashRaw.
func (r *Reader) SHA256() string {
	if r.raw.h == nil {
		return ""
	}
	return hex.EncodeToString(r.raw.h.Sum(nil))
}

// RawBytes is the number of raw bytes read so far.
func (r *Reader) RawBytes() int64 { return r.raw.n.Load() }

// hashingReader counts (and optionally hashes) the raw bytes. The zstd
// decoder reads it from its own goroutine, so the count is atomic.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n atomic.Int64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if h.h != nil {
		h.h.Write(p[:n])
	}
	h.n.Add(int64(n))
	return n, err
}

// WarnLoosePermissions logs a warning for key files others can read.
// Files from git or a config-management checkout often lose their mode, so
// this warns rather than fails.
func WarnLoosePermissions(log *slog.Logger, paths ...string) {
	if log == nil {
		return
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("key file is readable by group or others; chmod 600 it", "file", p, "mode", fi.Mode().Perm().String())
		}
	}
}

// ReadSidecar returns the hex sum recorded in <path>.sha256 (sha256sum format).
func ReadSidecar(path string) (string, error) {
	b, err := os.ReadFile(path + ".sha256")
	if err != nil {
		return "", err
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 || len(fields[0]) != 64 {
		return "", fmt.Errorf("%s.sha256: not in sha256sum format", path)
	}
	return strings.ToLower(fields[0]), nil
}
