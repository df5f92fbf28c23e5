package steps

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps/internal/container"
	"github.com/planrun/planrun/steps/internal/mongoarchive"
	"github.com/planrun/planrun/steps/internal/mongoconn"
)

func TestMongoContainerValidation(t *testing.T) {
	for with, want := range containerCases("db: a\noutput: /b/x\n", map[string]string{
		"db: a\noutput: /b/x": "exactly one of uri and uri_env",
		"uri: mongodb://h/\nuri_env: X\noutput: /b/x\ncontainer: {name: c}": "exactly one of uri and uri_env",
		"uri: http://h/\noutput: /b/x\ncontainer: {name: c}":                "mongodb://",
	}) {
		if _, probs := dbTryDecode(Mongodump, with); len(probs) == 0 || !strings.Contains(fmt.Sprint(probs), want) {
			t.Errorf("%q: problems %v, want %q", with, probs, want)
		}
	}
	// validate --strict looks for the engine, not the tools, in a container.
	p := dbDecode(t, Mongodump, "db: a\noutput: /b/x\ncontainer: {name: c, engine: podman}")
	if tools, moved := engine.HostToolser(p).HostTools(nil); !moved || !reflect.DeepEqual(tools, []string{"podman"}) {
		t.Errorf("host tools %v %v", tools, moved)
	}
	// In a container the uri defaults to the container's own server.
	if _, probs := dbTryDecode(Mongorestore, "input: /b/x\ncompose: {project_dir: /opt/kaleem, service: mongo}"); len(probs) != 0 {
		t.Errorf("container without uri: %v", probs)
	}
}

