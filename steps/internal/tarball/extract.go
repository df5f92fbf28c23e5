package tarball

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ExtractOptions controls extraction.
type ExtractOptions struct {
	StripComponents int
	// PreserveOwner restores uid/gid (only effective as root, like GNU tar).
	PreserveOwner bool
	// Overwrite replaces existing files; otherwise an existing file is an
	// error (existing directories are merged).
	Overwrite bool
	// CreateSpecial creates FIFOs and device nodes (devices need root).
	// Otherwise they are skipped with a warning and counted in Skipped.
	CreateSpecial bool
	Log           *slog.Logger
}

// ErrEscape marks an entry that would land outside the target.
var ErrEscape = errors.New("escapes the target directory")

// typeGNUVolume is a GNU volume label: archive metadata, not a file.
const typeGNUVolume = 'V'

// Extract unpacks a tar stream into target. No entry — "../" names,
// absolute names, or writes through a symlink the archive planted — can
// create or modify anything outside target: every path is resolved from
// directory handles opened one component at a time without following
// symlinks, and the rare symlinked directory is resolved by an os.Root
// (which follows links that stay inside target and refuses the rest). The
// first offending entry stops extraction with an error naming it.
//
// Stats count what was extracted: Other counts FIFOs and devices, created
// or not; Skipped those not created. Files are written in place (no
// per-file fsync); one syncfs at the end makes the restore durable.
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
	d, err := newDirCache(root)
	if err != nil {
		return st, err
	}
	defer d.close()
	x := &extractor{d: d, target: target, opts: opts, asRoot: os.Geteuid() == 0, euid: os.Geteuid(),
		umask: processUmask(), buf: make([]byte, 1<<20)}
	tr := tar.NewReader(r)
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
		d.trim()
		if err := x.entry(hdr, name, tr, &st); err != nil {
			return st, x.explain(hdr.Name, err)
		}
	}
	if err := x.finishDirs(); err != nil {
		return st, err
	}
	if err := unix.Syncfs(d.rootFd); err != nil {
		return st, fmt.Errorf("syncfs %s: %w", target, err)
	}
	return st, nil
}

// processUmask reads the umask without changing it (umask(2) would, for
// every goroutine); -1 when it cannot be told.
func processUmask() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return int(m)
			}
		}
	}
	return -1
}

type extractor struct {
	d      *dirCache
	target string
	opts   ExtractOptions
	asRoot bool
	euid   int
	umask  int // -1: unknown
	dirs   []dirMeta
	buf    []byte
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

// isSparse reports a sparse member: GNU 'S', or PAX GNU.sparse.* records
// (archive/tar expands both; the holes are recreated as holes).
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func (x *extractor) entry(hdr *tar.Header, name string, tr io.Reader, st *Stats) error {
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := x.mkdir(name); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirMeta{name: name, hdr: hdr, depth: strings.Count(name, "/")})
		st.Dirs++
		return nil
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeCont:
		// A contiguous file ('7') is a regular file everywhere but on
		// one long-gone system; GNU tar extracts it as one too.
		return x.file(hdr, name, tr, st)
	case tar.TypeSymlink:
		// The link itself may point anywhere (absolute links in /etc are
		// normal); no later entry is ever written through it.
		pfd, base, err := x.d.parent(name, true)
		if err != nil {
			return err
		}
		err = x.make(pfd, base, name, func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) })
		if err != nil {
			return opErr(err, "symlink %s", name)
		}
		st.Symlinks++
		if x.opts.PreserveOwner && x.asRoot {
			if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("lchown %s: %w", name, err)
			}
		}
		return nil // link modes are meaningless on Linux
	case tar.TypeLink:
		old, skip, err := x.memberPath(hdr.Linkname)
		if err != nil {
			return err
		}
		if skip {
			return fmt.Errorf("hard link to %q removed by strip_components", hdr.Linkname)
		}
		ofd, obase, err := x.d.parent(old, false)
		if err != nil {
			return err
		}
		pfd, base, err := x.d.parent(name, true)
		if err != nil {
			return err
		}
		// Flags 0: a link to a symlink links the symlink, never its target.
		err = x.make(pfd, base, name, func() error { return unix.Linkat(ofd, obase, pfd, base, 0) })
		if err != nil {
			return opErr(err, "link %s to %s", name, old)
		}
		st.Hardlinks++
		return nil
	case tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
		st.Other++
		if !x.opts.CreateSpecial {
			st.Skipped++
			if x.opts.Log != nil {
				x.opts.Log.Warn("skipping special file (set create_special: true to create it)",
					"entry", hdr.Name, "type", specialKind(hdr.Typeflag))
			}
			return nil
		}
		return x.special(hdr, name)
	case tar.TypeXGlobalHeader, typeGNUVolume:
		return nil
	default:
		// Dropping an entry of a type we do not know would be silent data loss.
		return fmt.Errorf("unsupported entry type %q; refusing to skip it silently", string(hdr.Typeflag))
	}
}

