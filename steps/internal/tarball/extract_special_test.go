package tarball

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/planrun/planrun/internal/testenv"
)

// sparseFile writes a file of size bytes with data only at the given
// offsets: the rest are holes.
func sparseFile(t *testing.T, p string, size int64, data map[int64]string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, s := range data {
		if _, err := f.WriteAt([]byte(s), off); err != nil {
			t.Fatal(err)
		}
	}
}

func allocated(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// GNU tar --sparse writes type 'S' members (gnu) or PAX GNU.sparse.*
// records (posix); both used to be dropped or inflated.
func TestExtractGNUSparse(t *testing.T) {
	testenv.RequireTool(t, "tar")
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(src, 0o755)
	const mib = 1 << 20
	sparseFile(t, filepath.Join(src, "hole-at-end.img"), 16*mib, map[int64]string{mib: "first", 5*mib + 7: strings.Repeat("x", 9000)})
	sparseFile(t, filepath.Join(src, "data-at-end.img"), 8*mib, map[int64]string{0: "head", 8*mib - 4: "tail"})
	os.WriteFile(filepath.Join(src, "plain.txt"), []byte("not sparse\n"), 0o640)
	if allocated(t, filepath.Join(src, "hole-at-end.img")) >= 16*mib {
		t.Fatalf("the test file system does not keep holes")
	}
	for _, format := range []string{"gnu", "posix"} {
		t.Run(format, func(t *testing.T) {
			cmd := exec.Command("tar", "--sparse", "--format="+format, "-cf", "-", "-C", src, ".")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			archive, err := cmd.Output()
			if err != nil {
				t.Fatalf("tar: %v: %s", err, stderr.String())
			}
			// The archive really holds sparse members of the format under test.
			tr := tar.NewReader(bytes.NewReader(archive))
			sparse := 0
			for {
				hdr, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if hdr.Typeflag == tar.TypeGNUSparse || hdr.PAXRecords["GNU.sparse.major"] != "" || hdr.PAXRecords["GNU.sparse.numblocks"] != "" {
					sparse++
				}
			}
			if sparse != 2 {
				t.Fatalf("%d sparse members in GNU tar's %s archive, want 2", sparse, format)
			}
			dst := t.TempDir()
			st, err := Extract(context.Background(), bytes.NewReader(archive), dst, ExtractOptions{PreserveOwner: true})
			if err != nil {
				t.Fatal(err)
			}
			if st.Files != 3 || st.Bytes != 24*mib+11 || st.Skipped != 0 {
				t.Errorf("stats %+v", st)
			}
			for _, name := range []string{"hole-at-end.img", "data-at-end.img", "plain.txt"} {
				want, _ := os.ReadFile(filepath.Join(src, name))
				got, err := os.ReadFile(filepath.Join(dst, name))
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s: content differs (%d vs %d bytes, %v)", name, len(got), len(want), err)
				}
			}
			if a := allocated(t, filepath.Join(dst, "hole-at-end.img")); a > mib {
				t.Errorf("holes were filled: %d bytes allocated", a)
			}
			compareTrees(t, snapshot(t, src), snapshot(t, dst))
		})
	}
}

