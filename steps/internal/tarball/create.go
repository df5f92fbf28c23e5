// Package tarball writes and extracts tar streams the way GNU tar does:
// modes, owners (ids and names), mtimes, symlinks, hard links and empty
// directories survive; extraction can never write outside its target.
package tarball

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// CreateOptions controls what goes into an archive.
type CreateOptions struct {
	Paths          []string
	Exclude        []string // globs; see Matcher
	FollowSymlinks bool
	// Unreadable decides about a file or directory that cannot be read:
	// return nil to skip it (after warning), or an error to stop. nil
	// means every unreadable file is an error.
	Unreadable func(path string, err error) error
	// Skip lists files never to archive: the archive being written, when
	// it lies inside one of the paths (GNU tar: "file is the archive").
	Skip []string
}

// Stats counts what an archive holds. Files are regular (and sparse)
// files, Hardlinks their extra names, Other FIFOs and device nodes;
// Skipped is what was left out (unreadable files when creating, special
// files not created when extracting).
type Stats struct {
	Files, Dirs, Symlinks, Hardlinks, Other, Skipped int
	Bytes                                            int64 // file content bytes
}

// openFile, when set (by tests: root can read everything, so an
// unreadable file cannot be made with chmod when tests run as root),
// opens files and directories instead of the raw descriptors below.
var openFile func(name string) (*os.File, error)

// fdReader reads a descriptor.
type fdReader int

