// Package artifact is the one writer (and reader) of backup files: stream →
// compression → encryption → temporary file in the target directory →
// fsync → atomic rename → fsync of the directory, with size and sha256
// computed on the way and a `<file>.sha256` sidecar in sha256sum format.
// No partial file ever carries the final name.
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/klauspost/pgzip"

	"github.com/planrun/planrun/engine"
)

// EncryptSpec is the `encrypt:` block accepted by every step that writes an artifact.
type EncryptSpec struct {
	Recipients     []string `yaml:"recipients" doc:"age X25519 recipients (age1...); the backup host needs no decryption key"`
	RecipientsFile string   `yaml:"recipients_file" doc:"file with age recipients, one per line (# comments allowed)"`
	PassphraseFile string   `yaml:"passphrase_file" secret:"file" doc:"file whose first line is the passphrase (age scrypt); prefer recipients"`
}

// Validate checks that exactly one way to encrypt is given.
func (e *EncryptSpec) Validate() error {
	if e == nil {
		return nil
	}
	n := 0
	if len(e.Recipients) > 0 || e.RecipientsFile != "" {
		n++
	}
	if e.PassphraseFile != "" {
		n++
	}
	if n != 1 {
		return errors.New("encrypt: give recipients and/or recipients_file, or passphrase_file (exactly one kind)")
	}
	return nil
}

// WriteOptions is embedded (inline) in the params of every step that
// writes an artifact.
type WriteOptions struct {
	Output    string       `yaml:"output" required:"true" doc:"artifact path; written under a temporary name and renamed when complete"`
	Compress  string       `yaml:"compress" enum:"zstd|gzip|none" default:"zstd" doc:"compression applied before encryption"`
	Level     int          `yaml:"level" doc:"compression level (zstd 1-22, default 3; gzip 1-9, default 6)"`
	Encrypt   *EncryptSpec `yaml:"encrypt" doc:"age encryption of the (compressed) stream"`
	Overwrite bool         `yaml:"overwrite" doc:"replace an existing artifact of the same name"`
}

// Validate checks the compression level and the encrypt block.
func (o *WriteOptions) Validate() error {
	switch o.Compress {
	case "zstd":
		if o.Level < 0 || o.Level > 22 {
			return fmt.Errorf("level: zstd levels are 1-22, got %d", o.Level)
		}
	case "gzip":
		if o.Level < 0 || o.Level > 9 {
			return fmt.Errorf("level: gzip levels are 1-9, got %d", o.Level)
		}
	}
	return o.Encrypt.Validate()
}

// ReadOptions is embedded (inline) in the params of steps that read artifacts.
type ReadOptions struct {
	IdentityFile   string `yaml:"identity_file" secret:"file" doc:"age identity file (AGE-SECRET-KEY-...) to decrypt recipient-encrypted artifacts"`
	PassphraseFile string `yaml:"passphrase_file" secret:"file" doc:"file whose first line is the passphrase of a passphrase-encrypted artifact"`
}

// AddReadKeys sets a restore step's ReadOptions params (in with) to the
// decryption keys of the restore target.
func AddReadKeys(with map[string]any, t engine.RestoreTarget) {
	if t.IdentityFile != "" {
		with["identity_file"] = t.IdentityFile
	}
	if t.PassphraseFile != "" {
		with["passphrase_file"] = t.PassphraseFile
	}
}

// Describe renders what a writer would produce, for dry-run output
// ("write: " + Describe()).
func (o WriteOptions) Describe() string {
	comp := o.Compress
	if comp == "" {
		comp = "zstd"
	}
	if o.Level != 0 && comp != "none" {
		comp += fmt.Sprintf(" level %d", o.Level)
	}
	parts := []string{comp}
	if o.Encrypt != nil {
		switch {
		case o.Encrypt.PassphraseFile != "":
			parts = append(parts, "age passphrase from "+o.Encrypt.PassphraseFile)
		case len(o.Encrypt.Recipients) == 0:
			parts = append(parts, "age to recipients in "+o.Encrypt.RecipientsFile)
		default:
			desc := fmt.Sprintf("age to %d recipient(s)", len(o.Encrypt.Recipients))
			if o.Encrypt.RecipientsFile != "" {
				desc += " + " + o.Encrypt.RecipientsFile
			}
			parts = append(parts, desc)
		}
	}
	if o.Overwrite {
		parts = append(parts, "overwrite")
	}
	return fmt.Sprintf("%s (%s; + %s.sha256)", o.Output, strings.Join(parts, ", "), filepath.Base(o.Output))
}