func specialTar(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "run/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "run/ctl.fifo", Typeflag: tar.TypeFifo, Mode: 0o620},
		{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
		{Name: "run/after.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("ok"))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestExtractSpecialFilesSkippedAndCounted(t *testing.T) {
	dst := t.TempDir()
	var logs bytes.Buffer
	st, err := Extract(context.Background(), bytes.NewReader(specialTar(t)), dst, ExtractOptions{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if st.Other != 2 || st.Skipped != 2 || st.Files != 1 {
		t.Errorf("stats %+v", st)
	}
	if _, err := os.Lstat(filepath.Join(dst, "run/ctl.fifo")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fifo created without create_special: %v", err)
	}
	if !strings.Contains(logs.String(), "run/ctl.fifo") || !strings.Contains(logs.String(), "dev/null") {
		t.Errorf("no warning naming the skipped files:\n%s", logs.String())
	}
}

func TestExtractSpecialFilesCreated(t *testing.T) {
	dst := t.TempDir()
	archive := specialTar(t)
	if os.Geteuid() != 0 {
		// Devices need CAP_MKNOD: only the FIFO is checked without root.
		archive = archiveWithout(t, archive, "dev/null")
	}
	st, err := Extract(context.Background(), bytes.NewReader(archive), dst, ExtractOptions{CreateSpecial: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 0 {
		t.Errorf("stats %+v", st)
	}
	fi, err := os.Lstat(filepath.Join(dst, "run/ctl.fifo"))
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o620 {
		t.Fatalf("fifo: %v %v", fi, err)
	}
	if os.Geteuid() == 0 {
		fi, err := os.Lstat(filepath.Join(dst, "dev/null"))
		if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			t.Fatalf("char device: %v %v", fi, err)
		}
		if rdev := fi.Sys().(*syscall.Stat_t).Rdev; rdev != 1<<8|3 {
			t.Errorf("device number %#x", rdev)
		}
	}
	// An existing node is not replaced without overwrite, and never followed.
	_, err = Extract(context.Background(), bytes.NewReader(archive), dst, ExtractOptions{CreateSpecial: true})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second extraction: %v", err)
	}
}

// archiveWithout copies an archive without one member.
func archiveWithout(t *testing.T, archive []byte, drop string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if h.Name == drop {
			continue
		}
		tw.WriteHeader(h)
		io.Copy(tw, tr)
	}
	tw.Close()
	return buf.Bytes()
}

func TestExtractUnknownTypeFails(t *testing.T) {
	for _, typ := range []byte{'D', 'M', 'Z'} {
		dst := t.TempDir()
		_, err := Extract(context.Background(), bytes.NewReader(evilTar(t, tarEntry{name: "x", typ: typ})), dst, ExtractOptions{})
		if err == nil || !strings.Contains(err.Error(), "unsupported entry type") {
			t.Errorf("type %q: %v", typ, err)
		}
	}
}

// The directory-handle fast path: escapes through symlinks planted deep
// in already-cached directories are refused, links that stay inside the
// target are followed as before, and a replaced symlink is not reused.
func TestExtractFastPathEscapes(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	os.MkdirAll(outside, 0o700)
	reg, sym, dir := byte(tar.TypeReg), byte(tar.TypeSymlink), byte(tar.TypeDir)
	warm := []tarEntry{{name: "a/", typ: dir}, {name: "a/b/", typ: dir}, {name: "a/b/f1", typ: reg}}
	cases := map[string][]tarEntry{
		"deep-relative": append(warm[:3:3], tarEntry{name: "a/b/up", link: "../../../outside", typ: sym}, tarEntry{name: "a/b/up/new", typ: reg}),
		"deep-absolute": append(warm[:3:3], tarEntry{name: "a/b/abs", link: outside, typ: sym}, tarEntry{name: "a/b/abs/new", typ: reg}),
		"deep-dir":      append(warm[:3:3], tarEntry{name: "a/b/abs", link: outside, typ: sym}, tarEntry{name: "a/b/abs/sub/", typ: dir}),
		"deep-hardlink": append(warm[:3:3], tarEntry{name: "a/b/abs", link: outside, typ: sym}, tarEntry{name: "a/h", link: "a/b/abs/victim", typ: byte(tar.TypeLink)}),
		"parent-file":   append(warm[:3:3], tarEntry{name: "a/b/f1/new", typ: reg}),
	}
	os.WriteFile(filepath.Join(outside, "victim"), []byte("original"), 0o600)
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			for _, overwrite := range []bool{false, true} {
				target := filepath.Join(base, name, "t")
				_, err := Extract(context.Background(), bytes.NewReader(evilTar(t, entries...)), target, ExtractOptions{Overwrite: overwrite})
				if err == nil {
					t.Fatalf("overwrite=%v: extraction succeeded", overwrite)
				}
				if !errors.Is(err, ErrEscape) && !strings.Contains(err.Error(), "not a directory") && !strings.Contains(err.Error(), "already exists") {
					t.Errorf("unclear error: %v", err)
				}
				if entries, _ := os.ReadDir(outside); len(entries) != 1 {
					t.Fatalf("files appeared outside: %v", entries)
				}
				if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "original" {
					t.Fatalf("victim modified")
				}
			}
		})
	}
	t.Run("inside-links-followed-and-replaced", func(t *testing.T) {
		target := filepath.Join(base, "inside")
		archive := evilTar(t,
			tarEntry{name: "d1/", typ: dir}, tarEntry{name: "d2/", typ: dir},
			tarEntry{name: "l", link: "d1", typ: sym}, tarEntry{name: "l/f", typ: reg},
			tarEntry{name: "l", link: "d2", typ: sym}, tarEntry{name: "l/g", typ: reg})
		if _, err := Extract(context.Background(), bytes.NewReader(archive), target, ExtractOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"d1/f", "d2/g"} {
			if b, err := os.ReadFile(filepath.Join(target, p)); err != nil || string(b) != "pwned" {
				t.Errorf("%s: %q %v", p, b, err)
			}
		}
		if _, err := os.Stat(filepath.Join(target, "d1/g")); err == nil {
			t.Errorf("l/g went through the replaced link into d1")
		}
	})
}

