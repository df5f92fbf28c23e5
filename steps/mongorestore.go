package steps

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/argv"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/mongoarchive"
	"github.com/planrun/planrun/steps/internal/mongoconn"
	"github.com/planrun/planrun/steps/internal/proc"
)

// MongorestoreParams are the params of mongorestore.
type MongorestoreParams struct {
	mongoconn.Conn       `yaml:",inline"`
	Input                string   `yaml:"input" required:"true" doc:"artifact written by mongodump (the step)"`
	Drop                 bool     `yaml:"drop" doc:"drop each collection before restoring it"`
	NsInclude            []string `yaml:"ns_include" doc:"restore only matching namespaces (e.g. app.*)"`
	NsExclude            []string `yaml:"ns_exclude" doc:"skip matching namespaces"`
	NsFrom               []string `yaml:"ns_from" doc:"rename: source namespace patterns, paired with ns_to (e.g. [app.*] → [app_drill.*] for scratch restores)"`
	NsTo                 []string `yaml:"ns_to" doc:"rename: target namespace patterns, same length as ns_from"`
	DropAfter            bool     `yaml:"drop_after" doc:"drop the scratch target databases (the databases of ns_to) after counting, also when the restore fails; only for renamed restores into new databases (see the step's doc)"`
	NoIndexRestore       bool     `yaml:"no_index_restore" doc:"do not restore indexes (servers that reject mongorestore's index options, e.g. unpatched FerretDB)"`
	AllowFailures        bool     `yaml:"allow_failures" doc:"succeed even if some documents failed to restore (e.g. duplicate keys without drop)"`
	ExtraArgs            []string `yaml:"extra_args" doc:"more mongorestore options, e.g. [--numInsertionWorkersPerCollection=4]"`
	Mongorestore         string   `yaml:"mongorestore" default:"mongorestore" tool:"true" doc:"mongorestore program"`
	artifact.ReadOptions `yaml:",inline"`
}

// Validate checks rename pairs and reserved arguments.
func (p *MongorestoreParams) Validate() error {
	if err := p.Conn.Check(); err != nil {
		return err
	}
	if len(p.NsFrom) != len(p.NsTo) {
		return errors.New("ns_from and ns_to must have the same length")
	}
	if !mongoDeferred(p.NsFrom, p.NsTo) {
		if _, err := mongoarchive.NewRenamer(p.NsFrom, p.NsTo); err != nil {
			return fmt.Errorf("ns_from/ns_to: %w", err)
		}
	}
	if p.DropAfter {
		if _, err := p.scratchDBs(); err != nil {
			return fmt.Errorf("drop_after: %w", err)
		}
		// Namespace options outside ns_* would bypass scratchDBs' checks.
		if err := argv.Reject("extra_args", p.ExtraArgs, "--nsInclude", "--nsFrom", "--nsTo", "--db", "-d", "--collection", "-c"); err != nil {
			return fmt.Errorf("drop_after: %w", err)
		}
	}
	return argv.Reject("extra_args", p.ExtraArgs, "--uri", "--password", "-p", "--username", "-u", "--dir",
		"--archive", "--gzip", "--config", "--host", "-h")
}

// mongoDeferred reports whether some pattern is still an expression
// (validated again once it is evaluated).
func mongoDeferred(lists ...[]string) bool {
	for _, l := range lists {
		for _, v := range l {
			if strings.Contains(v, "${{") {
				return true
			}
		}
	}
	return false
}