// Result describes a committed artifact.
type Result struct {
	Path    string
	Size    int64  // bytes on disk
	SHA256  string // of the bytes on disk
	BytesIn int64  // bytes written into the writer (before compression)
	// Record is what the run's manifest lists for this artifact; the step
	// adds Source, Tools and Counts to it before its Run returns.
	Record *engine.ArtifactRecord
}

// Outputs returns the standard artifact outputs: path, size, sha256, bytes_in.
func (r Result) Outputs() engine.Outputs {
	return engine.Outputs{"path": r.Path, "size": r.Size, "sha256": r.SHA256, "bytes_in": r.BytesIn}
}

// StandardOutputs documents Result.Outputs for step declarations.
var StandardOutputs = []engine.Output{
	{Name: "path", Doc: "path of the artifact"},
	{Name: "size", Doc: "size in bytes on disk"},
	{Name: "sha256", Doc: "hex sha256 of the artifact (also in <path>.sha256)"},
	{Name: "bytes_in", Doc: "bytes before compression and encryption"},
}

// Writer streams data into a new artifact. Call Commit to publish it or
// Abort to discard it; Abort after Commit is a no-op, so `defer w.Abort()`.
// A Writer is not safe for concurrent use.
type Writer struct {
	opts    WriteOptions
	tmp     *os.File
	tmpName string
	sink    *sink
	enc     io.WriteCloser // age, or nil
	comp    io.WriteCloser // compressor, or nil
	pz      *parallelZstd  // the compressor when it is parallel zstd
	head    io.Writer
	in      int64
	stats   *engine.Stats
	prog    *engine.Progress // counts the bytes written in, the step's one count
	log     *slog.Logger
	start   time.Time
	done    bool
	ctx     context.Context
	env     *engine.Env
	// encryption is the public description for the manifest.
	encryption *engine.Encryption
}

// Create opens a temporary file next to opts.Output and builds the chain
// stream → compression → encryption → (sha256 + file).
func Create(ctx context.Context, env *engine.Env, opts WriteOptions) (*Writer, error) {
	final := opts.Output
	if final == "" {
		return nil, errors.New("artifact: no output path")
	}
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("artifact %s: %w", final, err)
	}
	if !opts.Overwrite {
		if _, err := os.Lstat(final); err == nil {
			return nil, fmt.Errorf("artifact %s already exists (set overwrite: true to replace it)", final)
		}
	}
	// Resolve recipients before creating anything: a bad key leaves no trace.
	var recips []age.Recipient
	if opts.Encrypt != nil {
		if env != nil {
			WarnLoosePermissions(env.Log, opts.Encrypt.PassphraseFile)
		}
		var err error
		if recips, err = recipients(opts.Encrypt); err != nil {
			return nil, err
		}
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(final)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w", final, err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("artifact %s: %w", final, err)
	}
	w := &Writer{opts: opts, tmp: tmp, tmpName: tmp.Name(), ctx: ctx, start: time.Now(), env: env,
		encryption: describeEncryption(opts.Encrypt, recips)}
	w.sink = newSink(tmp, sha256.New())
	if env != nil {
		w.stats, w.log, w.prog = env.Stats, env.Log, env.Progress
	}
	var out io.Writer = w.sink
	if recips != nil {
		ew, err := age.Encrypt(out, recips...)
		if err != nil {
			w.Abort()
			return nil, fmt.Errorf("artifact %s: age: %w", final, err)
		}
		w.enc, out = ew, ew
	}
	switch opts.Compress {
	case "", "zstd":
		level := opts.Level
		if level == 0 {
			level = 3
		}
		pz, err := newParallelZstd(out, level)
		if err != nil {
			w.Abort()
			return nil, fmt.Errorf("artifact %s: %w", final, err)
		}
		w.pz, w.comp, out = pz, pz, pz
	case "gzip":
		level := opts.Level
		if level == 0 {
			level = 6
		}
		gw, err := pgzip.NewWriterLevel(out, level)
		if err != nil {
			w.Abort()
			return nil, fmt.Errorf("artifact %s: gzip: %w", final, err)
		}
		// 1 MiB blocks, two per core in flight: every core busy, memory bounded.
		if err := gw.SetConcurrency(1<<20, 2*runtime.GOMAXPROCS(0)); err != nil {
			w.Abort()
			return nil, fmt.Errorf("artifact %s: gzip: %w", final, err)
		}
		w.comp, out = gw, gw
	case "none":
	default:
		w.Abort()
		return nil, fmt.Errorf("artifact %s: unknown compression %q", final, opts.Compress)
	}
	w.head = out
	return w, nil
}

