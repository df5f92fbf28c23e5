package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/proc"
)

// MongodumpParams are the params of mongodump.
type MongodumpParams struct {
	MongoConn             `yaml:",inline"`
	DB                    string   `yaml:"db" doc:"database to dump (default: all databases)"`
	Collection            string   `yaml:"collection" doc:"dump only this collection (needs db)"`
	ExcludeCollections    []string `yaml:"exclude_collections" doc:"collections to skip (needs db)"`
	Oplog                 bool     `yaml:"oplog" doc:"include the oplog for a point-in-time dump (replica sets; full dumps only)"`
	ExtraArgs             []string `yaml:"extra_args" doc:"more mongodump options, e.g. [--readPreference=secondary]"`
	Mongodump             string   `yaml:"mongodump" default:"mongodump" doc:"mongodump program"`
	artifact.WriteOptions `yaml:",inline"`
}

// Validate enforces mongodump's own rules at plan-validate time.
func (p *MongodumpParams) Validate() error {
	if err := p.MongoConn.validate(); err != nil {
		return err
	}
	if p.Oplog && (p.DB != "" || p.Collection != "") {
		// mongodump: "--oplog mode only supported on full dumps"
		return errors.New("oplog: --oplog mode only supported on full dumps (remove db and collection)")
	}
	if (p.Collection != "" || len(p.ExcludeCollections) > 0) && p.DB == "" {
		return errors.New("collection and exclude_collections need db")
	}
	if p.Collection != "" && len(p.ExcludeCollections) > 0 {
		return errors.New("give collection or exclude_collections, not both")
	}
	if err := rejectArgs("extra_args", p.ExtraArgs, "--uri", "--password", "-p", "--username", "-u", "--out", "-o",
		"--archive", "--gzip", "--config", "--host", "-h"); err != nil {
		return err
	}
	return p.WriteOptions.Validate()
}

func (p *MongodumpParams) args(config string) []string {
	args := []string{"--config=" + config, "--archive"}
	if p.DB != "" {
		args = append(args, "--db="+p.DB)
	}
	if p.Collection != "" {
		args = append(args, "--collection="+p.Collection)
	}
	for _, c := range p.ExcludeCollections {
		args = append(args, "--excludeCollection="+c)
	}
	if p.Oplog {
		args = append(args, "--oplog")
	}
	return append(args, p.ExtraArgs...)
}

// Mongodump streams a mongodump archive into an artifact.
var Mongodump = engine.Def[MongodumpParams]{
	Name:    "mongodump",
	Summary: "dump MongoDB with mongodump --archive, streamed into a compressed, encrypted artifact",
	Doc: `Runs mongodump --archive (to stdout) and streams it through planrun's
compression and encryption into the artifact; no dump directory on disk.
mongodump's own --gzip is not used: planrun compresses the whole archive
once (zstd by default: faster and smaller), and compressing before
encrypting is what the artifact writer does anyway; restore with mongorestore
(the step), which decompresses on the fly. The connection string, with its
password, goes to a 0600 --config file in the step's private temp dir that
is removed afterwards — never on the command line. A mongodump that exits
non-zero discards the artifact.`,
	Tools: []string{"mongodump"},
	Kind:  engine.KindBackup,
	Outputs: append(append([]engine.Output(nil), artifact.StandardOutputs...),
		engine.Output{Name: "counts", Doc: "documents dumped per namespace (db.collection)"},
		engine.Output{Name: "documents", Doc: "total documents dumped"},
		engine.Output{Name: "duration_ms", Doc: "dump duration in milliseconds"},
	),
	Example: "uri_env: MONGO_URI\ndb: app\noutput: /backups/app.archive.zst.age\nencrypt: {recipients_file: /etc/planrun/backup.pub}",
	Preview: func(env *engine.Env, p *MongodumpParams) []string {
		return []string{
			"run: " + proc.CommandLine(env.Secrets, p.Mongodump, p.args("<private 0600 file with the uri>")...),
			"write: " + p.WriteOptions.Describe(),
		}
	},
	Run: runMongodump,
}

func runMongodump(ctx context.Context, env *engine.Env, p *MongodumpParams) (engine.Outputs, error) {
	uri, err := mongoURI(env, &p.MongoConn)
	if err != nil {
		return nil, err
	}
	if err := mongoReachable(ctx, uri); err != nil {
		return nil, err
	}
	cfg, err := mongoConfig(env, uri)
	if err != nil {
		return nil, err
	}
	defer os.Remove(cfg)
	w, err := artifact.Create(ctx, env, p.WriteOptions)
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	counter := newMongoCounter()
	start := time.Now()
	_, err = proc.Run(ctx, proc.Cmd{
		Name: p.Mongodump, Args: p.args(cfg), Env: env.Environ, Secrets: env.Secrets,
		Stdout: progressWriter(w, env), Stderr: counter,
	})
	counts, _, total, _ := counter.result()
	if err != nil {
		return nil, fmt.Errorf("mongodump failed, no artifact written: %w", err)
	}
	res, err := w.Commit()
	if err != nil {
		return nil, err
	}
	out := res.Outputs()
	out["counts"] = counts
	out["documents"] = total
	out["duration_ms"] = time.Since(start).Milliseconds()
	return out, nil
}
