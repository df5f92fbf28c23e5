package steps

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// ResticParams are the params of the restic step. The repository and its
// password reach restic through its environment, never its argv.
type ResticParams struct {
	Command      string `yaml:"command" required:"true" enum:"init|backup|forget|check|snapshots|restore" doc:"restic command; init does nothing when the repository exists"`
	Repository   string `yaml:"repository" doc:"repository: a path, s3:https://host/bucket/prefix, rclone:remote:path, ... (passed as RESTIC_REPOSITORY, never argv; a password in a rest: URL is masked); default RESTIC_REPOSITORY from the environment"`
	PasswordFile string `yaml:"password_file" doc:"file holding the repository password; default RESTIC_PASSWORD_FILE, RESTIC_PASSWORD or RESTIC_PASSWORD_COMMAND from the environment"`
	CacheDir     string `yaml:"cache_dir" doc:"restic cache directory (RESTIC_CACHE_DIR), e.g. when $HOME is not writable"`
	Binary       string `yaml:"binary" default:"restic" doc:"restic program (a name in PATH or a path); 0.14 or newer"`

	Paths           []string `yaml:"paths" doc:"backup: files and directories to back up"`
	Exclude         []string `yaml:"exclude" doc:"backup, restore: exclude patterns"`
	ExcludeFile     []string `yaml:"exclude_file" doc:"backup: files of exclude patterns"`
	Tags            []string `yaml:"tags" doc:"backup: tags added to the snapshot; forget, snapshots, restore: only snapshots with one of these tags"`
	Host            string   `yaml:"host" doc:"backup: host name recorded; forget, snapshots, restore: only snapshots of this host"`
	StdinFile       string   `yaml:"stdin_file" doc:"backup: back up this artifact's content (decrypted and decompressed) as one file"`
	StdinCommand    []string `yaml:"stdin_command" doc:"backup: back up this command's standard output as one file (argv, no shell)"`
	StdinFilename   string   `yaml:"stdin_filename" doc:"backup: file name of a stdin backup in the snapshot (default: stdin_file's name without .zst/.gz/.age, or \"stdin\")"`
	AllowIncomplete bool     `yaml:"allow_incomplete" doc:"backup: succeed although some files could not be read (restic exit 3)"`

	artifact.ReadOptions `yaml:",inline"`

	KeepLast    int             `yaml:"keep_last" doc:"forget: keep the last n snapshots"`
	KeepHourly  int             `yaml:"keep_hourly" doc:"forget: keep the last n hourly snapshots"`
	KeepDaily   int             `yaml:"keep_daily" doc:"forget: keep the last n daily snapshots"`
	KeepWeekly  int             `yaml:"keep_weekly" doc:"forget: keep the last n weekly snapshots"`
	KeepMonthly int             `yaml:"keep_monthly" doc:"forget: keep the last n monthly snapshots"`
	KeepYearly  int             `yaml:"keep_yearly" doc:"forget: keep the last n yearly snapshots"`
	KeepWithin  engine.Duration `yaml:"keep_within" doc:"forget: keep snapshots newer than this (e.g. 30d) relative to the newest"`
	GroupBy     string          `yaml:"group_by" default:"host,paths" doc:"forget: how snapshots are grouped before the policy applies (host, paths, tags; empty: one group)"`
	Prune       bool            `yaml:"prune" doc:"forget: also remove the data no snapshot uses any more"`

	ReadDataSubset string `yaml:"read_data_subset" doc:"check: also read and verify this part of the data: n/t, x% or a size (e.g. 1/5, 10%, 500M)"`

	Snapshot string   `yaml:"snapshot" default:"latest" doc:"restore: snapshot id or latest"`
	Target   string   `yaml:"target" doc:"restore: directory to restore into"`
	Include  []string `yaml:"include" doc:"restore: include patterns"`
}

var subsetRe = regexp.MustCompile(`^(\d+/\d+|\d+(\.\d+)?%|\d+(\.\d+)?[KMGTkmgt]?)$`)

// Validate checks that the params fit the command.
func (p *ResticParams) Validate() error {
	if err := p.onlyFor(); err != nil {
		return err
	}
	switch p.Command {
	case "backup":
		n := 0
		for _, set := range []bool{len(p.Paths) > 0, p.StdinFile != "", len(p.StdinCommand) > 0} {
			if set {
				n++
			}
		}
		if n != 1 {
			return errors.New("backup: give exactly one of paths, stdin_file and stdin_command")
		}
		if len(p.Paths) == 0 && (len(p.Exclude) > 0 || len(p.ExcludeFile) > 0) {
			return errors.New("exclude and exclude_file apply to a backup of paths")
		}
		if len(p.Paths) > 0 && p.StdinFilename != "" {
			return errors.New("stdin_filename applies to stdin_file and stdin_command")
		}
	case "forget":
		for _, k := range p.keeps() {
			if k < 0 {
				return errors.New("keep_* counts must not be negative")
			}
		}
		// An empty policy is checked in Run: here keep_* given as ${{ }}
		// expressions still read as zero.
	case "check":
		if p.ReadDataSubset != "" && !strings.Contains(p.ReadDataSubset, "${{") && !subsetRe.MatchString(p.ReadDataSubset) {
			return fmt.Errorf("read_data_subset %q: use n/t (1/5), a percentage (10%%) or a size (500M)", p.ReadDataSubset)
		}
	case "restore":
		if p.Target == "" {
			return errors.New("restore needs target")
		}
	}
	return nil
}