// Path is the final name the artifact will have.
func (w *Writer) Path() string { return w.opts.Output }

// TempPath is the temporary file being written (a tar of the output's own
// directory must not archive it).
func (w *Writer) TempPath() string { return w.tmpName }

// Write streams p into the artifact. It fails once ctx is cancelled.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("artifact: write after commit/abort")
	}
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := w.head.Write(p)
	w.in += int64(n)
	if w.stats != nil {
		w.stats.BytesIn.Add(int64(n))
	}
	w.prog.Add(int64(n))
	if err != nil {
		return n, fmt.Errorf("artifact %s: %w", w.opts.Output, err)
	}
	return n, nil
}

// ReadFrom copies r into the artifact with large reads (io.Copy uses it).
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var total int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			m, err := w.Write(buf[:n])
			total += int64(m)
			if err != nil {
				return total, err
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// Commit finishes the stream, syncs, renames into place, syncs the
// directory and writes the sha256 sidecar.
func (w *Writer) Commit() (Result, error) {
	if w.done {
		return Result{}, errors.New("artifact: already committed or aborted")
	}
	if err := w.ctx.Err(); err != nil {
		w.Abort()
		return Result{}, err
	}
	final := w.opts.Output
	fail := func(err error) (Result, error) {
		w.Abort()
		return Result{}, fmt.Errorf("artifact %s: %w", final, err)
	}
	// Close innermost-first: compression, then encryption, then the file sink.
	for _, c := range []io.Closer{w.comp, w.enc, w.sink} {
		if c == nil {
			continue
		}
		if err := c.Close(); err != nil {
			return fail(err)
		}
	}
	if err := w.ctx.Err(); err != nil {
		w.Abort()
		return Result{}, err
	}
	if err := w.tmp.Sync(); err != nil {
		return fail(fmt.Errorf("sync: %w", err))
	}
	if err := w.tmp.Close(); err != nil {
		return fail(err)
	}
	sum := hex.EncodeToString(w.sink.hash.Sum(nil))
	if !w.opts.Overwrite {
		if _, err := os.Lstat(final); err == nil {
			return fail(errors.New("appeared while writing; not replacing it (set overwrite: true to replace)"))
		}
	}
	// The sidecar is written (synced) under a temporary name first and
	// renamed only after the artifact is published: a failed publish never
	// leaves a sidecar that describes some other file.
	side := fmt.Sprintf("%s  %s\n", sum, filepath.Base(final))
	sideTmp, err := writeTemp(filepath.Dir(final), filepath.Base(final)+".sha256", []byte(side), 0o600)
	if err != nil {
		return fail(err)
	}
	publish := func() error {
		if !w.opts.Overwrite {
			// Link fails if the name appeared meanwhile: never clobber.
			if err := os.Link(w.tmpName, final); err != nil {
				return err
			}
			return os.Remove(w.tmpName)
		}
		return os.Rename(w.tmpName, final)
	}
	if err := publish(); err != nil {
		os.Remove(sideTmp)
		return fail(fmt.Errorf("publish: %w", err))
	}
	w.done = true
	if err := os.Rename(sideTmp, final+".sha256"); err != nil {
		os.Remove(sideTmp)
		return Result{}, fmt.Errorf("artifact %s: sidecar: %w", final, err)
	}
	if err := SyncDir(filepath.Dir(final)); err != nil {
		return Result{}, err
	}
	size := w.sink.n
	if w.stats != nil {
		w.stats.BytesOut.Add(size)
	}
	if w.log != nil {
		el := time.Since(w.start)
		w.log.Info("artifact written", "path", final, "bytes_in", w.in, "size", size,
			"human", HumanBytes(size), "elapsed", el.Round(time.Millisecond).String(), "rate", Rate(w.in, el))
	}
	comp := w.opts.Compress
	if comp == "" {
		comp = "zstd"
	}
	rec := &engine.ArtifactRecord{Path: final, Size: size, SHA256: sum, BytesIn: w.in,
		Compression: comp, Encryption: w.encryption}
	w.env.RecordArtifact(rec)
	return Result{Path: final, Size: size, SHA256: sum, BytesIn: w.in, Record: rec}, nil
}

// describeEncryption lists the public facts of an encryption: the method
// and the recipients' public keys (never a passphrase or an identity).
func describeEncryption(e *EncryptSpec, recips []age.Recipient) *engine.Encryption {
	if e == nil {
		return nil
	}
	if e.PassphraseFile != "" {
		return &engine.Encryption{Method: "age-scrypt"}
	}
	enc := &engine.Encryption{Method: "age-x25519"}
	for _, r := range recips {
		if s, ok := r.(fmt.Stringer); ok {
			enc.Recipients = append(enc.Recipients, s.String())
		}
	}
	return enc
}

// Abort discards the temporary file. Safe to call more than once.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.sink.setErr(errors.New("aborted"))
	if w.pz != nil {
		w.pz.abort()
	} else if w.comp != nil {
		w.comp.Close() // stops pgzip's goroutines; its output goes nowhere
	}
	w.sink.Close()
	w.tmp.Close()
	os.Remove(w.tmpName)
}