func specialKind(t byte) string {
	switch t {
	case tar.TypeFifo:
		return "fifo"
	case tar.TypeChar:
		return "character device"
	}
	return "block device"
}

// mkdir creates a directory entry (0700 until finishDirs) or merges with
// an existing directory; an existing symlink is refused, not followed.
func (x *extractor) mkdir(name string) error {
	pfd, base, err := x.d.parent(name, true)
	if err != nil {
		return err
	}
	err = retry(func() error { return unix.Mkdirat(pfd, base, 0o700) })
	if err == nil {
		return nil
	}
	if err != unix.EEXIST {
		return fmt.Errorf("mkdir %s: %w", name, err)
	}
	var s unix.Stat_t
	if err := unix.Fstatat(pfd, base, &s, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	switch s.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return nil
	case unix.S_IFLNK:
		return fmt.Errorf("%s is a symlink, not a directory; refusing to extract through it", name)
	}
	return fmt.Errorf("%s exists and is not a directory", name)
}

// file writes a regular (or sparse) member: created exclusively and
// without following a symlink, metadata set through the open descriptor.
func (x *extractor) file(hdr *tar.Header, name string, tr io.Reader, st *Stats) error {
	pfd, base, err := x.d.parent(name, true)
	if err != nil {
		return err
	}
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	// Created with its final permissions (never the setuid/setgid/sticky
	// bits: those come after chown), so that chmod, and chown for files
	// that already have the right owner, can be skipped.
	perm := uint32(hdr.Mode) & 0o777
	fd := -1
	err = x.make(pfd, base, name, func() (err error) { fd, err = unix.Openat(pfd, base, flags, perm); return err })
	if err != nil {
		return opErr(err, "create %s", name)
	}
	var n int64
	if isSparse(hdr) {
		n, err = x.writeSparse(fd, tr, hdr.Size)
	} else {
		n, err = x.write(fd, tr, hdr.Size)
	}
	st.Bytes += n
	if err == nil {
		err = x.fileMeta(fd, hdr, x.d.newFilesIn(pfd))
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	st.Files++
	return nil
}

// readChunk reads up to len(x.buf) bytes of the member.
func (x *extractor) readChunk(tr io.Reader, left int64) ([]byte, error) {
	b := x.buf[:min(int64(len(x.buf)), left)]
	if _, err := io.ReadFull(tr, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("reading archive: %w", err)
	}
	return b, nil
}

func (x *extractor) write(fd int, tr io.Reader, size int64) (int64, error) {
	var done int64
	for done < size {
		b, err := x.readChunk(tr, size-done)
		if err != nil {
			return done, err
		}
		for len(b) > 0 {
			var n int
			err := retry(func() (err error) { n, err = unix.Write(fd, b); return })
			if err != nil {
				return done, fmt.Errorf("write: %w", err)
			}
			b = b[n:]
			done += int64(n)
		}
	}
	return done, nil
}

// sparseBlock is the granularity at which zeros become holes.
const sparseBlock = 4096

var zeroBlock [sparseBlock]byte

// writeSparse skips all-zero blocks (leaving holes, as the archive's
// sparse map had them) and sets the size at the end.
func (x *extractor) writeSparse(fd int, tr io.Reader, size int64) (int64, error) {
	var off int64
	for off < size {
		b, err := x.readChunk(tr, size-off)
		if err != nil {
			return off, err
		}
		for len(b) > 0 {
			k := min(len(b), sparseBlock)
			if !bytes.Equal(b[:k], zeroBlock[:k]) {
				// Extend the run over following data blocks: one pwrite.
				for k < len(b) {
					e := min(len(b), k+sparseBlock)
					if bytes.Equal(b[k:e], zeroBlock[:e-k]) {
						break
					}
					k = e
				}
				if err := pwriteAll(fd, b[:k], off); err != nil {
					return off, err
				}
			}
			b = b[k:]
			off += int64(k)
		}
	}
	if err := retry(func() error { return unix.Ftruncate(fd, size) }); err != nil {
		return off, fmt.Errorf("truncate: %w", err)
	}
	return off, nil
}

func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		var n int
		if err := retry(func() (err error) { n, err = unix.Pwrite(fd, b, off); return }); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// fileMeta sets owner, then mode (chown clears setuid bits), then mtime,
// of a file just created with hdr's permissions in a directory nf
// describes: owner and mode only when they differ from what it got.
func (x *extractor) fileMeta(fd int, hdr *tar.Header, nf newFiles) error {
	mode := uint32(hdr.Mode) & 0o7777
	if x.opts.PreserveOwner && x.asRoot && !(nf.exact && hdr.Uid == x.euid && hdr.Gid == nf.gid) {
		if err := retry(func() error { return unix.Fchown(fd, hdr.Uid, hdr.Gid) }); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if !nf.exact || x.umask < 0 || mode&^0o777 != 0 || mode&uint32(x.umask) != 0 {
		if err := retry(func() error { return unix.Fchmod(fd, mode) }); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	ts := mtimeSpec(hdr.ModTime)
	if err := retry(func() error { return futimens(fd, &ts) }); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return nil
}

// futimens is utimensat(fd, NULL, ts, 0), as glibc implements futimens.
func futimens(fd int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// mtimeSpec leaves atime alone and sets mtime.
func mtimeSpec(mtime time.Time) [2]unix.Timespec {
	return [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtime.UnixNano())}
}

// metaAt sets metadata by name in a directory, for entries that cannot be
// opened (devices, FIFOs) or need not be (directories). The name was
// made or checked by this extraction and is not a symlink; fchmodat
// cannot refuse to follow one on older kernels, so check again.
func (x *extractor) metaAt(pfd int, base, name string, hdr *tar.Header) error {
	if x.opts.PreserveOwner && x.asRoot {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %s: %w", name, err)
		}
	}
	var s unix.Stat_t
	if err := unix.Fstatat(pfd, base, &s, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	if s.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("%s was replaced by a symlink during extraction", name)
	}
	if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode)&0o7777, 0); err != nil {
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	ts := mtimeSpec(hdr.ModTime)
	if err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime of %s: %w", name, err)
	}
	return nil
}

