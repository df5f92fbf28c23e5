package tarball

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/planrun/planrun/internal/testenv"
)

// makeTree builds a tree with everything tar must keep.
func makeTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "src")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc", "app", "cache"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "empty", "deeper"), 0o750))
	must(os.WriteFile(filepath.Join(root, "etc", "app", "app.conf"), []byte("port = 80\n"), 0o640))
	must(os.WriteFile(filepath.Join(root, "etc", "app", "secret.key"), []byte("k"), 0o600))
	must(os.WriteFile(filepath.Join(root, "etc", "app", "cache", "junk"), []byte("junk"), 0o644))
	must(os.WriteFile(filepath.Join(root, "etc", "run.sh"), []byte("#!/bin/sh\n"), 0o755))
	long := strings.Repeat("long-name-", 12) // > 100 bytes: needs PAX/GNU records
	must(os.WriteFile(filepath.Join(root, "etc", long), bytes.Repeat([]byte("z"), 70000), 0o644))
	must(os.Symlink("app/app.conf", filepath.Join(root, "etc", "link.conf")))
	must(os.Symlink("/etc/hostname", filepath.Join(root, "etc", "abs-link")))
	must(os.Link(filepath.Join(root, "etc", "run.sh"), filepath.Join(root, "etc", "run-hard.sh")))
	if os.Geteuid() == 0 {
		must(os.Lchown(filepath.Join(root, "etc", "app", "app.conf"), 1234, 5678))
	}
	old := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, p := range []string{"etc/app/app.conf", "etc/run.sh", "etc/app", "empty/deeper"} {
		must(os.Chtimes(filepath.Join(root, p), old, old))
	}
	return root
}

type entry struct {
	mode  fs.FileMode
	mtime int64
	uid   uint32
	link  string
	data  string
	ino   uint64
}

// snapshot describes a tree for comparison (dir mtimes included).
func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, _ := os.Lstat(p)
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{mode: fi.Mode(), mtime: fi.ModTime().Unix(), uid: st.Uid, ino: st.Ino}
		if fi.Mode()&fs.ModeSymlink != 0 {
			e.link, _ = os.Readlink(p)
			e.mtime = 0 // symlink times are not restored by every tool
		} else if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			e.data = string(b)
		}
		out[rel] = e
		return nil
	})
	return out
}

func compareTrees(t *testing.T, want, got map[string]entry) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s missing after extraction", name)
			continue
		}
		wi, gi := w.ino, g.ino
		w.ino, g.ino = 0, 0
		if w != g {
			t.Errorf("%s: got %+v, want %+v", name, g, w)
		}
		_, _ = wi, gi
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s extracted but not in the source", name)
		}
	}
}

func sameInode(t *testing.T, a, b string) {
	t.Helper()
	fa, _ := os.Stat(a)
	fb, _ := os.Stat(b)
	if !os.SameFile(fa, fb) {
		t.Errorf("%s and %s are not hard-linked", a, b)
	}
}