// Dry-run shows the exact engine command line: -e PLANRUN_MONGO_CONFIG,
// never the URI or its password.
func TestMongoContainerPreview(t *testing.T) {
	env := dbEnv(t, "KALEEM_MONGO_URI=mongodb://backup:hunter2pw@127.0.0.1:27017/kaleem?authSource=admin")
	p := dbDecode(t, Mongodump, "uri_env: KALEEM_MONGO_URI\ndb: kaleem\noutput: /b/x.archive.zst\ncontainer: {name: kaleem-mongo, engine: docker}")
	joined := strings.Join(Mongodump.Preview(env, p), "\n")
	for _, want := range []string{
		"run: docker exec -i -e PLANRUN_MONGO_CONFIG kaleem-mongo sh -c ",
		` sh -c 'c=$PLANRUN_MONGO_CONFIG; unset PLANRUN_MONGO_CONFIG; exec "$@" 3<<EOF
$c
EOF' sh mongodump --config=/dev/fd/3 --archive --db=kaleem`,
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("preview lacks %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "hunter2pw") || strings.Contains(joined, "backup:") {
		t.Errorf("preview shows the uri:\n%s", joined)
	}
	r := dbDecode(t, Mongorestore, "input: /b/x\ndrop: true\ncompose: {project_dir: /opt/kaleem, service: mongo, user: mongodb}")
	joined = strings.Join(Mongorestore.Preview(env, r), "\n")
	if !strings.Contains(joined, "run: docker compose --project-directory /opt/kaleem exec -T --user mongodb -e PLANRUN_MONGO_CONFIG mongo sh -c ") ||
		!strings.Contains(joined, " sh mongorestore --config=/dev/fd/3 --archive --drop < plaintext") {
		t.Errorf("restore preview:\n%s", joined)
	}
	if !strings.Contains(joined, `relay (each driver connection, for the checks, counts and drops): docker compose --project-directory /opt/kaleem exec -T --user mongodb mongo sh -c `) ||
		!strings.Contains(joined, `planrun-tunnel 127.0.0.1 27017`) {
		t.Errorf("restore preview lacks the relay:\n%s", joined)
	}
	// On the host nothing changes.
	h := dbDecode(t, Mongodump, "uri_env: KALEEM_MONGO_URI\ndb: kaleem\noutput: /b/x")
	if got := strings.Join(Mongodump.Preview(env, h), "\n"); !strings.Contains(got, "run: mongodump '--config=<private 0600 file with the uri>' --archive --db=kaleem") {
		t.Errorf("host preview:\n%s", got)
	}
}

// A dump taken in a container restores into the same container.
func TestMongodumpInverseContainer(t *testing.T) {
	p := dbDecode(t, Mongodump, "db: kaleem\noutput: /b/x\ncontainer: {name: kaleem-mongo, user: mongodb}")
	src := p.source(mongoconn.DefaultContainerURI, &mongoarchive.Summary{})
	if src["container_name"] != "kaleem-mongo" || src["host"] != "127.0.0.1:27017" {
		t.Fatalf("source %v", src)
	}
	with, err := mongodumpInverse(engine.ArtifactRecord{Path: "/b/x", Source: src}, engine.RestoreTarget{Input: "/b/x"})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := with["container"].(map[string]any); c["name"] != "kaleem-mongo" || c["user"] != "mongodb" || with["uri_env"] != nil {
		t.Fatalf("with %v", with)
	}
	if _, probs := dbTryDecode(Mongorestore, "input: /b/x\nns_include: ['kaleem.*']\ncontainer: {name: kaleem-mongo, user: mongodb}"); len(probs) > 0 {
		t.Fatal(probs)
	}
}

// containerFiles lists the container's files outside the server's data
// and the read-only mounts, for a before/after comparison.
func containerFiles(t *testing.T, docker, ctr string) []string {
	t.Helper()
	out, err := exec.Command(docker, "exec", ctr, "find", "/", "-xdev",
		"(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/dev", "-o", "-path", "/usr", "-o",
		"-path", "/opt/planrun-tools", "-o", "-path", "/data/ferretdb", ")", "-prune", "-o", "-print").CombinedOutput()
	if err != nil {
		t.Fatalf("find in %s: %v\n%s", ctr, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	slices.Sort(lines)
	return lines
}

// containerProcs counts the processes running in the container by argv
// (ps itself left out).
func containerProcs(t *testing.T, docker, ctr string) map[string]int {
	t.Helper()
	out, err := exec.Command(docker, "exec", ctr, "ps", "-eo", "args=").CombinedOutput()
	if err != nil {
		t.Fatalf("ps in %s: %v\n%s", ctr, err, out)
	}
	procs := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(l, "ps ") {
			procs[l]++
		}
	}
	return procs
}

// mongoContainerClient is a driver client for the test's own fixtures
// and checks, through the container (the test container has no network
// the host reaches).
func mongoContainerClient(t *testing.T, ctr, uri string) *mongo.Client {
	t.Helper()
	c := mongoconn.Conn{URI: uri, Target: container.Target{Container: &container.Container{Name: ctr}}}
	s, err := c.Session(dbEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := s.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Disconnect(context.Background()) })
	return cl
}

// The round trip through a real FerretDB container with authentication:
// mongodump inside it → a scratch drill (counts and drop through the
// container) → drop → mongorestore inside it, identical counts and
// content; the password in no argv on the host (the containers' processes
// included: the host sees them) and nothing left in the container;
// mongodump killed inside the container mid-stream fails the step with no
// artifact; a missing container is named.
func TestMongoRealContainerRoundTrip(t *testing.T) {
	docker := testenv.RequireDocker(t)
	m := testenv.MongoContainer(t)
	u, err := url.Parse(m.URI)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(m.User, m.Password)
	u.RawQuery = "authSource=" + url.QueryEscape(m.AuthDB)
	uri := u.String()
	secrets := []string{m.Password}
	if esc := url.QueryEscape(m.Password); esc != m.Password {
		secrets = append(secrets, esc)
	}
	filesBefore, procsBefore := containerFiles(t, docker, m.Name), containerProcs(t, docker, m.Name)

	cl := mongoContainerClient(t, m.Name, uri)
	db := mongoFixture(t, cl, 5000)
	mongoMoreCollections(t, cl, db, 300)
	want, wantCounts := mongoChecksum(t, cl, db), mongoServerCounts(t, cl, db, db)
	noIdx := mongoNoIndexes(t, cl, db)
	idFile, recip := dbAgeKeys(t)
	out := filepath.Join(t.TempDir(), "m.archive.zst.age")
	ctr := fmt.Sprintf("container: {name: %s, engine: docker}\n", m.Name)

	s := startSampler(secrets...)
	env := dbEnv(t, "KALEEM_MONGO_URI="+uri)
	_, err = dbRun(t, Mongodump, env, ctr+fmt.Sprintf("uri_env: KALEEM_MONGO_URI\ndb: %s\noutput: %s\nencrypt: {recipients: [%s]}", db, out, recip))
	s.finish(t, "docker", "mongodump")
	if err != nil {
		t.Fatal(err)
	}
	recs := recorded(t, env)
	if len(recs) != 1 {
		t.Fatalf("records %+v", recs)
	}
	rec := *recs[0]
	if !reflect.DeepEqual(rec.Counts, wantCounts) || rec.Source["container_name"] != m.Name {
		t.Fatalf("record: %v %v, server counts %v", rec.Source, rec.Counts, wantCounts)
	}

	// A drill: scratch copy, counted and dropped through the container.
	scratch := db + "_drill"
	t.Cleanup(func() { cl.Database(scratch).Drop(context.Background()) })
	_, p := inverseDecode(t, Mongodump.Type(), rec, engine.RestoreTarget{Input: out, Scratch: true, ScratchSuffix: "_drill", IdentityFile: idFile})
	rp := p.(*MongorestoreParams)
	rp.NoIndexRestore = noIdx
	if rp.Container == nil || rp.Container.Name != m.Name {
		t.Fatalf("inverse params: %+v", rp)
	}
	s = startSampler(secrets...)
	res, err := Mongorestore.Type().Run(context.Background(), dbEnv(t, "KALEEM_MONGO_URI="+uri), rp)
	s.finish(t, "docker", "mongorestore")
	if err != nil {
		t.Fatal(err)
	}
	if d := engine.CompareCounts(rec.Counts, restoredCounts(t, res)); len(d) != 0 {
		t.Errorf("drill counts: %v", d)
	}
	if mongoDBExists(t, cl, scratch) || !reflect.DeepEqual(res["dropped"], []string{scratch}) {
		t.Errorf("scratch database %s not dropped (dropped %v)", scratch, res["dropped"])
	}

	// The real restore, into the emptied database.
	if err := cl.Database(db).Drop(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, p = inverseDecode(t, Mongodump.Type(), rec, engine.RestoreTarget{Input: out, IdentityFile: idFile})
	p.(*MongorestoreParams).NoIndexRestore = noIdx
	res, err = Mongorestore.Type().Run(context.Background(), dbEnv(t, "KALEEM_MONGO_URI="+uri), p)
	if err != nil {
		t.Fatal(err)
	}
	if d := engine.CompareCounts(rec.Counts, restoredCounts(t, res)); len(d) != 0 {
		t.Errorf("restore counts: %v", d)
	}
	if got := mongoChecksum(t, cl, db); got != want {
		t.Errorf("content checksum %s after restore, want %s", got, want)
	}
	if got := mongoServerCounts(t, cl, db, db); !reflect.DeepEqual(got, wantCounts) {
		t.Errorf("server counts %v after restore, want %v", got, wantCounts)
	}
	if !noIdx && !mongoHasIndex(t, cl, db, "name_1") {
		t.Error("unique index name_1 not restored")
	}

	// A wrong container name is named, before anything runs.
	_, err = dbRun(t, Mongorestore, dbEnv(t, "KALEEM_MONGO_URI="+uri), fmt.Sprintf("uri_env: KALEEM_MONGO_URI\ninput: %s\nidentity_file: %s\ncontainer: {name: planrun-no-such-ctr}", out, idFile))
	if err == nil || !strings.Contains(err.Error(), `container "planrun-no-such-ctr" not found`) {
		t.Errorf("missing container: err %v", err)
	}

	// mongodump killed inside the container while it streams: pkill is
	// retried until it finds this dump (the pattern is its argv, not the
	// sh wrapper's).
	big := uniqueName("planrun_mbig")
	t.Cleanup(func() { cl.Database(big).Drop(context.Background()) })
	mongoMoreCollections(t, cl, big, 4000)
	dir := t.TempDir()
	done := make(chan struct{})
	killed := make(chan bool, 1)
	go func() {
		for {
			select {
			case <-done:
				killed <- false
				return
			default:
			}
			if exec.Command(docker, "exec", m.Name, "pkill", "-KILL", "-f", "^mongodump --config=/dev/fd/3 --archive --db="+big).Run() == nil {
				killed <- true
				return
			}
		}
	}()
	_, err = dbRun(t, Mongodump, dbEnv(t, "KALEEM_MONGO_URI="+uri), ctr+fmt.Sprintf("uri_env: KALEEM_MONGO_URI\ndb: %s\noutput: %s", big, filepath.Join(dir, "big.archive.zst")))
	close(done)
	if !<-killed {
		t.Fatalf("mongodump finished before pkill found it (err %v): the check proved nothing", err)
	}
	if err == nil || !strings.Contains(err.Error(), "mongodump failed, no artifact written") {
		t.Fatalf("killed mongodump: err %v", err)
	}
	dbNoArtifact(t, dir)

	// Nothing left behind: no file (listing and a search of the contents
	// for the password, fed over stdin), no process once the test's own
	// client is gone.
	cl.Database(big).Drop(context.Background())
	cl.Database(db).Drop(context.Background())
	cl.Disconnect(context.Background())
	if after := containerFiles(t, docker, m.Name); !reflect.DeepEqual(after, filesBefore) {
		t.Errorf("container files changed:\nbefore %v\nafter  %v", filesBefore, after)
	}
	grep := exec.Command(docker, "exec", "-i", m.Name, "grep", "-rlsF", "-f", "/dev/stdin",
		"--exclude-dir=proc", "--exclude-dir=sys", "--exclude-dir=dev", "--exclude-dir=usr", "--exclude-dir=planrun-tools", "/")
	grep.Stdin = strings.NewReader(m.Password + "\n")
	found, err := grep.Output()
	if xe, ok := err.(*exec.ExitError); !ok || xe.ExitCode() != 1 || len(found) != 0 {
		t.Errorf("grep for the password in the container (exit 1 = not found): %v: %s", err, found)
	}
	for p, n := range containerProcs(t, docker, m.Name) {
		if n > procsBefore[p] {
			t.Errorf("%d process(es) left in the container: %s", n-procsBefore[p], p)
		}
	}
}

// A container that does not exist fails with an error naming it.
func TestMongoRealContainerMissing(t *testing.T) {
	testenv.RequireDocker(t)
	dir := t.TempDir()
	_, err := dbRun(t, Mongodump, dbEnv(t), "db: a\noutput: "+filepath.Join(dir, "x")+"\ncontainer: {name: planrun-no-such-ctr, engine: docker}")
	if err == nil || !strings.Contains(err.Error(), `container "planrun-no-such-ctr" not found`) {
		t.Fatalf("err %v", err)
	}
	dbNoArtifact(t, dir)
}

// A server the container cannot reach fails fast, before any artifact,
// with the relay's own error.
func TestMongoRealContainerUnreachable(t *testing.T) {
	testenv.RequireDocker(t)
	m := testenv.MongoContainer(t)
	dir := t.TempDir()
	_, err := dbRun(t, Mongodump, dbEnv(t), fmt.Sprintf("uri: mongodb://127.0.0.1:1/\ndb: a\noutput: %s\ncontainer: {name: %s}", filepath.Join(dir, "x"), m.Name))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("MongoDB unreachable: connecting to 127.0.0.1:1 inside container %q", m.Name)) || !strings.Contains(err.Error(), "Connection refused") {
		t.Fatalf("err %v", err)
	}
	dbNoArtifact(t, dir)
}