// special creates a FIFO or device node.
func (x *extractor) special(hdr *tar.Header, name string) error {
	pfd, base, err := x.d.parent(name, true)
	if err != nil {
		return err
	}
	mode := uint32(0o600)
	switch hdr.Typeflag {
	case tar.TypeFifo:
		mode |= unix.S_IFIFO
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	default:
		mode |= unix.S_IFBLK
	}
	dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	err = x.make(pfd, base, name, func() error { return unix.Mknodat(pfd, base, mode, dev) })
	if err != nil {
		return opErr(err, "mknod %s (%s)", name, specialKind(hdr.Typeflag))
	}
	return x.metaAt(pfd, base, name, hdr)
}

// make runs mk, which creates base in pfd exclusively; when something
// already has that name, clear decides, and mk runs once more.
func (x *extractor) make(pfd int, base, name string, mk func() error) error {
	err := retry(mk)
	if err != unix.EEXIST {
		return err
	}
	if err := x.clear(pfd, base, name); err != nil {
		return errExists{err}
	}
	return retry(mk)
}

// errExists is clear's refusal, already worded for people.
type errExists struct{ error }

// opErr names the failed operation, unless err is clear's refusal.
func opErr(err error, format string, a ...any) error {
	if e, ok := err.(errExists); ok {
		return e.error
	}
	return fmt.Errorf(format+": %w", append(a, err)...)
}

// clear makes room for a new entry: an existing file is an error unless
// overwriting, and is then removed (never opened: it may be a symlink).
func (x *extractor) clear(pfd int, base, name string) error {
	var s unix.Stat_t
	err := unix.Fstatat(pfd, base, &s, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	if !x.opts.Overwrite {
		return fmt.Errorf("%s already exists in %s (set overwrite: true to replace)", name, x.target)
	}
	if s.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%s is a directory in %s; not replacing it with a file", name, x.target)
	}
	if err := unix.Unlinkat(pfd, base, 0); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if s.Mode&unix.S_IFMT == unix.S_IFLNK {
		// Cached directories may have been reached through it.
		x.d.stale = true
	}
	return nil
}

// finishDirs applies directory metadata last and deepest first, so adding
// files does not bump mtimes and read-only dirs do not block extraction.
func (x *extractor) finishDirs() error {
	sort.SliceStable(x.dirs, func(i, j int) bool { return x.dirs[i].depth > x.dirs[j].depth })
	for _, d := range x.dirs {
		x.d.trim()
		pfd, base, err := x.d.parent(d.name, false)
		if err == nil {
			err = x.metaAt(pfd, base, d.name, d.hdr)
		}
		if err != nil {
			return x.explain(d.hdr.Name, err)
		}
	}
	return nil
}

func openat(dirfd int, name string, flags int, mode uint32) (fd int, err error) {
	err = retry(func() error { fd, err = unix.Openat(dirfd, name, flags, mode); return err })
	return fd, err
}

// retry repeats a system call interrupted by a signal.
func retry(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}