// Files are created with their final permissions and chown/chmod are
// skipped when they would change nothing: check that a umask, a setgid
// directory and a default ACL (which override what a new file gets)
// still end with the archive's owner and mode.
func TestExtractModesOwnersDespiteInheritance(t *testing.T) {
	dst := t.TempDir()
	for _, d := range []string{"sg", "acl"} {
		if err := os.Mkdir(filepath.Join(dst, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	asRoot := os.Geteuid() == 0
	if asRoot {
		os.Chown(filepath.Join(dst, "sg"), 0, 4242)
		os.Chmod(filepath.Join(dst, "sg"), os.ModeSetgid|0o755)
	}
	// Default ACL user::rw- group::r-- other::--- (binary xattr, version 2).
	acl := []byte{2, 0, 0, 0}
	for _, e := range [][2]uint16{{0x01, 6}, {0x04, 4}, {0x20, 0}} {
		acl = append(acl, byte(e[0]), byte(e[0]>>8), byte(e[1]), byte(e[1]>>8), 0xff, 0xff, 0xff, 0xff)
	}
	aclOK := syscall.Setxattr(filepath.Join(dst, "acl"), "system.posix_acl_default", acl, 0) == nil
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	extract := func(umask int, names ...string) {
		t.Helper()
		syscall.Umask(umask)
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, name := range names {
			mode := int64(0o644)
			if name == "suid" {
				mode = 0o4755
			}
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: 1, Uid: 0, Gid: 0})
			tw.Write([]byte("x"))
		}
		tw.Close()
		if _, err := Extract(context.Background(), &buf, dst, ExtractOptions{PreserveOwner: true}); err != nil {
			t.Fatal(err)
		}
	}
	extract(0o077, "top.txt")
	extract(0o022, "sg/f.txt", "acl/f.txt", "suid")
	check := func(name string, mode os.FileMode) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(dst, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), mode)
		}
		if st := fi.Sys().(*syscall.Stat_t); asRoot && (st.Uid != 0 || st.Gid != 0) {
			t.Errorf("%s: owner %d:%d, want 0:0", name, st.Uid, st.Gid)
		}
	}
	check("top.txt", 0o644)
	check("sg/f.txt", 0o644)
	check("suid", 0o755|os.ModeSetuid)
	if aclOK {
		check("acl/f.txt", 0o644)
	} else {
		t.Log("no default ACL support here: the ACL case was not checked")
	}
}
