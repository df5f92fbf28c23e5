package steps

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/argv"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/container"
	"github.com/planrun/planrun/steps/internal/mongoarchive"
	"github.com/planrun/planrun/steps/internal/mongoconn"
	"github.com/planrun/planrun/steps/internal/proc"
)

// MongodumpParams are the params of mongodump.
type MongodumpParams struct {
	mongoconn.Conn        `yaml:",inline"`
	DB                    string   `yaml:"db" doc:"database to dump (default: all databases)"`
	Collection            string   `yaml:"collection" doc:"dump only this collection (needs db)"`
	ExcludeCollections    []string `yaml:"exclude_collections" doc:"collections to skip (needs db)"`
	Oplog                 bool     `yaml:"oplog" doc:"include the oplog for a point-in-time dump (replica sets; full dumps only)"`
	ExtraArgs             []string `yaml:"extra_args" doc:"more mongodump options, e.g. [--readPreference=secondary]"`
	Mongodump             string   `yaml:"mongodump" default:"mongodump" tool:"true" doc:"mongodump program"`
	artifact.WriteOptions `yaml:",inline"`
}

// Validate enforces mongodump's own rules at plan-validate time.
func (p *MongodumpParams) Validate() error {
	if err := p.Conn.Check(); err != nil {
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
	if err := argv.Reject("extra_args", p.ExtraArgs, "--uri", "--password", "-p", "--username", "-u", "--out", "-o",
		"--archive", "--gzip", "--config", "--host", "-h"); err != nil {
		return err
	}
	return p.WriteOptions.Validate()
}

// args are mongodump's arguments after --config (the session adds it).
func (p *MongodumpParams) args() []string {
	args := []string{"--archive"}
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
non-zero discards the artifact.

With container: (docker/podman exec -i) or compose: (docker compose exec
-T), mongodump runs inside that container and its archive streams into the
artifact on the host as above. The uri's hosts are then as the container
sees them (without uri/uri_env: mongodb://127.0.0.1:27017/, the
container's own server). The --config document crosses as -e
PLANRUN_MONGO_CONFIG (its value only in the engine client's environment)
and reaches mongodump as /dev/fd/3, a pipe sh feeds from that variable:
no file in the container, nothing in any argv. The reachability check
connects from inside the container (bash's /dev/tcp).

The archive is also parsed as it streams past (a copy of the stream, in a
goroutine, bounded memory): the documents counted per collection are
exactly those the archive holds — no separate count racing with writes —
and are recorded in the manifest as documents:<db>.<collection>, with the
server and mongodump versions from the archive's header. The parse also
checks the archive's framing: every block well formed, every collection of
the prelude present and closed by its EOF block (the per-collection CRCs
are left to mongorestore, which checks them on every restore). A stream
that is not a complete archive fails the step and discards the artifact,
even when mongodump exits 0: it is not what a restore would expect. The
oplog (oplog: true) is not counted.

Restore: planrun restore/drill run mongorestore; a drill restores into
<db><suffix> and drops it afterwards (see mongorestore for the grants).`,
	Kind: engine.KindBackup,
	Outputs: append(append([]engine.Output(nil), artifact.StandardOutputs...),
		engine.Output{Name: "counts", Doc: "documents in the archive per collection, keyed documents:<db>.<collection>"},
		engine.Output{Name: "documents", Doc: "total documents in the archive"},
		engine.Output{Name: "duration_ms", Doc: "dump duration in milliseconds"},
	),
	Example: "uri_env: MONGO_URI\ndb: app\noutput: /backups/app.archive.zst.age\nencrypt: {recipients_file: /etc/planrun/backup.pub}",
	Preview: func(env *engine.Env, p *MongodumpParams) []string {
		return []string{
			"run: " + p.Conn.PreviewSession(env).CommandLine(proc.Cmd{Name: p.Mongodump, Args: p.args()}),
			"write: " + p.WriteOptions.Describe(),
		}
	},
	Inverse: &engine.Inverse{Type: "mongorestore", With: mongodumpInverse,
		Targets: []string{"ns_from", "ns_to", "ns_include", "ns_exclude", "drop", "drop_after", "extra_args"}},
	Run: runMongodump,
}

func runMongodump(ctx context.Context, env *engine.Env, p *MongodumpParams) (engine.Outputs, error) {
	s, err := p.Conn.Session(env)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := s.Probe(ctx); err != nil {
		return nil, err
	}
	if err := s.Reachable(ctx); err != nil {
		return nil, err
	}
	w, err := artifact.Create(ctx, env, p.WriteOptions)
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	tee := mongoarchive.NewTee(w)
	start := time.Now()
	_, err = proc.Run(ctx, s.Cmd(proc.Cmd{Name: p.Mongodump, Args: p.args(), Stdout: tee}))
	sum, perr := tee.Finish()
	if err != nil {
		return nil, fmt.Errorf("mongodump failed, no artifact written: %w", err)
	}
	if perr != nil {
		return nil, fmt.Errorf("mongodump exited 0 but wrote no complete archive, no artifact written: %w", perr)
	}
	res, err := w.Commit()
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int64, len(sum.Documents))
	for ns, n := range sum.Documents {
		counts["documents:"+ns] = n
	}
	res.Record.Source = p.source(s.URI, sum)
	if v := sum.Header.ToolVersion; v != "" {
		res.Record.Tools = map[string]string{"mongodump": v}
	}
	res.Record.Counts = maps.Clone(counts)
	if sum.Oplog > 0 {
		env.Log.Info("oplog entries in the archive (not counted as documents)", "entries", sum.Oplog)
	}
	out := res.Outputs()
	out["counts"] = counts
	out["documents"] = sum.Total()
	out["duration_ms"] = time.Since(start).Milliseconds()
	return out, nil
}

// source describes where the dump came from, without credentials.
func (p *MongodumpParams) source(uri string, sum *mongoarchive.Summary) map[string]string {
	src := map[string]string{"kind": "mongodb", "format": "mongodump-archive"}
	set := func(k, v string) {
		if v != "" {
			src[k] = v
		}
	}
	set("host", mongoconn.Hosts(uri))
	set("db", p.DB)
	set("collection", p.Collection)
	set("uri_env", p.URIEnv)
	set("server_version", sum.Header.ServerVersion)
	set("archive_version", sum.Header.FormatVersion)
	if p.Oplog {
		src["oplog"] = "true"
	}
	// host is then as the container sees it.
	p.Conn.Target.Record(src)
	return src
}

// mongodumpInverse restores a mongodump archive with mongorestore. Scratch:
// each dumped database <db> goes to <db><suffix> (ns_include limits the
// restore to the renamed namespaces, so drop only ever drops scratch
// collections), counted and dropped afterwards unless kept. Otherwise the
// original namespaces, without drop: restoring over live data fails on
// duplicate keys rather than silently replacing it.
func mongodumpInverse(a engine.ArtifactRecord, t engine.RestoreTarget) (map[string]any, error) {
	with := map[string]any{"input": t.Input}
	if v := a.Source["uri_env"]; v != "" {
		with["uri_env"] = v
	}
	// Back into the container it came from (its localhost by default).
	container.FromRecord(a.Source, with)
	artifact.AddReadKeys(with, t)
	db := a.Source["db"]
	if !t.Scratch {
		switch {
		case db != "" && a.Source["collection"] != "":
			with["ns_include"] = []string{mongoarchive.Escape(db + "." + a.Source["collection"])}
		case db != "":
			with["ns_include"] = []string{mongoarchive.Escape(db) + ".*"}
		}
		return with, nil
	}
	if t.ScratchSuffix == "" {
		return nil, errors.New("mongodump artifact: scratch restore without a scratch suffix")
	}
	dbs := []string{db}
	if db == "" {
		// A full dump: scratch copies of every database it holds, but not
		// of admin, config or local (users, sharding, replication state).
		seen := map[string]bool{}
		for k := range a.Counts {
			ns, ok := strings.CutPrefix(k, "documents:")
			if !ok {
				continue
			}
			d, _, _ := strings.Cut(ns, ".")
			if d == "admin" || d == "config" || d == "local" {
				return nil, fmt.Errorf("mongodump artifact %s is a full dump including %s: a scratch restore cannot copy it (dump each database with db:, or restore it for real)", a.Path, d)
			}
			seen[d] = true
		}
		dbs = slices.Sorted(maps.Keys(seen))
		if len(dbs) == 0 {
			return nil, fmt.Errorf("mongodump artifact %s: no database recorded, nothing to restore into a scratch database", a.Path)
		}
	}
	var from, to []string
	for _, d := range dbs {
		from = append(from, mongoarchive.Escape(d)+".*")
		to = append(to, mongoarchive.Escape(d+t.ScratchSuffix)+".*")
	}
	with["ns_include"] = from
	with["ns_from"] = from
	with["ns_to"] = to
	with["drop"] = true
	with["drop_after"] = !t.Keep
	return with, nil
}
