// Package restic runs the restic CLI for the restic-* step types. The
// repository and its password reach restic through its environment
// (RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE, RESTIC_FROM_* for copy),
// never its argv; restic's JSON output is parsed here.
package restic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/argv"
	"github.com/planrun/planrun/steps/internal/childenv"
	"github.com/planrun/planrun/steps/internal/proc"
)

// Repo are the params every restic-* step type shares (inline).
type Repo struct {
	Repository   string `yaml:"repository" doc:"repository: a path, s3:https://host/bucket/prefix, rclone:remote:path, ... (passed as RESTIC_REPOSITORY, never argv; a password in a rest: URL is masked); default RESTIC_REPOSITORY from the environment"`
	PasswordFile string `yaml:"password_file" secret:"file" doc:"file holding the repository password; default RESTIC_PASSWORD_FILE, RESTIC_PASSWORD or RESTIC_PASSWORD_COMMAND from the environment"`
	CacheDir     string `yaml:"cache_dir" doc:"restic cache directory (RESTIC_CACHE_DIR), e.g. when $HOME is not writable"`
	Binary       string `yaml:"binary" default:"restic" tool:"true" doc:"restic program (a name in PATH or a path); 0.14 or newer"`
}

// Bin is the restic program to run.
func (r Repo) Bin() string {
	if r.Binary == "" {
		return "restic"
	}
	return r.Binary
}

// CommandLine renders a restic command line for logs and dry runs.
func (r Repo) CommandLine(secrets *engine.Redactor, args ...string) string {
	return proc.CommandLine(secrets, r.Bin(), args...)
}

// Filter selects snapshots (forget, snapshots, restore, dump, copy).
type Filter struct {
	Tags []string `yaml:"tags" doc:"only snapshots with one of these tags"`
	Host string   `yaml:"host" doc:"only snapshots of this host"`
}

// Args appends the filter's flags.
func (f Filter) Args(args []string) []string {
	args = argv.AppendEach(args, "--tag", f.Tags)
	if f.Host != "" {
		args = append(args, "--host", f.Host)
	}
	return args
}

// Call holds what every restic invocation of one step shares.
type Call struct {
	Env     *engine.Env
	Bin     string
	Environ []string
	Repo    string // the repository location (may hold credentials)
}

// New builds restic's environment for r: repository, password and cache
// by env vars, never argv; credentials inside the repository URL become
// secrets (the rest of the location stays readable in logs).
func New(env *engine.Env, r Repo) (*Call, error) {
	environ := append([]string(nil), env.Environ...)
	repo := r.Repository
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
	env.Secrets.Add(engine.URIPasswords(repo)...)
	environ = childenv.Set(childenv.Unset(environ, "RESTIC_REPOSITORY_FILE"), "RESTIC_REPOSITORY", repo)

	if r.PasswordFile != "" {
		if _, err := os.Stat(r.PasswordFile); err != nil {
			return nil, fmt.Errorf("restic: password_file: %w", err)
		}
		environ = childenv.Set(childenv.Unset(environ, "RESTIC_PASSWORD", "RESTIC_PASSWORD_COMMAND"),
			"RESTIC_PASSWORD_FILE", r.PasswordFile)
	} else if env.Getenv("RESTIC_PASSWORD_FILE") == "" && env.Getenv("RESTIC_PASSWORD") == "" &&
		env.Getenv("RESTIC_PASSWORD_COMMAND") == "" {
		// Without one restic would read the password from stdin: our data.
		return nil, errors.New("restic: no repository password: set password_file or RESTIC_PASSWORD_FILE / RESTIC_PASSWORD in the environment")
	}
	if pw := env.Getenv("RESTIC_PASSWORD"); pw != "" {
		env.Secrets.Add(pw)
	}
	if r.CacheDir != "" {
		environ = childenv.Set(environ, "RESTIC_CACHE_DIR", r.CacheDir)
	}
	if strings.HasPrefix(repo, "rclone:") {
		// restic runs rclone, whose S3 client (1.60) fails on AWS_CA_BUNDLE.
		environ = childenv.Unset(environ, "AWS_CA_BUNDLE")
	}
	env.Secrets.AddEnv(environ)
	return &Call{Env: env, Bin: r.Bin(), Environ: environ, Repo: repo}, nil
}