// scratchDBs returns the databases drop_after drops, and refuses params
// under which a drop could reach anything but a scratch copy: every
// restored namespace must be renamed (ns_include lists only ns_from
// patterns), into a named database (literal ns_to database) that is none
// of the source databases (literal ns_from databases) nor a system one.
func (p *MongorestoreParams) scratchDBs() ([]string, error) {
	if mongoDeferred(p.NsFrom, p.NsTo, p.NsInclude) {
		return nil, nil
	}
	if len(p.NsFrom) == 0 {
		return nil, errors.New("needs ns_from/ns_to renaming into scratch databases: it never drops an original")
	}
	if len(p.NsInclude) == 0 {
		return nil, errors.New("needs ns_include equal to the ns_from patterns, so nothing is restored under its original name")
	}
	for _, inc := range p.NsInclude {
		if !slices.Contains(p.NsFrom, inc) {
			return nil, fmt.Errorf("ns_include %q is not one of ns_from: it would be restored under its original name", inc)
		}
	}
	dbOf := func(pattern string) (string, bool) {
		d, _, _ := strings.Cut(pattern, ".")
		return mongoarchive.Literal(d)
	}
	sources := map[string]bool{}
	for _, f := range p.NsFrom {
		d, ok := dbOf(f)
		if !ok {
			return nil, fmt.Errorf("ns_from %q: the database must be named literally", f)
		}
		sources[d] = true
	}
	var dbs []string
	for _, t := range p.NsTo {
		d, ok := dbOf(t)
		if !ok || d == "" {
			return nil, fmt.Errorf("ns_to %q: the scratch database must be named literally", t)
		}
		if sources[d] {
			return nil, fmt.Errorf("ns_to %q: database %s is also a source database", t, d)
		}
		if d == "admin" || d == "config" || d == "local" {
			return nil, fmt.Errorf("ns_to %q: %s is a system database", t, d)
		}
		if !slices.Contains(dbs, d) {
			dbs = append(dbs, d)
		}
	}
	return dbs, nil
}

// args are mongorestore's arguments after --config (the session adds it).
func (p *MongorestoreParams) args() []string {
	args := []string{"--archive"}
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
in a 0600 --config file in the private temp dir. Any failed document fails
the step unless allow_failures.

With container: or compose:, mongorestore runs inside that container, fed
the plaintext over the engine client's stdin (decryption stays on the
host); uri, its default and the --config delivery are as for mongodump.
The step's own queries (reachability, the scratch check, the counts, the
drop_after drops) then go through the container as well: each driver
connection is a relay run inside it (docker exec -i ... bash, /dev/tcp to
the uri's host, cat both ways), so they reach the server the tool wrote to
at the address the tool used, with no published port and whatever the
container's network. The container needs bash and cat for that (the
official mongo images have them).

counts are measured on the server after the restore: an exact count
(countDocuments) of every collection mongorestore restored, keyed as the
backup names it — documents:<db>.<collection> with ns_from/ns_to reversed —
so a drill compares them with the counts mongodump recorded from the archive.

drop_after (drills) drops the ns_to databases once counted, also after a
failed restore. It is refused unless the restore can only write into them:
ns_include must list only ns_from patterns, ns_from and ns_to must name
their databases literally, no ns_to database may be a source or system
database, and a scratch database that already holds collections is refused
before mongorestore runs, so a drop never reaches data the step did not
write. A scratch restore (planrun drill) renames <db>.* to <db><suffix>.*
with drop and drop_after.

