package steps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/childenv"
	"github.com/planrun/planrun/steps/internal/proc"
)

// resticCall holds what every restic invocation of one step shares.
type resticCall struct {
	env     *engine.Env
	bin     string
	environ []string
	repo    string
}

// newResticCall builds restic's environment: repository, password and
// cache by env vars (restic reads RESTIC_*), never argv; the repository
// URL may embed credentials, so it becomes a secret.
func newResticCall(env *engine.Env, p *ResticParams) (*resticCall, error) {
	environ := append([]string(nil), env.Environ...)
	repo := p.Repository
	if repo == "" {
		repo = env.Getenv("RESTIC_REPOSITORY")
	}
	if repo == "" {
		if f := env.Getenv("RESTIC_REPOSITORY_FILE"); f != "" {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("restic: RESTIC_REPOSITORY_FILE: %w", err)
			}
			repo = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
		}
	}
	if repo == "" {
		return nil, errors.New("restic: no repository: set the repository param or RESTIC_REPOSITORY")
	}
	// Only credentials inside the repository URL are secret: masking the
	// whole path would hide it from logs and block it from other steps' argv.
	env.Secrets.Add(engine.URIPasswords(repo)...)
	environ = childenv.Set(childenv.Unset(environ, "RESTIC_REPOSITORY_FILE"), "RESTIC_REPOSITORY", repo)

	if p.PasswordFile != "" {
		if _, err := os.Stat(p.PasswordFile); err != nil {
			return nil, fmt.Errorf("restic: password_file: %w", err)
		}
		environ = childenv.Set(childenv.Unset(environ, "RESTIC_PASSWORD", "RESTIC_PASSWORD_COMMAND"),
			"RESTIC_PASSWORD_FILE", p.PasswordFile)
	} else if env.Getenv("RESTIC_PASSWORD_FILE") == "" && env.Getenv("RESTIC_PASSWORD") == "" &&
		env.Getenv("RESTIC_PASSWORD_COMMAND") == "" {
		// Without one restic would read the password from stdin: our data.
		return nil, errors.New("restic: no repository password: set password_file or RESTIC_PASSWORD_FILE / RESTIC_PASSWORD in the environment")
	}
	if pw := env.Getenv("RESTIC_PASSWORD"); pw != "" {
		env.Secrets.Add(pw)
	}
	if p.CacheDir != "" {
		environ = childenv.Set(environ, "RESTIC_CACHE_DIR", p.CacheDir)
	}
	if strings.HasPrefix(repo, "rclone:") {
		// restic runs rclone, whose S3 client (1.60) fails on AWS_CA_BUNDLE.
		environ = childenv.Unset(environ, "AWS_CA_BUNDLE")
	}
	env.Secrets.AddEnv(environ)
	bin := p.Binary
	if bin == "" {
		bin = "restic"
	}
	return &resticCall{env: env, bin: bin, environ: environ, repo: repo}, nil
}

// run runs restic with args; stdout (if non-nil) receives its output.
func (c *resticCall) run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) (proc.Result, error) {
	c.env.Log.Info("run", "cmd", proc.CommandLine(c.env.Secrets, c.bin, args...))
	return proc.Run(ctx, proc.Cmd{
		Name: c.bin, Args: args, Env: c.environ, Stdin: stdin, Stdout: stdout, Secrets: c.env.Secrets,
	})
}

// output runs restic and returns its whole stdout (bounded).
func (c *resticCall) output(ctx context.Context, args ...string) ([]byte, proc.Result, error) {
	var buf boundedBuffer
	res, err := c.run(ctx, args, nil, &buf)
	return buf.Bytes(), res, err
}

