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

// MongorestoreParams are the params of mongorestore.
type MongorestoreParams struct {
	MongoConn            `yaml:",inline"`
	Input                string   `yaml:"input" required:"true" doc:"artifact written by mongodump (the step)"`
	Drop                 bool     `yaml:"drop" doc:"drop each collection before restoring it"`
	NsInclude            []string `yaml:"ns_include" doc:"restore only matching namespaces (e.g. app.*)"`
	NsExclude            []string `yaml:"ns_exclude" doc:"skip matching namespaces"`
	NsFrom               []string `yaml:"ns_from" doc:"rename: source namespace patterns, paired with ns_to (e.g. [app.*] → [app_drill.*] for scratch restores)"`
	NsTo                 []string `yaml:"ns_to" doc:"rename: target namespace patterns, same length as ns_from"`
	NoIndexRestore       bool     `yaml:"no_index_restore" doc:"do not restore indexes (servers that reject mongorestore's index options, e.g. unpatched FerretDB)"`
	AllowFailures        bool     `yaml:"allow_failures" doc:"succeed even if some documents failed to restore (e.g. duplicate keys without drop)"`
	ExtraArgs            []string `yaml:"extra_args" doc:"more mongorestore options, e.g. [--numInsertionWorkersPerCollection=4]"`
	Mongorestore         string   `yaml:"mongorestore" default:"mongorestore" doc:"mongorestore program"`
	artifact.ReadOptions `yaml:",inline"`
}

// Validate checks rename pairs and reserved arguments.
func (p *MongorestoreParams) Validate() error {
	if err := p.MongoConn.validate(); err != nil {
		return err
	}
	if len(p.NsFrom) != len(p.NsTo) {
		return errors.New("ns_from and ns_to must have the same length")
	}
	return rejectArgs("extra_args", p.ExtraArgs, "--uri", "--password", "-p", "--username", "-u", "--dir",
		"--archive", "--gzip", "--config", "--host", "-h")
}

func (p *MongorestoreParams) args(config string) []string {
	args := []string{"--config=" + config, "--archive"}
	if p.Drop {
		args = append(args, "--drop")
	}
	for _, v := range p.NsInclude {
		args = append(args, "--nsInclude="+v)
	}
	for _, v := range p.NsExclude {
		args = append(args, "--nsExclude="+v)
	}
	for i := range p.NsFrom {
		args = append(args, "--nsFrom="+p.NsFrom[i], "--nsTo="+p.NsTo[i])
	}
	if p.NoIndexRestore {
		args = append(args, "--noIndexRestore")
	}
	return append(args, p.ExtraArgs...)
}

// Mongorestore restores a mongodump artifact.
var Mongorestore = engine.Def[MongorestoreParams]{
	Name:    "mongorestore",
	Summary: "restore a mongodump artifact with mongorestore --archive (renames for scratch restores, document counts)",
	Doc: `The artifact is decrypted and decompressed on the fly into
mongorestore --archive's stdin; a truncated or tampered artifact stops
mongorestore before it sees the end of its input. The connection string goes
in a 0600 --config file in the private temp dir. Outputs the documents
restored per namespace as mongorestore reports them; any failed document
fails the step unless allow_failures.`,
	Tools: []string{"mongorestore"},
	Kind:  engine.KindOther,
	Outputs: []engine.Output{
		{Name: "counts", Doc: "documents restored per target namespace (db.collection)"},
		{Name: "documents", Doc: "total documents restored"},
		{Name: "failures", Doc: "total documents that failed to restore"},
		{Name: "duration_ms", Doc: "restore duration in milliseconds"},
	},
	Example: "uri_env: MONGO_URI\ninput: /backups/app.archive.zst.age\nidentity_file: /etc/planrun/restore.key\nns_from: ['app.*']\nns_to: ['app_drill.*']\ndrop: true",
	Preview: func(env *engine.Env, p *MongorestoreParams) []string {
		return []string{"read: " + p.Input,
			"run: " + proc.CommandLine(env.Secrets, p.Mongorestore, p.args("<private 0600 file with the uri>")...) + " < plaintext"}
	},
	Run: runMongorestore,
}

func runMongorestore(ctx context.Context, env *engine.Env, p *MongorestoreParams) (engine.Outputs, error) {
	uri, err := mongoURI(env, &p.MongoConn)
	if err != nil {
		return nil, err
	}
	src, err := artifact.OpenWith(ctx, env, p.Input, p.ReadOptions, artifact.Plain|artifact.VerifySidecar)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	defer src.Close()
	if err := mongoReachable(ctx, uri); err != nil {
		return nil, err
	}
	cfg, err := mongoConfig(env, uri)
	if err != nil {
		return nil, err
	}
	defer os.Remove(cfg)
	counter := newMongoCounter()
	start := time.Now()
	_, err = runFed(ctx, proc.Cmd{Name: p.Mongorestore, Args: p.args(cfg), Env: env.Environ, Secrets: env.Secrets, Stderr: counter}, src)
	counts, _, total, failed := counter.result()
	out := engine.Outputs{"counts": counts, "documents": total, "failures": failed, "duration_ms": time.Since(start).Milliseconds()}
	if err != nil {
		return out, fmt.Errorf("restore of %s failed: %w", p.Input, err)
	}
	if failed > 0 && !p.AllowFailures {
		return out, fmt.Errorf("restore of %s: %d document(s) failed to restore (see log; allow_failures: true to accept)", p.Input, failed)
	}
	return out, nil
}