// fromVars maps a repository's variables to the names restic reads for
// the source repository of copy and init --copy-chunker-params
// (RESTIC_FROM_*, restic 0.14 and newer; 0.14 replaced --repo2 with them).
var fromVars = []string{"RESTIC_REPOSITORY", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD", "RESTIC_PASSWORD_COMMAND"}

// From adds src's repository and password to c's environment as the
// source repository (RESTIC_FROM_*): c is written, src only read.
func (c *Call) From(src *Call) {
	c.Environ = childenv.Unset(c.Environ, "RESTIC_FROM_REPOSITORY", "RESTIC_FROM_REPOSITORY_FILE",
		"RESTIC_FROM_PASSWORD_FILE", "RESTIC_FROM_PASSWORD", "RESTIC_FROM_PASSWORD_COMMAND")
	for _, name := range fromVars {
		if v, ok := engine.LookupEnv(src.Environ, name); ok && v != "" {
			c.Environ = childenv.Set(c.Environ, "RESTIC_FROM_"+strings.TrimPrefix(name, "RESTIC_"), v)
		}
	}
}

// Location is the repository without the credentials a URL may hold: what
// records and outputs may show.
func Location(repo string) string {
	for _, pw := range engine.URIPasswords(repo) {
		repo = strings.ReplaceAll(repo, pw, "***")
	}
	return repo
}

// Run runs restic with args; stdout (if non-nil) receives its output.
func (c *Call) Run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) (proc.Result, error) {
	c.Env.Log.Info("run", "cmd", proc.CommandLine(c.Env.Secrets, c.Bin, args...))
	return proc.Run(ctx, proc.Cmd{
		Name: c.Bin, Args: args, Env: c.Environ, Stdin: stdin, Stdout: stdout, Secrets: c.Env.Secrets,
	})
}

