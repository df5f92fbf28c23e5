package tarball

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// maxCachedDirs bounds the open directory handles; archives list a
// directory's members together, so a small cache keeps every hit.
const maxCachedDirs = 256

// dirCache hands out descriptors of directories inside the target, keyed
// by their (cleaned, relative) member path. Each is opened relative to its
// already-verified parent with O_NOFOLLOW, so a lookup costs one openat
// instead of os.Root's walk of every component, and no symlink is ever
// followed on the fast path. A component that is a symlink goes through
// os.Root, which follows it only while it stays inside the target.
type dirCache struct {
	root   *os.Root
	rootFd int
	fds    map[string]int
	newf   map[int]newFiles // by descriptor, probed on first use
	// stale is set when an entry replaced a symlink that cached handles
	// may have been reached through; the cache is emptied before the next
	// entry (not mid-entry, when its handles are in use).
	stale bool
}

func newDirCache(root *os.Root) (*dirCache, error) {
	fd, err := dupFile(root.Open("."))
	if err != nil {
		return nil, err
	}
	return &dirCache{root: root, rootFd: fd, fds: map[string]int{}, newf: map[int]newFiles{}}, nil
}

// dupFile turns an *os.File into a descriptor this cache owns.
func dupFile(f *os.File, err error) (int, error) {
	if err != nil {
		return -1, err
	}
	defer f.Close()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("dup %s: %w", f.Name(), err)
	}
	return fd, nil
}

// trim empties the cache when it is stale or full; call it between
// entries only.
func (c *dirCache) trim() {
	if c.stale || len(c.fds) > maxCachedDirs {
		c.flush()
	}
}

func (c *dirCache) flush() {
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	clear(c.fds)
	clear(c.newf)
	c.stale = false
}

func (c *dirCache) close() {
	c.flush()
	unix.Close(c.rootFd)
}

// parent returns the directory holding name and name's last component.
func (c *dirCache) parent(name string, create bool) (int, string, error) {
	fd, err := c.dir(path.Dir(name), create)
	return fd, path.Base(name), err
}

// dir returns a descriptor of directory name ("." is the target),
// creating missing directories (0700) when create is set.
func (c *dirCache) dir(name string, create bool) (int, error) {
	if name == "." {
		return c.rootFd, nil
	}
	if fd, ok := c.fds[name]; ok {
		return fd, nil
	}
	pfd, err := c.dir(path.Dir(name), create)
	if err != nil {
		return -1, err
	}
	base := path.Base(name)
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := openat(pfd, base, flags, 0)
	if err == unix.ENOENT && create {
		if err = retry(func() error { return unix.Mkdirat(pfd, base, 0o700) }); err == nil || err == unix.EEXIST {
			fd, err = openat(pfd, base, flags, 0)
		}
	}
	if err == unix.ELOOP || err == unix.ENOTDIR {
		var s unix.Stat_t
		if serr := unix.Fstatat(pfd, base, &s, unix.AT_SYMLINK_NOFOLLOW); serr == nil && s.Mode&unix.S_IFMT != unix.S_IFLNK {
			return -1, fmt.Errorf("%s exists and is not a directory", name)
		}
		fd, err = c.viaRoot(name, create)
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return -1, err
		}
		return -1, fmt.Errorf("directory %s: %w", name, err)
	}
	c.fds[name] = fd
	return fd, nil
}

// viaRoot opens a directory whose path goes through a symlink: os.Root
// follows it if it stays inside the target and refuses it otherwise.
func (c *dirCache) viaRoot(name string, create bool) (int, error) {
	if create {
		if err := c.root.MkdirAll(name, 0o700); err != nil {
			return -1, err
		}
	}
	fd, err := dupFile(c.root.Open(name))
	if err != nil {
		return -1, err
	}
	var s unix.Stat_t
	if err := unix.Fstat(fd, &s); err != nil || s.Mode&unix.S_IFMT != unix.S_IFDIR {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: not a directory", name)
	}
	return fd, nil
}

// newFiles says what a file created in a directory gets without chown or
// chmod: the group (the directory's when it is setgid, else ours), and
// whether its mode is exactly the requested one less the umask (not when
// a default ACL decides instead, or when that cannot be told).
type newFiles struct {
	gid   int
	exact bool
}

// newFilesIn probes a directory descriptor once.
func (c *dirCache) newFilesIn(fd int) newFiles {
	if nf, ok := c.newf[fd]; ok {
		return nf
	}
	nf := newFiles{gid: os.Getegid()}
	var s unix.Stat_t
	if err := unix.Fstat(fd, &s); err == nil {
		if s.Mode&unix.S_ISGID != 0 {
			nf.gid = int(s.Gid)
		}
		_, err := unix.Fgetxattr(fd, "system.posix_acl_default", nil)
		nf.exact = err == unix.ENODATA || err == unix.EOPNOTSUPP
	}
	c.newf[fd] = nf
	return nf
}
