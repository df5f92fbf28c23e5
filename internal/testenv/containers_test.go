package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// docker runs the docker client with stdin and extra env, returning stdout and the error
// (with stderr in it).
func docker(t *testing.T, stdin string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("docker", args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), &execError{err: err, stderr: errb.String()}
	}
	return out.String(), nil
}

type execError struct {
	err    error
	stderr string
}

func (e *execError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

func TestPGContainer(t *testing.T) {
	pg := PGContainer(t)
	// The socket: trust, like the official image.
	out, err := docker(t, "select 40 + 2;\n", nil, "exec", "-i", pg.Name, "psql", "-U", pg.User, "-tA", "-v", "ON_ERROR_STOP=1")
	if err != nil || strings.TrimSpace(out) != "42" {
		t.Fatalf("psql over the socket in %s: %q, %v", pg.Name, out, err)
	}
	// The container's localhost needs the password: without it psql fails, with it
	// (by name only in docker's argv, the value in docker's env) it connects.
	tcp := []string{"psql", "-h", "127.0.0.1", "-U", pg.User, "-w", "-tA", "-v", "ON_ERROR_STOP=1"}
	if out, err := docker(t, "select 1;\n", nil, append([]string{"exec", "-i", pg.Name}, tcp...)...); err == nil {
		t.Fatalf("psql over 127.0.0.1 in %s without a password succeeded: %q", pg.Name, out)
	}
	out, err = docker(t, "select current_user, version();\n", []string{"PGPASSWORD=" + pg.Password},
		append([]string{"exec", "-i", "-e", "PGPASSWORD", pg.Name}, tcp...)...)
	if err != nil || !strings.HasPrefix(out, pg.User+"|PostgreSQL 15.") {
		t.Fatalf("psql over 127.0.0.1 in %s with the password: %q, %v", pg.Name, out, err)
	}
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		if out, err := docker(t, "", nil, "exec", pg.Name, tool, "--version"); err != nil || !strings.Contains(out, "PostgreSQL) 15.") {
			t.Errorf("%s --version in %s: %q, %v", tool, pg.Name, out, err)
		}
	}
}

func TestMongoContainer(t *testing.T) {
	m := MongoContainer(t)
	for _, tool := range []string{"mongodump", "mongorestore"} {
		if out, err := docker(t, "", nil, "exec", m.Name, tool, "--version"); err != nil || !strings.HasPrefix(out, tool+" version: 100.") {
			t.Errorf("%s --version in %s: %q, %v", tool, m.Name, out, err)
		}
	}
	// Authentication is on: a dump without credentials fails, one with the password
	// (as a config on stdin, never in an argv) dumps admin.system.users.
	uri := "mongodb://" + m.User + "@127.0.0.1:27017/?authSource=" + m.AuthDB
	if _, err := docker(t, "", nil, "exec", m.Name, "mongodump", "--uri", m.URI, "--archive"); err == nil {
		t.Fatalf("mongodump in %s without credentials succeeded", m.Name)
	}
	if _, err := docker(t, "password: wrong-"+m.Password+"\n", nil, "exec", "-i", m.Name, "mongodump", "--config", "/dev/stdin", "--uri", uri, "--archive"); err == nil {
		t.Fatalf("mongodump in %s with a wrong password succeeded", m.Name)
	}
	out, err := docker(t, "password: "+m.Password+"\n", nil, "exec", "-i", m.Name, "mongodump", "--config", "/dev/stdin", "--uri", uri, "--archive")
	if err != nil || !strings.Contains(out, "system.users") {
		t.Fatalf("authenticated mongodump in %s: %d bytes, %v", m.Name, len(out), err)
	}
}
