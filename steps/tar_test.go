package steps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

func TestTarStepExtractsWithStandardTools(t *testing.T) {
	src := tree(t, 3<<20)
	key, _ := filepath.Abs(filepath.Join(keys, "demo.agekey"))
	cases := []struct {
		name, ext, with, extract string
		tools                    []string
	}{
		{"zstd", "tar.zst", "", "zstd -d -c %s | tar -xpf - -C %s", []string{"zstd", "tar"}},
		{"gzip", "tar.gz", "compress: gzip", "tar -xzpf %s -C %s", []string{"tar", "gzip"}},
		{"none", "tar", "compress: none", "tar -xpf %s -C %s", []string{"tar"}},
		{"age-zstd", "tar.zst.age", "encrypt: {recipients: [" + pubKey(t) + "]}",
			"age -d -i " + key + " %s | zstd -d | tar -xpf - -C %s", []string{"age", "zstd", "tar"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out", "configs."+c.ext)
			res := mustRun(t, "tar", fmt.Sprintf("{paths: [%s], exclude: ['*/cache/*'], output: %s, %s}", src, out, c.with))
			if res["path"] != out || res["files"].(int) != 2 || res["size"].(int64) <= 0 {
				t.Fatalf("outputs %v", res)
			}
			dst := t.TempDir()
			shell(t, fmt.Sprintf(c.extract, out, dst), c.tools...)
			got := filepath.Join(dst, strings.TrimPrefix(src, "/"))
			// diff -r compares contents, symlink targets and the tree shape.
			os.Remove(filepath.Join(src, "var/cache/tmp.bin")) // excluded
			defer os.WriteFile(filepath.Join(src, "var/cache/tmp.bin"), []byte("cache"), 0o600)
			shell(t, fmt.Sprintf("diff -r --no-dereference %s %s", src, got), "diff")
			shell(t, fmt.Sprintf("cd %s && sha256sum -c %s.sha256", filepath.Dir(out), filepath.Base(out)), "sha256sum")
			fi, _ := os.Stat(filepath.Join(got, "etc/app/app.conf"))
			if fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %v", fi.Mode().Perm())
			}
		})
	}
}

func TestUntarStep(t *testing.T) {
	src := tree(t, 1<<20)
	key := filepath.Join(keys, "demo.agekey")
	t.Run("gnu-tar-gz", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "a.tar.gz")
		shell(t, fmt.Sprintf("tar -czf %s -C %s .", archive, src), "tar", "gzip")
		dst := filepath.Join(t.TempDir(), "restore")
		out := mustRun(t, "untar", fmt.Sprintf("{input: %s, target: %s}", archive, dst))
		if out["files"].(int) != 3 {
			t.Errorf("outputs %v", out)
		}
		shell(t, fmt.Sprintf("diff -r --no-dereference %s %s", src, dst), "diff")
	})
	t.Run("planrun-encrypted", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "a.tar.zst.age")
		mustRun(t, "tar", fmt.Sprintf("{paths: [%s], output: %s, encrypt: {recipients_file: %s}}", src, archive, filepath.Join(keys, "demo.agepub")))
		dst := t.TempDir()
		mustRun(t, "untar", fmt.Sprintf("{input: %s, target: %s, identity_file: %s, strip_components: %d}", archive, dst, key, strings.Count(src, "/")-1))
		shell(t, fmt.Sprintf("diff -r --no-dereference %s %s", src, filepath.Join(dst, "data")), "diff")
		env, _ := stepEnv(t)
		_, err := runStep(t, context.Background(), env, "untar", fmt.Sprintf("{input: %s, target: %s}", archive, t.TempDir()))
		if err == nil || !strings.Contains(err.Error(), "identity_file") {
			t.Fatalf("no key: %v", err)
		}
	})
}