// writeTemp writes data, synced, to a new temporary file in dir named
// after base, and returns its path.
func writeTemp(dir, base string, data []byte, perm os.FileMode) (string, error) {
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", err
	}
	err = tmp.Chmod(perm)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

// SyncDir fsyncs a directory so a rename in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func recipients(e *EncryptSpec) ([]age.Recipient, error) {
	if e.PassphraseFile != "" {
		pass, err := readFirstLine(e.PassphraseFile)
		if err != nil {
			return nil, err
		}
		r, err := age.NewScryptRecipient(pass)
		if err != nil {
			return nil, fmt.Errorf("passphrase: %w", err)
		}
		return []age.Recipient{r}, nil
	}
	var out []age.Recipient
	for _, s := range e.Recipients {
		r, err := age.ParseX25519Recipient(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("encrypt: recipient %q: %w", s, err)
		}
		out = append(out, r)
	}
	if e.RecipientsFile != "" {
		f, err := os.Open(e.RecipientsFile)
		if err != nil {
			return nil, fmt.Errorf("encrypt: %w", err)
		}
		defer f.Close()
		rs, err := age.ParseRecipients(f)
		if err != nil {
			return nil, fmt.Errorf("encrypt: %s: %w", e.RecipientsFile, err)
		}
		out = append(out, rs...)
	}
	if len(out) == 0 {
		return nil, errors.New("encrypt: no recipients")
	}
	return out, nil
}

func readFirstLine(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s: empty passphrase", path)
	}
	return line, nil
}
