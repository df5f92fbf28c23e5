package tarball

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// ExtractOptions controls extraction.
type ExtractOptions struct {
	StripComponents int
	// PreserveOwner restores uid/gid (only effective as root, like GNU tar).
	PreserveOwner bool
	// Overwrite replaces existing files; otherwise an existing file is an
	// error (existing directories are merged).
	Overwrite bool
	Log       *slog.Logger
}

// ErrEscape marks an entry that would land outside the target.
var ErrEscape = errors.New("escapes the target directory")

// Extract unpacks a tar stream into target through an os.Root, so no
// entry — "../" names, absolute names, or writes through a symlink the
// archive planted — can create or modify anything outside target. The
// first such entry stops extraction with an error naming it.
func Extract(ctx context.Context, r io.Reader, target string, opts ExtractOptions) (Stats, error) {
	var st Stats
	if err := os.MkdirAll(target, 0o700); err != nil {
		return st, err
	}
	root, err := os.OpenRoot(target)
	if err != nil {
		return st, err
	}
	defer root.Close()
	x := &extractor{root: root, target: target, opts: opts, asRoot: os.Geteuid() == 0}
	tr := tar.NewReader(r)
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("reading archive: %w", err)
		}
		name, skip, err := x.memberPath(hdr.Name)
		if err != nil {
			return st, err
		}
		if skip {
			continue
		}
		if err := x.entry(hdr, name, tr, buf, &st); err != nil {
			return st, x.explain(hdr.Name, err)
		}
	}
	return st, x.finishDirs()
}

type extractor struct {
	root   *os.Root
	target string
	opts   ExtractOptions
	asRoot bool
	dirs   []dirMeta
}

type dirMeta struct {
	name  string
	hdr   *tar.Header
	depth int
}

// memberPath validates and normalises an entry name.
func (x *extractor) memberPath(raw string) (string, bool, error) {
	if strings.ContainsRune(raw, 0) {
		return "", false, fmt.Errorf("entry %q: NUL in name", raw)
	}
	if strings.HasPrefix(raw, "/") {
		return "", false, fmt.Errorf("entry %q: absolute path %w %s; refusing to extract", raw, ErrEscape, x.target)
	}
	name := path.Clean(raw)
	if name == ".." || strings.HasPrefix(name, "../") {
		return "", false, fmt.Errorf("entry %q: %w %s; refusing to extract", raw, ErrEscape, x.target)
	}
	if n := x.opts.StripComponents; n > 0 {
		parts := strings.Split(name, "/")
		if len(parts) <= n {
			return "", true, nil
		}
		name = strings.Join(parts[n:], "/")
	}
	if name == "." {
		return "", true, nil
	}
	return name, false, nil
}

// explain turns os.Root's refusal into a message a person can act on.
func (x *extractor) explain(entry string, err error) error {
	if strings.Contains(err.Error(), "path escapes from parent") {
		return fmt.Errorf("entry %q: %w %s (through a symlink); refusing to extract", entry, ErrEscape, x.target)
	}
	return fmt.Errorf("entry %q: %w", entry, err)
}

func (x *extractor) entry(hdr *tar.Header, name string, tr io.Reader, buf []byte, st *Stats) error {
	if dir := path.Dir(name); dir != "." {
		if err := x.root.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := x.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if fi, err := x.root.Lstat(name); err != nil || !fi.IsDir() {
			if fi != nil && fi.Mode()&fs.ModeSymlink != 0 {
				return fmt.Errorf("%s is a symlink, not a directory; refusing to extract through it", name)
			}
			return fmt.Errorf("%s exists and is not a directory", name)
		}
		x.dirs = append(x.dirs, dirMeta{name: name, hdr: hdr, depth: strings.Count(name, "/")})
		st.Dirs++
		return nil
	case tar.TypeReg, tar.TypeRegA:
		if err := x.clear(name); err != nil {
			return err
		}
		f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		n, err := io.CopyBuffer(struct{ io.Writer }{f}, struct{ io.Reader }{tr}, buf)
		st.Bytes += n
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		st.Files++
		return x.meta(name, hdr, false)
	case tar.TypeSymlink:
		if err := x.clear(name); err != nil {
			return err
		}
		// The link itself may point anywhere (absolute links in /etc are
		// normal); os.Root refuses to write through it if it leads outside.
		if err := x.root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		st.Symlinks++
		return x.meta(name, hdr, true)
	case tar.TypeLink:
		old, skip, err := x.memberPath(hdr.Linkname)
		if err != nil {
			return err
		}
		if skip {
			return fmt.Errorf("hard link to %q removed by strip_components", hdr.Linkname)
		}
		if err := x.clear(name); err != nil {
			return err
		}
		if err := x.root.Link(old, name); err != nil {
			return err
		}
		st.Hardlinks++
		return nil
	case tar.TypeXGlobalHeader:
		return nil
	default:
		// Devices and FIFOs need mknod, which os.Root does not offer.
		st.Skipped++
		if x.opts.Log != nil {
			x.opts.Log.Warn("skipping special file", "entry", hdr.Name, "type", string(hdr.Typeflag))
		}
		return nil
	}
}

// clear makes room for a new entry: an existing file is an error unless
// overwriting, and is then removed (never opened: it may be a symlink).
func (x *extractor) clear(name string) error {
	fi, err := x.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !x.opts.Overwrite {
		return fmt.Errorf("%s already exists in %s (set overwrite: true to replace)", name, x.target)
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory in %s; not replacing it with a file", name, x.target)
	}
	return x.root.Remove(name)
}

func (x *extractor) meta(name string, hdr *tar.Header, symlink bool) error {
	if x.opts.PreserveOwner && x.asRoot {
		chown := x.root.Chown
		if symlink {
			chown = x.root.Lchown
		}
		if err := chown(name, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if symlink {
		return nil // os.Root has no lchmod/lutimes; link modes are meaningless on Linux
	}
	// After chown, which clears setuid bits.
	if err := x.root.Chmod(name, fs.FileMode(hdr.Mode).Perm()|modeBits(hdr.Mode)); err != nil {
		return err
	}
	return x.root.Chtimes(name, time.Time{}, hdr.ModTime)
}

func modeBits(m int64) fs.FileMode {
	var out fs.FileMode
	if m&0o4000 != 0 {
		out |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= fs.ModeSticky
	}
	return out
}

// finishDirs applies directory metadata last and deepest first, so adding
// files does not bump mtimes and read-only dirs do not block extraction.
func (x *extractor) finishDirs() error {
	sort.SliceStable(x.dirs, func(i, j int) bool { return x.dirs[i].depth > x.dirs[j].depth })
	for _, d := range x.dirs {
		if err := x.meta(d.name, d.hdr, false); err != nil {
			return x.explain(d.hdr.Name, err)
		}
	}
	return nil
}