Grants for a scratch restore: readWrite on the scratch database (insert,
createIndexes, listCollections, find for the counts, drop for drop: true)
and dropDatabase on it (drop_after), e.g. readWrite plus dbAdmin on it. The
scratch name changes with every drill and MongoDB privileges cannot name a
database prefix, so in practice a drill user needs readWriteAnyDatabase and
a custom role with dropDatabase on {db: "", collection: ""} — or run drills
against a separate server restored from the same archive.`,
	Kind: engine.KindOther,
	Outputs: []engine.Output{
		{Name: "counts", Doc: "documents on the server after the restore per restored collection, keyed as the backup names it: documents:<db>.<collection>"},
		{Name: "documents", Doc: "total documents mongorestore reports restored"},
		{Name: "failures", Doc: "total documents that failed to restore"},
		{Name: "duration_ms", Doc: "restore duration in milliseconds"},
		{Name: "dropped", Doc: "scratch databases dropped (drop_after)"},
	},
	Example: "uri_env: MONGO_URI\ninput: /backups/app.archive.zst.age\nidentity_file: /etc/planrun/restore.key\nns_include: ['app.*']\nns_from: ['app.*']\nns_to: ['app_drill.*']\ndrop: true\ndrop_after: true",
	Preview: func(env *engine.Env, p *MongorestoreParams) []string {
		s := p.Conn.PreviewSession(env)
		lines := []string{"read: " + p.Input, "run: " + s.CommandLine(proc.Cmd{Name: p.Mongorestore, Args: p.args()}) + " < plaintext"}
		if relay := s.RelayCommandLine(); relay != "" {
			lines = append(lines, "relay (each driver connection, for the checks, counts and drops): "+relay)
		}
		return lines
	},
	Run: runMongorestore,
}

func runMongorestore(ctx context.Context, env *engine.Env, p *MongorestoreParams) (out engine.Outputs, err error) {
	s, err := p.Conn.Session(env)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var scratch []string
	if p.DropAfter {
		if scratch, err = p.scratchDBs(); err != nil {
			return nil, fmt.Errorf("drop_after: %w", err)
		}
	}
	// Counts are keyed by source namespace: map targets back through the
	// renames, as mongorestore mapped them forward.
	back, rerr := mongoarchive.NewRenamer(p.NsTo, p.NsFrom)
	if rerr != nil {
		env.Log.Warn("ns_from/ns_to cannot be reversed: counts are keyed by the target namespaces", "error", rerr)
		back, _ = mongoarchive.NewRenamer(nil, nil)
	}
	src, err := artifact.OpenWith(ctx, env, p.Input, p.ReadOptions, artifact.Plain|artifact.VerifySidecar)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	defer src.Close()
	if err := s.Probe(ctx); err != nil {
		return nil, err
	}
	if err := s.Reachable(ctx); err != nil {
		return nil, err
	}
	cl, err := s.Connect()
	if err != nil {
		return nil, err
	}
	defer cl.Disconnect(context.WithoutCancel(ctx))
	for _, db := range scratch {
		names, err := cl.Database(db).ListCollectionNames(ctx, bson.D{})
		if err != nil {
			return nil, fmt.Errorf("drop_after: checking that scratch database %s is new: %w", db, err)
		}
		if len(names) > 0 {
			return nil, fmt.Errorf("drop_after: scratch database %s already exists (%d collections); refusing to restore into it and drop it (drop it by hand if it is a leftover drill)", db, len(names))
		}
	}
	if len(scratch) > 0 {
		// Mongorestore may have written into them: drop them also when
		// the restore fails or the step is cancelled.
		defer func() {
			dropped, derr := mongoDropScratch(ctx, env, cl, scratch)
			if out != nil {
				out["dropped"] = dropped
			}
			if derr != nil {
				err = errors.Join(err, derr)
			}
		}()
	}
	counter := mongoconn.NewCounter()
	start := time.Now()
	_, err = proc.RunFed(ctx, s.Cmd(proc.Cmd{Name: p.Mongorestore, Args: p.args(), Stderr: counter, Stdin: src}))
	targets, _, total, failed := counter.Result()
	out = engine.Outputs{"documents": total, "failures": failed, "duration_ms": time.Since(start).Milliseconds()}
	if err != nil {
		return out, fmt.Errorf("restore of %s failed: %w", p.Input, err)
	}
	if failed > 0 && !p.AllowFailures {
		return out, fmt.Errorf("restore of %s: %d document(s) failed to restore (see log; allow_failures: true to accept)", p.Input, failed)
	}
	counts := map[string]int64{}
	for _, ns := range slices.Sorted(maps.Keys(targets)) {
		n, err := mongoconn.CountDocuments(ctx, cl, ns)
		if err != nil {
			return out, fmt.Errorf("restore of %s: %w", p.Input, err)
		}
		counts["documents:"+back.Get(ns)] = n
		if n != targets[ns] {
			env.Log.Warn("server count differs from what mongorestore reports", "namespace", ns, "counted", n, "mongorestore", targets[ns])
		}
	}
	out["counts"] = counts
	return out, nil
}

// mongoDropScratch drops the scratch databases, with a context of its own
// so a cancelled step still cleans up.
func mongoDropScratch(ctx context.Context, env *engine.Env, cl *mongo.Client, dbs []string) ([]string, error) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	var dropped []string
	var errs []error
	for _, db := range dbs {
		if err := cl.Database(db).Drop(dctx); err != nil {
			errs = append(errs, fmt.Errorf("drop_after: dropping scratch database %s: %w", db, err))
			continue
		}
		env.Log.Info("dropped scratch database", "db", db)
		dropped = append(dropped, db)
	}
	return dropped, errors.Join(errs...)
}