func (p *ResticParams) keeps() []int {
	return []int{p.KeepLast, p.KeepHourly, p.KeepDaily, p.KeepWeekly, p.KeepMonthly, p.KeepYearly}
}

// hasPolicy reports whether any keep rule is set.
func (p *ResticParams) hasPolicy() bool {
	for _, k := range p.keeps() {
		if k > 0 {
			return true
		}
	}
	return p.KeepWithin > 0
}

// onlyFor rejects params given to a command they do not apply to.
func (p *ResticParams) onlyFor() error {
	check := func(name string, set bool, cmds ...string) error {
		if !set {
			return nil
		}
		for _, c := range cmds {
			if c == p.Command {
				return nil
			}
		}
		return fmt.Errorf("%s applies to command %s, not %s", name, strings.Join(cmds, "/"), p.Command)
	}
	for _, c := range []error{
		check("paths", len(p.Paths) > 0, "backup"),
		check("exclude_file", len(p.ExcludeFile) > 0, "backup"),
		check("exclude", len(p.Exclude) > 0, "backup", "restore"),
		check("stdin_file", p.StdinFile != "", "backup"),
		check("stdin_command", len(p.StdinCommand) > 0, "backup"),
		check("prune", p.Prune, "forget"),
		check("keep_within", p.KeepWithin != 0, "forget"),
		check("keep_*", p.KeepLast|p.KeepHourly|p.KeepDaily|p.KeepWeekly|p.KeepMonthly|p.KeepYearly != 0, "forget"),
		check("read_data_subset", p.ReadDataSubset != "", "check"),
		check("target", p.Target != "", "restore"),
		check("include", len(p.Include) > 0, "restore"),
	} {
		if c != nil {
			return c
		}
	}
	return nil
}

// Restic drives the restic CLI.
var Restic = engine.Def[ResticParams]{
	Name:    "restic",
	Summary: "restic backup, forget (+prune), check, snapshots, restore, init: repository and password by env, never argv",
	Doc: "Runs restic with --json where it has it and turns its output into outputs. The repository " +
		"(which may embed credentials) and the password are passed in restic's environment " +
		"(RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE); s3: repositories use AWS_ACCESS_KEY_ID / " +
		"AWS_SECRET_ACCESS_KEY from the environment, rclone: repositories the rclone config or " +
		"RCLONE_CONFIG_* variables. A stdin backup (stdin_file, stdin_command) whose source fails " +
		"stops restic before it can save a snapshot of the partial stream.",
	Tools: []string{"restic"},
	Kind:  engine.KindDestructive,
	KindOf: func(p *ResticParams) engine.Kind {
		switch p.Command {
		case "backup":
			return engine.KindBackup
		case "forget":
			return engine.KindDestructive
		}
		return engine.KindOther
	},
	Outputs: []engine.Output{
		{Name: "snapshot_id", Doc: "backup: the new snapshot's id as restic reports it (8-hex short id in restic 0.14, full id in newer)"},
		{Name: "snapshot_short_id", Doc: "backup: the first 8 hex digits of the id"},
		{Name: "files_new", Doc: "backup: new files"},
		{Name: "files_changed", Doc: "backup: changed files"},
		{Name: "files_unmodified", Doc: "backup: unchanged files"},
		{Name: "data_added", Doc: "backup: bytes added to the repository"},
		{Name: "total_files", Doc: "backup: files processed"},
		{Name: "total_bytes", Doc: "backup: bytes processed"},
		{Name: "errors", Doc: "backup: files that could not be read (list)"},
		{Name: "removed", Doc: "forget: ids of the removed snapshots (list)"},
		{Name: "removed_count", Doc: "forget: number of removed snapshots"},
		{Name: "snapshots", Doc: "snapshots: list of {id, short_id, time, host, paths, tags}"},
		{Name: "count", Doc: "snapshots: number of snapshots"},
		{Name: "latest_id", Doc: "snapshots: id of the newest snapshot"},
		{Name: "kept", Doc: "forget: ids of the kept snapshots (list)"},
		{Name: "created", Doc: "init: whether a repository was created"},
		{Name: "repository_id", Doc: "init: id of the created repository"},
		{Name: "ok", Doc: "check: whether the check found no errors"},
		{Name: "report", Doc: "check: the last lines of restic's report"},
		{Name: "snapshot", Doc: "restore: the snapshot restored"},
		{Name: "target", Doc: "restore: the directory restored into"},
	},
	Example: "command: backup\nrepository: ${{ env.RESTIC_REPOSITORY }}\npassword_file: /etc/planrun/restic.pass\n" +
		"paths: [/backups/mongo]\ntags: [daily]",
	Preview: previewRestic,
	Run:     runRestic,
}
