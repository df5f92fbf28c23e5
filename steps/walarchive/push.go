package walarchive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/DataDog/zstd"

	"github.com/planrun/planrun/steps/internal/artifact"
)

func push(ctx context.Context, cfg *Config, path string) error {
	name := filepath.Base(path)
	kind, err := classify(name)
	if err != nil {
		return err
	}
	// A segment is 16 MiB by default (at most 1 GiB): map it, hash it,
	// compress it from the mapping; no second read, no copy.
	data, release, err := mapFile(path)
	if err != nil {
		return err
	}
	defer release()
	sum := sha256.Sum256(data)
	raw := hex.EncodeToString(sum[:])
	have, err := cfg.lookup(name, kind)
	if err != nil {
		return err
	}
	for _, s := range have {
		if s.Raw != raw {
			return fmt.Errorf("%s: %w (archived %s has sha256 %s, this file %s)", name, ErrConflict, cfg.rel(s.Path), s.Raw[:12], raw[:12])
		}
	}
	if len(have) > 0 {
		// Already archived with this content: a retry after a crash
		// between publishing and the sidecar only needs the sidecar.
		return repairSidecar(have[0].Path)
	}
	dir := cfg.walDir(name, kind)
	if err := mkdirSynced(dir); err != nil {
		return err
	}
	opts := cfg.writeOptions(filepath.Join(dir, name+"-"+raw+cfg.ext()))
	body := data
	if opts.Compress == "zstd" {
		// One segment, one frame, compressed by libzstd in one call: the
		// archiver waits for this process, and libzstd takes about 60 %
		// of the CPU time of the artifact writer's streaming (pure Go)
		// compressor at the same level, for a slightly smaller file. The
		// frame is ordinary zstd; readers find it by its magic.
		level := opts.Level
		if level == 0 {
			level = 3
		}
		if body, err = zstd.CompressLevel(nil, data, level); err != nil {
			return fmt.Errorf("%s: zstd: %w", name, err)
		}
		opts.Compress = "none"
	}
	w, err := artifact.Create(ctx, nil, opts)
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := w.Write(body); err != nil {
		return err
	}
	res, err := w.Commit()
	if err != nil {
		return err
	}
	removeStaleTemps(dir, name)
	// Two pushes of one name with different content at once (two
	// servers on one archive) would both publish: the loser takes its
	// copy back and reports the conflict.
	have, err = cfg.lookup(name, kind)
	if err != nil {
		return err
	}
	for _, s := range have {
		if s.Raw != raw {
			os.Remove(res.Path + ".sha256")
			os.Remove(res.Path)
			return fmt.Errorf("%s: %w (archived concurrently as %s)", name, ErrConflict, cfg.rel(s.Path))
		}
	}
	return nil
}

// mkdirSynced creates dir (0700) and makes its entry durable in the parent.
func mkdirSynced(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return artifact.SyncDir(parent)
}

// repairSidecar writes the sha256 sidecar of an archived file that has
// none (a crash between the publishing rename and the sidecar's).
func repairSidecar(path string) error {
	if _, err := os.Stat(path + ".sha256"); err == nil {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%s  %s\n", hex.EncodeToString(h.Sum(nil)), filepath.Base(path))
	return writeFileAtomic(path+".sha256", []byte(line))
}

// writeFileAtomic writes a small file: temp name, fsync, rename, dir fsync.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return artifact.SyncDir(filepath.Dir(path))
}

func fetch(ctx context.Context, cfg *Config, name, dest string) error {
	kind, err := classify(name)
	if err != nil {
		return err
	}
	have, err := cfg.lookup(name, kind)
	if err != nil {
		return err
	}
	switch len(have) {
	case 0:
		return fmt.Errorf("%s: %w", name, ErrNotFound)
	case 1:
	default:
		return fmt.Errorf("%s: %d copies with different content in the archive (%s, %s)", name, len(have), cfg.rel(have[0].Path), cfg.rel(have[1].Path))
	}
	s := have[0]
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing
	if err := readInto(ctx, cfg, s, tmp); err != nil {
		tmp.Close()
		return err
	}
	// No fsync: PostgreSQL replays the file at once and fetches it again
	// after a crash.
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dest)
}

// readInto writes the clear content of s to w, checking the sidecar of
// the file on disk and the sha256 of the clear content in its name.
func readInto(ctx context.Context, cfg *Config, s stored, w io.Writer) error {
	r, err := artifact.OpenWith(ctx, nil, s.Path, cfg.ReadOptions, artifact.Plain|artifact.VerifySidecar|artifact.Uncounted)
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.rel(s.Path), err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), r); err != nil {
		return fmt.Errorf("%s: %w", cfg.rel(s.Path), err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != s.Raw {
		return fmt.Errorf("%s: content sha256 %s does not match its name (%s): corrupt", cfg.rel(s.Path), got[:12], s.Raw[:12])
	}
	return nil
}

// read returns the clear content of s (small files: history).
func (c *Config) read(ctx context.Context, s stored) ([]byte, error) {
	var b bytes.Buffer
	if err := readInto(ctx, c, s, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// mapFile maps a file read-only (an empty or unmappable file is read).
func mapFile(path string) ([]byte, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.Mode().IsRegular() && fi.Size() > 0 && fi.Size() == int64(int(fi.Size())) {
		if b, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE); err == nil {
			return b, func() { syscall.Munmap(b) }, nil
		}
	}
	b, err := io.ReadAll(f)
	return b, func() {}, err
}

// staleAfter is the age after which a temporary file of a push is taken
// for the leftover of a killed wal-push (a live push finishes in seconds).
const staleAfter = time.Hour

// removeStaleTemps removes what killed pushes of name left behind.
func removeStaleTemps(dir, name string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, "."+name+"-") || !strings.Contains(n, ".tmp-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleAfter {
			os.Remove(filepath.Join(dir, n))
		}
	}
}