func TestCreateExtractsWithGNUTar(t *testing.T) {
	testenv.RequireTool(t, "tar")
	src := makeTree(t)
	var buf bytes.Buffer
	st, err := Create(context.Background(), &buf, CreateOptions{Paths: []string{src}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 5 || st.Hardlinks != 1 || st.Symlinks != 2 || st.Dirs != 6 {
		t.Errorf("stats %+v", st)
	}
	dst := t.TempDir()
	cmd := exec.Command("tar", "-xpf", "-", "-C", dst)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("GNU tar: %v: %s", err, out)
	}
	got := filepath.Join(dst, strings.TrimPrefix(src, "/"))
	compareTrees(t, snapshot(t, src), snapshot(t, got))
	sameInode(t, filepath.Join(got, "etc/run.sh"), filepath.Join(got, "etc/run-hard.sh"))
}

func TestExtractsGNUTarArchives(t *testing.T) {
	testenv.RequireTool(t, "tar")
	src := makeTree(t)
	for _, format := range []string{"gnu", "posix", "ustar-short"} {
		t.Run(format, func(t *testing.T) {
			args := []string{"-cf", "-", "-C", src, "."}
			if format == "ustar-short" {
				args = []string{"--format=ustar", "-cf", "-", "-C", src, "etc/app", "empty"}
			} else {
				args = append([]string{"--format=" + format}, args...)
			}
			cmd := exec.Command("tar", args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			archive, err := cmd.Output()
			if err != nil {
				t.Fatalf("tar: %v: %s", err, stderr.String())
			}
			dst := t.TempDir()
			if _, err := Extract(context.Background(), bytes.NewReader(archive), dst, ExtractOptions{PreserveOwner: true}); err != nil {
				t.Fatal(err)
			}
			want := snapshot(t, src)
			if format == "ustar-short" {
				for k := range want {
					if !strings.HasPrefix(k, "etc/app") && !strings.HasPrefix(k, "empty") || k == "etc" {
						delete(want, k)
					}
				}
			} else {
				sameInode(t, filepath.Join(dst, "etc/run.sh"), filepath.Join(dst, "etc/run-hard.sh"))
			}
			got := snapshot(t, dst)
			if format == "ustar-short" {
				delete(got, "etc") // parent made by extraction, not in the archive
			}
			compareTrees(t, want, got)
		})
	}
}

func TestExtractRefusesExisting(t *testing.T) {
	src := makeTree(t)
	var buf bytes.Buffer
	if _, err := Create(context.Background(), &buf, CreateOptions{Paths: []string{filepath.Join(src, "etc", "app")}}); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	archive := buf.Bytes()
	if _, err := Extract(context.Background(), bytes.NewReader(archive), dst, ExtractOptions{StripComponents: strings.Count(src, "/") + 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "app", "app.conf")); err != nil {
		t.Fatalf("strip_components: %v", err)
	}
	_, err := Extract(context.Background(), bytes.NewReader(archive), dst, ExtractOptions{StripComponents: strings.Count(src, "/") + 1})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second extraction: %v", err)
	}
	if _, err := Extract(context.Background(), bytes.NewReader(archive), dst, ExtractOptions{StripComponents: strings.Count(src, "/") + 1, Overwrite: true}); err != nil {
		t.Fatalf("overwrite: %v", err)
	}
}

type tarEntry struct {
	name, link string
	typ        byte
}

func evilTar(t *testing.T, entries ...tarEntry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644}
		if e.typ == tar.TypeReg {
			h.Size = 5
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte("pwned"))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestExtractRejectsMaliciousArchives(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	os.MkdirAll(outside, 0o700)
	victim := filepath.Join(outside, "victim")
	os.WriteFile(victim, []byte("original"), 0o600)
	reg, sym, hard, dir := byte(tar.TypeReg), byte(tar.TypeSymlink), byte(tar.TypeLink), byte(tar.TypeDir)
	cases := []struct {
		name    string
		entries []tarEntry
		// With overwrite the planted symlink is replaced, not followed.
		safeWithOverwrite bool
	}{
		{"dotdot", []tarEntry{{name: "ok.txt", typ: reg}, {name: "../outside/victim", typ: reg}}, false},
		{"dotdot-inside-path", []tarEntry{{name: "a/../../outside/new", typ: reg}}, false},
		{"absolute", []tarEntry{{name: victim, typ: reg}}, false},
		{"symlink-dir-escape", []tarEntry{{name: "esc", link: outside, typ: sym}, {name: "esc/victim", typ: reg}}, false},
		{"symlink-relative-escape", []tarEntry{{name: "d", typ: dir}, {name: "d/esc", link: "../../outside", typ: sym}, {name: "d/esc/new", typ: reg}}, false},
		{"symlink-file-then-overwrite", []tarEntry{{name: "f", link: victim, typ: sym}, {name: "f", typ: reg}}, true},
		{"symlink-then-dir", []tarEntry{{name: "esc", link: outside, typ: sym}, {name: "esc/", typ: dir}}, false},
		{"hardlink-escape", []tarEntry{{name: "h", link: "../outside/victim", typ: hard}}, false},
		{"hardlink-through-symlink", []tarEntry{{name: "esc", link: outside, typ: sym}, {name: "h", link: "esc/victim", typ: hard}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			target := filepath.Join(base, "target-"+c.name)
			for _, overwrite := range []bool{false, true} {
				_, err := Extract(context.Background(), bytes.NewReader(evilTar(t, c.entries...)), target, ExtractOptions{Overwrite: overwrite})
				if overwrite && c.safeWithOverwrite {
					if fi, lerr := os.Lstat(filepath.Join(target, "f")); err != nil || lerr != nil || !fi.Mode().IsRegular() {
						t.Fatalf("replacing a planted symlink: %v / %v", err, fi)
					}
				} else if err == nil {
					t.Fatalf("overwrite=%v: extraction succeeded", overwrite)
				}
				if err != nil && !overwrite {
					t.Logf("%v", err)
				}
				if err != nil && !errors.Is(err, ErrEscape) && !strings.Contains(err.Error(), "already exists") && !strings.Contains(err.Error(), "not a directory") {
					t.Errorf("overwrite=%v: unclear error: %v", overwrite, err)
				}
				if b, _ := os.ReadFile(victim); string(b) != "original" {
					t.Fatalf("victim modified: %q", b)
				}
				entries, _ := os.ReadDir(outside)
				if len(entries) != 1 {
					t.Fatalf("files appeared outside: %v", entries)
				}
				if fi, _ := os.Lstat(victim); fi.Mode().Perm() != 0o600 {
					t.Fatalf("victim mode changed: %v", fi.Mode())
				}
			}
		})
	}
}

func TestExclude(t *testing.T) {
	m, err := NewMatcher([]string{"*.sock", "*/cache/*", "secret.key", "/abs/only", "etc/app/[ab]pp.conf"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path, name string
		want       bool
	}{
		{"/run/x/app.sock", "run/x/app.sock", true},
		{"/var/app/cache/a/b", "var/app/cache/a/b", true},
		{"/var/app/cache", "var/app/cache", false}, // the dir itself stays (empty), like GNU tar
		{"/etc/app/secret.key", "etc/app/secret.key", true},
		{"/etc/app/secret.key.bak", "etc/app/secret.key.bak", false},
		{"/abs/only", "abs/only", true},
		{"/etc/app/app.conf", "etc/app/app.conf", true},
		{"/etc/app/cpp.conf", "etc/app/cpp.conf", false},
		{"/etc/nginx/nginx.conf", "etc/nginx/nginx.conf", false},
	}
	for _, c := range cases {
		if got := m.Match(c.path, c.name); got != c.want {
			t.Errorf("Match(%q) = %v, want %v", c.path, got, c.want)
		}
	}
	if _, err := NewMatcher([]string{"[unclosed"}); err == nil {
		t.Error("bad glob accepted")
	}
}

func TestCreateExcludes(t *testing.T) {
	src := makeTree(t)
	var buf bytes.Buffer
	if _, err := Create(context.Background(), &buf, CreateOptions{Paths: []string{src}, Exclude: []string{"*/cache/*", "*.key"}}); err != nil {
		t.Fatal(err)
	}
	names := listNames(t, buf.Bytes())
	for _, n := range names {
		if strings.HasSuffix(n, "junk") || strings.HasSuffix(n, ".key") {
			t.Errorf("excluded %s archived", n)
		}
	}
	if !contains(names, strings.TrimPrefix(src, "/")+"/etc/app/cache/") {
		t.Errorf("cache dir itself should stay: %v", names)
	}
}

func listNames(t *testing.T, archive []byte) []string {
	tr := tar.NewReader(bytes.NewReader(archive))
	var out []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		out = append(out, h.Name)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestUnreadableFiles(t *testing.T) {
	src := makeTree(t)
	bad := filepath.Join(src, "etc", "app", "app.conf")
	openFile = func(name string) (*os.File, error) {
		if name == bad {
			return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EACCES}
		}
		return os.Open(name)
	}
	defer func() { openFile = nil }()
	_, err := Create(context.Background(), &bytes.Buffer{}, CreateOptions{Paths: []string{src}})
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("want an error naming %s, got %v", bad, err)
	}
	var warned []string
	var buf bytes.Buffer
	st, err := Create(context.Background(), &buf, CreateOptions{Paths: []string{src}, Unreadable: func(p string, err error) error {
		warned = append(warned, p)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 1 || len(warned) != 1 || warned[0] != bad {
		t.Fatalf("skipped %d, warned %v", st.Skipped, warned)
	}
	if contains(listNames(t, buf.Bytes()), strings.TrimPrefix(bad, "/")) {
		t.Error("unreadable file has a header in the archive")
	}
}

// follow_symlinks with a link back to an ancestor: an error naming the
// loop (or, with on_unreadable: warn, one skipped entry), never an endless
// archive.
func TestFollowSymlinksLoop(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(src, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "a", "b", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	loop := filepath.Join(src, "a", "b", "up")
	if err := os.Symlink("../..", loop); err != nil {
		t.Fatal(err)
	}
	_, err := Create(context.Background(), &bytes.Buffer{}, CreateOptions{Paths: []string{src}, FollowSymlinks: true})
	if err == nil || !strings.Contains(err.Error(), loop) || !strings.Contains(err.Error(), "file system loop") {
		t.Fatalf("want a loop error naming %s, got %v", loop, err)
	}
	var buf bytes.Buffer
	st, err := Create(context.Background(), &buf, CreateOptions{Paths: []string{src}, FollowSymlinks: true,
		Unreadable: func(string, error) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	names := listNames(t, buf.Bytes())
	if st.Skipped != 1 || st.Files != 1 || contains(names, strings.TrimPrefix(loop, "/")+"/") {
		t.Fatalf("skipped %d, files %d, names %v", st.Skipped, st.Files, names)
	}
	// Without following, the link is archived as a link.
	buf.Reset()
	st, err = Create(context.Background(), &buf, CreateOptions{Paths: []string{src}})
	if err != nil || st.Symlinks != 1 {
		t.Fatalf("without follow: %v, %d symlinks", err, st.Symlinks)
	}
}

func TestMemberName(t *testing.T) {
	for in, want := range map[string]string{"/etc/nginx": "etc/nginx", "/": ".", "data/": "data", "../x": "x", "./a/b": "a/b"} {
		if got := memberName(in); got != want {
			t.Errorf("memberName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestListDetectsTruncation(t *testing.T) {
	src := makeTree(t)
	var buf bytes.Buffer
	if _, err := Create(context.Background(), &buf, CreateOptions{Paths: []string{src}}); err != nil {
		t.Fatal(err)
	}
	if _, err := List(context.Background(), bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("clean archive: %v", err)
	}
	if _, err := List(context.Background(), bytes.NewReader(buf.Bytes()[:buf.Len()/2])); err == nil {
		t.Fatal("truncated archive listed cleanly")
	}
}

// Entries are stat'ed relative to their directory's descriptor, not with
// os.Lstat: every header must still be what os.Lstat's FileInfo gives,
// for every kind of file and mode bit, and past maxHeldDirs levels (where
// entries are reached by their whole path again).
func TestCreateHeadersMatchLstat(t *testing.T) {
	src := makeTree(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(src, "suid"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Chmod(filepath.Join(src, "suid"), 0o755|os.ModeSetuid))
	must(os.Mkdir(filepath.Join(src, "sticky"), 0o755))
	must(os.Chmod(filepath.Join(src, "sticky"), 0o777|os.ModeSticky))
	must(os.Mkdir(filepath.Join(src, "sgid"), 0o755))
	must(os.Chmod(filepath.Join(src, "sgid"), 0o2750))
	must(syscall.Mkfifo(filepath.Join(src, "fifo"), 0o620))
	if os.Geteuid() == 0 {
		must(syscall.Mknod(filepath.Join(src, "null"), syscall.S_IFCHR|0o666, 1<<8|3))
	}
	deep := src
	for i := 0; i < maxHeldDirs+5; i++ {
		deep = filepath.Join(deep, "d")
	}
	must(os.MkdirAll(deep, 0o755))
	must(os.WriteFile(filepath.Join(deep, "bottom"), []byte("deep"), 0o600))

	var buf bytes.Buffer
	if _, err := Create(context.Background(), &buf, CreateOptions{Paths: []string{src}}); err != nil {
		t.Fatal(err)
	}
	seen := 0
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := "/" + strings.TrimSuffix(h.Name, "/")
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		want, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeLink {
			continue // the second name of a hard link
		}
		if h.Typeflag != want.Typeflag || h.Mode != want.Mode || h.Uid != want.Uid || h.Gid != want.Gid ||
			h.Uname != want.Uname || h.Gname != want.Gname || h.Size != want.Size || h.Linkname != want.Linkname ||
			h.Devmajor != want.Devmajor || h.Devminor != want.Devminor || !h.ModTime.Equal(want.ModTime.Truncate(time.Second)) {
			t.Errorf("%s: header %+v, want (from os.Lstat) %+v", p, h, want)
		}
		seen++
	}
	want := 18 + maxHeldDirs + 5 // makeTree's, the new ones, the deep ones
	if os.Geteuid() == 0 {
		want++ // the device node
	}
	if seen != want {
		t.Errorf("%d members checked, want %d", seen, want)
	}
}