// boundedBuffer keeps the first 64 MiB written (restic JSON listings).
type boundedBuffer struct{ bytes.Buffer }

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := 64<<20 - b.Len(); room < len(p) {
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

var resticVersionRe = regexp.MustCompile(`restic (\d+)\.(\d+)`)

// version returns restic's major and minor version.
func (c *resticCall) version(ctx context.Context) (int, int, error) {
	res, err := proc.Run(ctx, proc.Cmd{Name: c.bin, Args: []string{"version"}, Env: c.environ, Secrets: c.env.Secrets})
	if err != nil {
		return 0, 0, err
	}
	m := resticVersionRe.FindStringSubmatch(res.Stdout)
	if m == nil {
		return 0, 0, fmt.Errorf("restic version: unexpected output %q", strings.TrimSpace(res.Stdout))
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major, minor, nil
}

// hasStdinFromCommand: restic 0.17 added backup --stdin-from-command.
func hasStdinFromCommand(major, minor int) bool { return major > 0 || minor >= 17 }

// --- argv builders (pure: shared by Run and Preview) ---

func appendEach(args []string, flag string, vals []string) []string {
	for _, v := range vals {
		args = append(args, flag, v)
	}
	return args
}

// filterArgs are the snapshot filters of forget, snapshots and restore.
func (p *ResticParams) filterArgs(args []string) []string {
	args = appendEach(args, "--tag", p.Tags)
	if p.Host != "" {
		args = append(args, "--host", p.Host)
	}
	return args
}

// stdinName is the file name of a stdin backup inside the snapshot.
func (p *ResticParams) stdinName() string {
	if p.StdinFilename != "" {
		return p.StdinFilename
	}
	if p.StdinFile != "" {
		name := filepath.Base(p.StdinFile)
		for _, ext := range []string{".age", ".zst", ".gz"} {
			name = strings.TrimSuffix(name, ext)
		}
		return name
	}
	return "stdin"
}

// backupArgs builds `backup`; mode is "paths", "stdin" (we feed stdin) or
// "from-command" (restic >= 0.17 runs stdin_command itself).
func (p *ResticParams) backupArgs(mode string) []string {
	args := []string{"backup", "--json"}
	args = appendEach(args, "--tag", p.Tags)
	if p.Host != "" {
		args = append(args, "--host", p.Host)
	}
	switch mode {
	case "stdin":
		return append(args, "--stdin", "--stdin-filename", p.stdinName())
	case "from-command":
		args = append(args, "--stdin-from-command", "--stdin-filename", p.stdinName(), "--")
		return append(args, p.StdinCommand...)
	}
	args = appendEach(args, "--exclude", p.Exclude)
	args = appendEach(args, "--exclude-file", p.ExcludeFile)
	for _, path := range p.Paths {
		if strings.HasPrefix(path, "-") {
			args = append(args, "--")
			break
		}
	}
	return append(args, p.Paths...)
}

// resticWithin renders a duration in restic's y/m/d/h form (days + hours).
func resticWithin(d engine.Duration) string {
	h := int64(time.Duration(d) / time.Hour)
	if h < 1 {
		h = 1
	}
	if days := h / 24; days > 0 {
		return fmt.Sprintf("%dd%dh", days, h%24)
	}
	return fmt.Sprintf("%dh", h)
}

func (p *ResticParams) forgetArgs() []string {
	args := []string{"forget", "--json"}
	for _, k := range []struct {
		flag string
		n    int
	}{
		{"--keep-last", p.KeepLast}, {"--keep-hourly", p.KeepHourly}, {"--keep-daily", p.KeepDaily},
		{"--keep-weekly", p.KeepWeekly}, {"--keep-monthly", p.KeepMonthly}, {"--keep-yearly", p.KeepYearly},
	} {
		if k.n > 0 {
			args = append(args, k.flag, strconv.Itoa(k.n))
		}
	}
	if p.KeepWithin > 0 {
		args = append(args, "--keep-within", resticWithin(p.KeepWithin))
	}
	args = append(args, "--group-by", p.GroupBy)
	args = p.filterArgs(args)
	if p.Prune {
		args = append(args, "--prune")
	}
	return args
}

func (p *ResticParams) checkArgs() []string {
	args := []string{"check"}
	if p.ReadDataSubset != "" {
		args = append(args, "--read-data-subset", p.ReadDataSubset)
	}
	return args
}

func (p *ResticParams) snapshotsArgs() []string {
	return p.filterArgs([]string{"snapshots", "--json"})
}

func (p *ResticParams) restoreArgs() []string {
	snap := p.Snapshot
	if snap == "" {
		snap = "latest"
	}
	args := []string{"restore", snap, "--target", p.Target}
	args = appendEach(args, "--include", p.Include)
	args = appendEach(args, "--exclude", p.Exclude)
	return p.filterArgs(args)
}

func previewRestic(env *engine.Env, p *ResticParams) []string {
	bin := p.Binary
	if bin == "" {
		bin = "restic"
	}
	cl := func(args ...string) string { return proc.CommandLine(env.Secrets, bin, args...) }
	switch p.Command {
	case "init":
		return []string{"run: " + cl("init") + " (only if the repository does not exist)"}
	case "backup":
		switch {
		case p.StdinFile != "":
			return []string{"read: " + p.StdinFile + " (decrypted, decompressed) | " + cl(p.backupArgs("stdin")...)}
		case len(p.StdinCommand) > 0:
			return []string{"run: " + proc.CommandLine(env.Secrets, p.StdinCommand[0], p.StdinCommand[1:]...) +
				" | " + cl(p.backupArgs("stdin")...)}
		}
		return []string{"run: " + cl(p.backupArgs("paths")...)}
	case "forget":
		return []string{"run: " + cl(p.forgetArgs()...)}
	case "check":
		return []string{"run: " + cl(p.checkArgs()...)}
	case "snapshots":
		return []string{"run: " + cl(p.snapshotsArgs()...)}
	case "restore":
		return []string{"run: " + cl(p.restoreArgs()...)}
	}
	return nil
}

func runRestic(ctx context.Context, env *engine.Env, p *ResticParams) (engine.Outputs, error) {
	c, err := newResticCall(env, p)
	if err != nil {
		return nil, err
	}
	switch p.Command {
	case "init":
		return c.initRepo(ctx)
	case "backup":
		return c.backup(ctx, p)
	case "forget":
		if !p.hasPolicy() {
			return nil, errors.New("restic forget: no keep policy (keep_last, keep_daily, ..., keep_within): refusing to run")
		}
		return c.forget(ctx, p)
	case "check":
		return c.check(ctx, p)
	case "snapshots":
		return c.snapshots(ctx, p)
	case "restore":
		return c.restore(ctx, p)
	}
	return nil, fmt.Errorf("restic: unknown command %q", p.Command)
}