func (r fdReader) Read(b []byte) (int, error) {
	var n int
	err := retry(func() (err error) { n, err = unix.Read(int(r), b); return err })
	if err != nil {
		return 0, err
	}
	if n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// at names a file for the *at system calls: name relative to the open
// directory dir, or (dir AT_FDCWD) a whole path. Files are reached from
// their directory's descriptor, one component to resolve instead of the
// whole path each time: the kernel's path walk showed in profiles.
type at struct {
	dir  int
	name string
}

func pathAt(p string) at { return at{unix.AT_FDCWD, p} }

// openFileReader opens regular file p (reached as a): the reader and how
// to close it.
func openFileReader(p string, a at) (io.Reader, func(), error) {
	if openFile != nil {
		f, err := openFile(p)
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
	fd, err := openat(a.dir, a.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return fdReader(fd), func() { unix.Close(fd) }, nil
}

// openDir opens directory p (reached as a) to list it.
func openDir(p string, a at) (*os.File, error) {
	if openFile != nil {
		return openFile(p)
	}
	fd, err := openat(a.dir, a.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// statInfo is what os.Lstat (os.Stat when following symlinks) returns,
// from an fstatat relative to the directory's descriptor.
type statInfo struct {
	name string
	mode fs.FileMode
	sys  syscall.Stat_t // archive/tar reads owners and devices from it
}

func (s *statInfo) Name() string       { return s.name }
func (s *statInfo) Size() int64        { return s.sys.Size }
func (s *statInfo) Mode() fs.FileMode  { return s.mode }
func (s *statInfo) ModTime() time.Time { return time.Unix(s.sys.Mtim.Unix()) }
func (s *statInfo) IsDir() bool        { return s.mode.IsDir() }
func (s *statInfo) Sys() any           { return &s.sys }

// statAt is c.stat for file p reached as a.
func (c *creator) statAt(p string, a at) (fs.FileInfo, error) {
	flags, op := unix.AT_SYMLINK_NOFOLLOW, "lstat"
	if c.opts.FollowSymlinks {
		flags, op = 0, "stat"
	}
	var u unix.Stat_t
	if err := retry(func() error { return unix.Fstatat(a.dir, a.name, &u, flags) }); err != nil {
		return nil, &fs.PathError{Op: op, Path: p, Err: err}
	}
	s := &statInfo{name: filepath.Base(p), mode: fs.FileMode(u.Mode & 0o777), sys: syscall.Stat_t{
		Dev: u.Dev, Ino: u.Ino, Nlink: u.Nlink, Mode: u.Mode, Uid: u.Uid, Gid: u.Gid, Rdev: u.Rdev,
		Size: u.Size, Blksize: u.Blksize, Blocks: u.Blocks,
		Atim: syscall.Timespec(u.Atim), Mtim: syscall.Timespec(u.Mtim), Ctim: syscall.Timespec(u.Ctim)}}
	switch u.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		s.mode |= fs.ModeDevice
	case unix.S_IFCHR:
		s.mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		s.mode |= fs.ModeDir
	case unix.S_IFIFO:
		s.mode |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		s.mode |= fs.ModeSymlink
	case unix.S_IFSOCK:
		s.mode |= fs.ModeSocket
	}
	if u.Mode&unix.S_ISUID != 0 {
		s.mode |= fs.ModeSetuid
	}
	if u.Mode&unix.S_ISGID != 0 {
		s.mode |= fs.ModeSetgid
	}
	if u.Mode&unix.S_ISVTX != 0 {
		s.mode |= fs.ModeSticky
	}
	return s, nil
}

// Create writes a tar stream of opts.Paths to w. Member names are the paths
// without a leading "/", like GNU tar.
func Create(ctx context.Context, w io.Writer, opts CreateOptions) (Stats, error) {
	m, err := NewMatcher(opts.Exclude)
	if err != nil {
		return Stats{}, err
	}
	c := &creator{ctx: ctx, tw: tar.NewWriter(w), opts: opts, ex: m,
		links: map[fileID]string{}, open: map[fileID]string{}, buf: make([]byte, 1<<20)}
	for _, p := range opts.Skip {
		if fi, err := os.Stat(p); err == nil {
			if id, ok := idOf(fi); ok {
				c.skip = append(c.skip, id)
			}
		}
	}
	for _, p := range opts.Paths {
		if p == "" {
			return c.st, errors.New("empty path in paths")
		}
		fi, err := c.stat(p)
		if err != nil {
			// A missing top-level path is a plan mistake, not a flaky file.
			return c.st, fmt.Errorf("path %s: %w", p, err)
		}
		if err := c.add(p, memberName(p), pathAt(p), fi); err != nil {
			return c.st, err
		}
	}
	if err := c.tw.Close(); err != nil {
		return c.st, err
	}
	return c.st, nil
}

// memberName maps a filesystem path to its name in the archive.
func memberName(p string) string {
	name := strings.TrimLeft(filepath.ToSlash(filepath.Clean(p)), "/")
	// Leading ".." would make an archive nobody can extract safely.
	for strings.HasPrefix(name, "../") {
		name = name[3:]
	}
	if name == "" || name == ".." {
		name = "."
	}
	return name
}

type fileID struct{ dev, ino uint64 }

func idOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{uint64(st.Dev), st.Ino}, true
}

// maxHeldDirs bounds the directory descriptors held while their entries
// are archived, one per level of nesting; deeper entries are reached by
// their whole path.
const maxHeldDirs = 64

type creator struct {
	ctx   context.Context
	tw    *tar.Writer
	opts  CreateOptions
	ex    *Matcher
	links map[fileID]string
	open  map[fileID]string // directories being archived: a loop returns to one
	buf   []byte
	st    Stats
	skip  []fileID
	held  int // directory descriptors held (see maxHeldDirs)
}

func (c *creator) stat(p string) (fs.FileInfo, error) {
	if c.opts.FollowSymlinks {
		return os.Stat(p)
	}
	return os.Lstat(p)
}

func (c *creator) unreadable(p string, err error) error {
	if c.opts.Unreadable == nil {
		return fmt.Errorf("cannot read %s: %w", p, err)
	}
	if err := c.opts.Unreadable(p, err); err != nil {
		return err
	}
	c.st.Skipped++
	return nil
}

// add archives file p as member name; a is how to reach it.
func (c *creator) add(p, name string, a at, fi fs.FileInfo) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	if name != "." && c.ex.Match(p, name) {
		return nil
	}
	if id, ok := idOf(fi); ok && slices.Contains(c.skip, id) {
		return nil
	}
	mode := fi.Mode()
	if mode&fs.ModeSocket != 0 {
		return nil // GNU tar ignores sockets too
	}
	link := ""
	if mode&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(p); err != nil {
			return c.unreadable(p, err)
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	hdr.Name = name
	// USTAR keeps whole seconds and archive/tar would round to the nearest
	// one, which can put an mtime in the future; truncate like GNU tar.
	hdr.ModTime = hdr.ModTime.Truncate(time.Second)
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	if fi.IsDir() {
		hdr.Name = strings.TrimSuffix(name, "/") + "/"
	}
	var file io.Reader
	if mode.IsRegular() {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			id, _ := idOf(fi)
			if first, seen := c.links[id]; seen {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				c.st.Hardlinks++
				return c.tw.WriteHeader(hdr)
			}
			c.links[id] = name
		}
		// Open before writing the header: an unreadable file must not
		// leave a header without content behind.
		var closeFile func()
		if file, closeFile, err = openFileReader(p, a); err != nil {
			return c.unreadable(p, err)
		}
		defer closeFile()
	}
	var entries []os.DirEntry
	dirAt := unix.AT_FDCWD // how the entries are reached
	if fi.IsDir() {
		// A symlink followed to an ancestor, or a bind mount of one, would
		// make the archive endless.
		if id, ok := idOf(fi); ok {
			if outer, loop := c.open[id]; loop {
				return c.unreadable(p, fmt.Errorf("file system loop: it is the directory %s again", outer))
			}
			c.open[id] = p
			defer delete(c.open, id)
		}
		d, err := openDir(p, a)
		if err == nil {
			if entries, err = d.ReadDir(-1); err != nil || c.held >= maxHeldDirs {
				d.Close()
			} else {
				dirAt = int(d.Fd())
				c.held++
				defer func() { c.held--; d.Close() }()
			}
		}
		if err != nil {
			return c.unreadable(p, err)
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	}
	if name != "." {
		if err := c.tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	switch {
	case file != nil:
		c.st.Files++
		return c.copyFile(p, file, hdr.Size)
	case fi.IsDir():
		if name != "." { // "." has no member of its own
			c.st.Dirs++
		}
		// filepath.Join and path.Join, without cleaning every entry's path
		dir, prefix := filepath.Clean(p), name+"/"
		switch dir {
		case ".":
			dir = ""
		case "/":
		default:
			dir += "/"
		}
		if name == "." {
			prefix = ""
		}
		for _, e := range entries {
			child := dir + e.Name()
			ca := at{dirAt, e.Name()}
			if dirAt == unix.AT_FDCWD {
				ca.name = child
			}
			cfi, err := c.statAt(child, ca)
			if err != nil {
				if err := c.unreadable(child, err); err != nil {
					return err
				}
				continue
			}
			if err := c.add(child, prefix+e.Name(), ca, cfi); err != nil {
				return err
			}
		}
	case mode&fs.ModeSymlink != 0:
		c.st.Symlinks++
	default:
		c.st.Other++
	}
	return nil
}

// copyFile writes exactly size bytes: a file that shrank while being read
// would otherwise shift every later member.
func (c *creator) copyFile(p string, f io.Reader, size int64) error {
	left := size
	for left > 0 {
		want := min(int64(len(c.buf)), left)
		n, err := io.ReadFull(f, c.buf[:want])
		if n > 0 {
			if _, werr := c.tw.Write(c.buf[:n]); werr != nil {
				return werr
			}
			left -= int64(n)
			c.st.Bytes += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("%s: file shrank while being archived (%d of %d bytes read)", p, size-left, size)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
	}
	return nil
}
