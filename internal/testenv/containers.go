package testenv

// Real containers for the container steps' tests (issue 12). scripts/testenv.sh
// starts a private dockerd (DOCKER_HOST=unix://$SVC_HOME/docker/docker.sock)
// and two containers of the locally built image planrun-test-base:1
// (scripts/container-images.sh: merged-/usr root, host /usr mounted read-only,
// no network but the container's loopback):
//
//   - PGContainer(t) -> {Name: "planrun-test-pg", User: "postgres", Password}:
//     PostgreSQL 15 inside; psql, pg_dump, pg_restore on PATH. Socket
//     /var/run/postgresql (trust, like the official image) and 127.0.0.1:5432
//     (scram-sha-256: the password is required).
//   - MongoContainer(t) -> {Name: "planrun-test-ferretdb", User: "admin",
//     AuthDB: "admin", Password, URI: "mongodb://127.0.0.1:27017/"}: FerretDB
//     (SQLite) with authentication on; mongodump, mongorestore, mongoimport on PATH.
//   - RequireDocker(t) -> path of the docker client, once the daemon answers.
//   - RequireCompose(t) -> the same, once `docker compose` works too.
//
// `docker exec` runs as root in both (the servers run as their own users).
// The passwords are only in files on the host (mode 0600), never in the
// containers' config env: a test that finds them in a process's env or argv
// found the step under test leaking them. Each helper fails under CI=true and
// skips otherwise when Docker or the container is not there.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// PG is the PostgreSQL container started by scripts/testenv.sh.
type PG struct {
	Name     string // container name, for docker exec
	User     string // superuser role
	Password string // the role's password (required over 127.0.0.1, not on the socket)
}

// Mongo is the FerretDB container started by scripts/testenv.sh.
type Mongo struct {
	Name     string // container name, for docker exec
	User     string // user with access to every database
	AuthDB   string // its authentication database
	Password string
	URI      string // address inside the container, without credentials
}

// stop fails the test under CI and skips it otherwise.
func stop(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// RequireDocker returns the docker client's path once the daemon named by
// DOCKER_HOST answers `docker info` (Fatal under CI, Skip otherwise).
func RequireDocker(t testing.TB) string {
	t.Helper()
	Require(t, "Docker daemon", "DOCKER_HOST")
	docker := RequireTool(t, "docker")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, docker, "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		stop(t, "Docker daemon at %s not answering: %v: %s", os.Getenv("DOCKER_HOST"), err, bytes.TrimSpace(out))
	}
	return docker
}

// RequireCompose is RequireDocker for tests that also need the Compose
// plugin (`docker compose`, found under DOCKER_CONFIG/cli-plugins).
func RequireCompose(t testing.TB) string {
	t.Helper()
	docker := RequireDocker(t)
	if out, err := exec.Command(docker, "compose", "version").CombinedOutput(); err != nil {
		stop(t, "docker compose (scripts/testenv.sh builds it; DOCKER_CONFIG=%s): %v: %s", os.Getenv("DOCKER_CONFIG"), err, bytes.TrimSpace(out))
	}
	return docker
}

// requireContainer checks that the named container runs and returns the
// password read from the file named by pwEnv.
func requireContainer(t testing.TB, what, nameEnv, pwEnv string) (name, password string) {
	t.Helper()
	docker := RequireDocker(t)
	env := Require(t, what, nameEnv, pwEnv)
	name = env[nameEnv]
	out, err := exec.Command(docker, "inspect", "-f", "{{.State.Running}}", name).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "true" {
		stop(t, "%s: container %s not running (%v): %s", what, name, err, bytes.TrimSpace(out))
	}
	pw, err := os.ReadFile(env[pwEnv])
	if err != nil || len(bytes.TrimSpace(pw)) == 0 {
		stop(t, "%s: password file %s: %v (empty or unreadable)", what, env[pwEnv], err)
	}
	return name, string(bytes.TrimSpace(pw))
}

// PGContainer returns the running PostgreSQL container.
func PGContainer(t testing.TB) PG {
	t.Helper()
	name, pw := requireContainer(t, "PostgreSQL container", "PG_CONTAINER", "PG_CONTAINER_PASSWORD_FILE")
	return PG{Name: name, User: envOr("PG_CONTAINER_USER", "postgres"), Password: pw}
}

// MongoContainer returns the running FerretDB container.
func MongoContainer(t testing.TB) Mongo {
	t.Helper()
	name, pw := requireContainer(t, "FerretDB container", "MONGO_CONTAINER", "MONGO_CONTAINER_PASSWORD_FILE")
	return Mongo{Name: name, User: envOr("MONGO_CONTAINER_USER", "admin"),
		AuthDB: envOr("MONGO_CONTAINER_AUTH_DB", "admin"), Password: pw, URI: "mongodb://127.0.0.1:27017/"}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