// Output runs restic and returns its whole stdout (bounded).
func (c *Call) Output(ctx context.Context, args ...string) ([]byte, proc.Result, error) {
	var buf boundedBuffer
	res, err := c.Run(ctx, args, nil, &buf)
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

var versionRe = regexp.MustCompile(`restic (\d+)\.(\d+)`)

// Version returns restic's major and minor version.
func (c *Call) Version(ctx context.Context) (int, int, error) {
	res, err := proc.Run(ctx, proc.Cmd{Name: c.Bin, Args: []string{"version"}, Env: c.Environ, Secrets: c.Env.Secrets})
	if err != nil {
		return 0, 0, err
	}
	m := versionRe.FindStringSubmatch(res.Stdout)
	if m == nil {
		return 0, 0, fmt.Errorf("restic version: unexpected output %q", strings.TrimSpace(res.Stdout))
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major, minor, nil
}

// HasStdinFromCommand: restic 0.17 added backup --stdin-from-command.
func HasStdinFromCommand(major, minor int) bool { return major > 0 || minor >= 17 }

// missingRe matches restic's "no repository here" errors; 0.14 has no
// distinct exit code for it (0.17+ exits 10).
var missingRe = regexp.MustCompile(`(?i)unable to open config file|Is there a repository at the following location|repository does not exist`)

// existsRe matches init's "already initialized" errors.
var existsRe = regexp.MustCompile(`(?i)config file already exists|already initialized`)

// Init creates the repository unless it exists; extra are more init
// flags (--copy-chunker-params). It returns whether it created one, and
// its id.
func (c *Call) Init(ctx context.Context, extra ...string) (bool, string, error) {
	_, res, err := c.Output(ctx, "cat", "config")
	if err == nil {
		c.Env.Log.Info("restic repository exists, not initialising")
		return false, "", nil
	}
	var xe *proc.ExitError
	if !errors.As(err, &xe) || !(xe.ExitCode == 10 || missingRe.MatchString(res.Stderr)) {
		return false, "", fmt.Errorf("restic: cannot open the repository: %w", err)
	}
	out, res, err := c.Output(ctx, append([]string{"init"}, extra...)...)
	if err != nil {
		if existsRe.MatchString(res.Stderr) { // created meanwhile
			return false, "", nil
		}
		return false, "", fmt.Errorf("restic init: %w", err)
	}
	id := ParseInitID(string(out))
	c.Env.Log.Info("restic repository created", "id", id)
	return true, id, nil
}

// RunWithStdin runs restic with its stdin on an OS pipe fed by produce.
// The parent keeps the write end until produce finishes, so restic sees
// EOF (and saves a snapshot) only after a complete, successful stream;
// when produce fails, restic is stopped first and only then the pipe
// closed: a partial stream never becomes a snapshot.
func (c *Call) RunWithStdin(ctx context.Context, args []string, stdout io.Writer, produce func(w *os.File) error) (proc.Result, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return proc.Result{}, err
	}
	rctx, stopRestic := context.WithCancel(ctx)
	defer stopRestic()
	type result struct {
		res proc.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.Run(rctx, args, r, stdout)
		r.Close() // a producer still writing now gets EPIPE instead of blocking
		done <- result{res, err}
	}()

	perr := produce(w)
	if perr != nil {
		var rr result
		select {
		case rr = <-done: // restic ended on its own: its error comes first
			w.Close()
			if rr.err != nil {
				return rr.res, fmt.Errorf("%w (backup source: %v)", rr.err, perr)
			}
		default:
			stopRestic()
			rr = <-done
			w.Close()
		}
		if ctx.Err() != nil {
			return rr.res, fmt.Errorf("stopped before saving a snapshot: %w", ctx.Err())
		}
		// %v, not %w: the source's exit status must not pass for restic's.
		return rr.res, fmt.Errorf("backup source failed, restic stopped before saving a snapshot: %v", perr)
	}
	w.Close() // EOF: restic completes the snapshot
	rr := <-done
	return rr.res, rr.err
}

// LastLines returns the last n lines of s.
func LastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// Snapshots lists the snapshots matching args (ids, --tag, --host, ...).
func (c *Call) Snapshots(ctx context.Context, args ...string) ([]Snapshot, error) {
	stdout, _, err := c.Output(ctx, append([]string{"snapshots", "--json"}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("restic snapshots: %w", err)
	}
	return ParseSnapshots(stdout)
}

// Snapshot resolves one snapshot id, or "latest" (the newest snapshot
// matching the filter flags, as restic's own "latest" means).
func (c *Call) Snapshot(ctx context.Context, id string, filter ...string) (Snapshot, error) {
	args := filter
	if id != "latest" {
		args = []string{id}
	}
	snaps, err := c.Snapshots(ctx, args...)
	if err != nil {
		return Snapshot{}, err
	}
	if len(snaps) == 0 || (id != "latest" && len(snaps) != 1) {
		return Snapshot{}, fmt.Errorf("restic: snapshot %s: found %d snapshots", id, len(snaps))
	}
	return Newest(snaps), nil
}

// Newest returns the most recent snapshot (the last one of equal times).
func Newest(snaps []Snapshot) Snapshot {
	var best Snapshot
	var bestTime time.Time
	for _, s := range snaps {
		if t, err := time.Parse(time.RFC3339Nano, s.Time); err == nil && !t.Before(bestTime) {
			best, bestTime = s, t
		}
	}
	return best
}

// Pick selects one snapshot (restore, dump).
type Pick struct {
	Filter   `yaml:",inline"`
	Snapshot string `yaml:"snapshot" default:"latest" doc:"snapshot id or latest (the newest matching tags/host)"`
}

// Resolve finds the picked snapshot, so what a step reads is what it reports.
func (p Pick) Resolve(ctx context.Context, c *Call) (Snapshot, error) {
	return c.Snapshot(ctx, p.Snapshot, p.Filter.Args(nil)...)
}
