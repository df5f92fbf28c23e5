package steps

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/planrun/planrun/engine"
)

// RcloneParams are the params of the rclone step. Remotes come from the
// config file or RCLONE_CONFIG_<NAME>_* variables, never from argv.
type RcloneParams struct {
	Command          string   `yaml:"command" required:"true" enum:"sync|copy|check|lsf|size" doc:"rclone command"`
	Source           string   `yaml:"source" required:"true" doc:"source path or remote:path (lsf, size: the path listed)"`
	Dest             string   `yaml:"dest" doc:"sync, copy, check: destination path or remote:path"`
	Config           string   `yaml:"config" doc:"rclone config file; default RCLONE_CONFIG or rclone's own (remotes may also be RCLONE_CONFIG_<NAME>_* variables)"`
	MaxDeletePercent int      `yaml:"max_delete_percent" default:"50" doc:"sync: refuse when it would delete more than this percentage of the destination's files (dry run first, then --max-delete as a second guard); 100 disables the guard"`
	Include          []string `yaml:"include" doc:"--include patterns"`
	Exclude          []string `yaml:"exclude" doc:"--exclude patterns"`
	Checksum         bool     `yaml:"checksum" doc:"sync, copy: compare by checksum, not size and time; check: always compares hashes"`
	OneWay           bool     `yaml:"one_way" doc:"check: only check that source files are in dest"`
	Recursive        bool     `yaml:"recursive" default:"true" doc:"lsf: list recursively"`
	Flags            []string `yaml:"flags" doc:"extra rclone flags (e.g. --transfers=8); never credentials"`
	Binary           string   `yaml:"binary" default:"rclone" doc:"rclone program (a name in PATH or a path)"`
}

// connStringSecretRe finds key=value params of an on-the-fly remote
// (":s3,secret_access_key=...:bucket"): credentials in argv.
var connStringSecretRe = regexp.MustCompile(`[,:]([A-Za-z0-9_-]+)=`)

// Validate checks the params fit the command and keep credentials out of argv.
func (p *RcloneParams) Validate() error {
	switch p.Command {
	case "sync", "copy", "check":
		if p.Dest == "" {
			return fmt.Errorf("%s needs dest", p.Command)
		}
	default:
		if p.Dest != "" {
			return fmt.Errorf("dest does not apply to %s", p.Command)
		}
	}
	if p.MaxDeletePercent < 0 || p.MaxDeletePercent > 100 {
		return fmt.Errorf("max_delete_percent must be 0-100, got %d", p.MaxDeletePercent)
	}
	if p.OneWay && p.Command != "check" {
		return errors.New("one_way applies to check")
	}
	for _, where := range []struct{ name, val string }{{"source", p.Source}, {"dest", p.Dest}} {
		for _, m := range connStringSecretRe.FindAllStringSubmatch(where.val, -1) {
			if engine.IsSecretName(m[1]) {
				return fmt.Errorf("%s: %q in a connection string would put a credential in rclone's argv: define the remote in the config file or RCLONE_CONFIG_<NAME>_* variables", where.name, m[1])
			}
		}
	}
	for _, f := range p.Flags {
		name, _, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
		if strings.HasPrefix(f, "-") && engine.IsSecretName(name) {
			return fmt.Errorf("flags: %s would put a credential in rclone's argv: use the config file or RCLONE_* variables", "--"+name)
		}
		if name == "dry-run" || name == "max-delete" {
			return fmt.Errorf("flags: %s is managed by the step (see max_delete_percent)", "--"+name)
		}
	}
	return nil
}

// Rclone drives the rclone CLI.
var Rclone = engine.Def[RcloneParams]{
	Name:    "rclone",
	Summary: "rclone sync (with a delete guard), copy, check, lsf, size; outputs bytes, files, errors",
	Doc: "Runs rclone with JSON logs and turns its final stats into outputs. sync first does a dry " +
		"run and refuses when it would delete more than max_delete_percent of the destination's " +
		"files, then syncs with --max-delete as a second guard. AWS_CA_BUNDLE is removed from " +
		"rclone's environment (rclone 1.60's S3 client fails on it).",
	Tools: []string{"rclone"},
	Kind:  engine.KindDestructive,
	KindOf: func(p *RcloneParams) engine.Kind {
		switch p.Command {
		case "sync":
			return engine.KindDestructive
		case "copy":
			return engine.KindBackup
		}
		return engine.KindOther
	},
	Outputs: []engine.Output{
		{Name: "bytes", Doc: "sync, copy: bytes transferred; size: total bytes"},
		{Name: "files", Doc: "sync, copy: files transferred"},
		{Name: "deletes", Doc: "sync: files deleted"},
		{Name: "checks", Doc: "sync, copy: files checked"},
		{Name: "errors", Doc: "error count"},
		{Name: "error_messages", Doc: "rclone's error lines (first 50, redacted)"},
		{Name: "planned_deletes", Doc: "sync: deletes the dry run found"},
		{Name: "dest_files", Doc: "sync: files in the destination before the sync"},
		{Name: "matches", Doc: "check: identical files"},
		{Name: "differences", Doc: "check: files present on both sides that differ"},
		{Name: "missing_on_dest", Doc: "check: files only in source"},
		{Name: "missing_on_source", Doc: "check: files only in dest"},
		{Name: "differing", Doc: "check: names of differing, missing or unreadable files (first 100)"},
		{Name: "ok", Doc: "check: whether source and dest match"},
		{Name: "count", Doc: "lsf, size: number of files"},
		{Name: "list", Doc: "lsf: file names (first 10000)"},
	},
	Example: "command: sync\nsource: /backups\ndest: offsite:backups/db1\nconfig: /etc/planrun/rclone.conf\nmax_delete_percent: 20",
	Preview: previewRclone,
	Run:     runRclone,
}