// The fault tests: whatever stops a tar step, neither the final name nor
// a temporary file remains.
func TestTarStepTimeoutLeavesNothing(t *testing.T) {
	src := tree(t, 8<<20)
	dir := filepath.Join(t.TempDir(), "out")
	env, _ := stepEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	// Park the stream mid-way until the deadline passes.
	env.Progress = engine.NewProgress(func(int64) { <-ctx.Done() }, nil)
	_, err := runStep(t, ctx, env, "tar", fmt.Sprintf("{paths: [%s], output: %s/a.tar.zst}", src, dir))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
	assertOnly(t, dir)
}

// helperEnv makes the test binary act as a planrun-like process that runs
// one tar step and cancels it on SIGTERM, as the CLI does.
const helperEnv = "PLANRUN_STEPS_TEST_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(tarHelper(spec))
	}
	os.Exit(m.Run())
}

func tarHelper(with string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	env, _ := stepEnv(&testing.T{})
	once := false
	env.Progress = engine.NewProgress(func(int64) {
		if !once {
			once = true
			fmt.Println("streaming")
			<-ctx.Done() // hold the stream open until the signal arrives
		}
	}, nil)
	st, p := decode(&testing.T{}, "tar", with)
	_, err := st.Run(ctx, env, p)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	return 0
}

func TestTarStepSIGTERMLeavesNothing(t *testing.T) {
	src := tree(t, 8<<20)
	dir := filepath.Join(t.TempDir(), "out")
	os.MkdirAll(dir, 0o700)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+fmt.Sprintf("{paths: [%s], output: %s/a.tar.zst}", src, dir))
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || sc.Text() != "streaming" {
		cmd.Process.Kill()
		t.Fatalf("helper did not start streaming: %q", sc.Text())
	}
	// Mid-stream: a temporary file exists, the final name does not.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || !strings.Contains(entries[0].Name(), ".tmp-") {
		t.Fatalf("mid-stream directory: %v", entries)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	var rest []string
	for sc.Scan() {
		rest = append(rest, sc.Text())
	}
	err := cmd.Wait()
	if err == nil || !strings.Contains(strings.Join(rest, "\n"), "context canceled") {
		t.Fatalf("helper exit %v, output %v", err, rest)
	}
	assertOnly(t, dir)
}

func TestTarStepFullFilesystem(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		if testenv.InCI() {
			t.Fatalf("mount tmpfs: %v", err)
		}
		t.Skipf("cannot mount a small tmpfs: %v", err)
	}
	defer syscall.Unmount(dir, 0)
	src := tree(t, 12<<20)
	env, _ := stepEnv(t)
	_, err := runStep(t, context.Background(), env, "tar", fmt.Sprintf("{paths: [%s], output: %s/b/a.tar.zst}", src, dir))
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), "a.tar.zst") {
		t.Fatalf("want a clear ENOSPC error, got %v", err)
	}
	assertOnly(t, filepath.Join(dir, "b"))
}

func TestTarStepRefusesOverwriteAndMissingPath(t *testing.T) {
	src := tree(t, 1024)
	out := filepath.Join(t.TempDir(), "a.tar.zst")
	mustRun(t, "tar", fmt.Sprintf("{paths: [%s], output: %s}", src, out))
	env, _ := stepEnv(t)
	if _, err := runStep(t, context.Background(), env, "tar", fmt.Sprintf("{paths: [%s], output: %s}", src, out)); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("overwrite: %v", err)
	}
	missing := filepath.Join(src, "nope")
	out2 := filepath.Join(t.TempDir(), "b.tar.zst")
	if _, err := runStep(t, context.Background(), env, "tar", fmt.Sprintf("{paths: [%s], output: %s}", missing, out2)); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing path: %v", err)
	}
	assertOnly(t, filepath.Dir(out2))
}

func TestTarStepDoesNotArchiveItself(t *testing.T) {
	src := tree(t, 1<<20)
	out := filepath.Join(src, "backups", "self.tar.zst")
	mustRun(t, "tar", fmt.Sprintf("{paths: [%s], output: %s}", src, out))
	list := shell(t, "zstd -d -c "+out+" | tar -tf -", "zstd", "tar")
	if strings.Contains(list, "self.tar.zst") || !strings.Contains(list, "etc/app/app.conf") {
		t.Fatalf("listing:\n%s", list)
	}
}
