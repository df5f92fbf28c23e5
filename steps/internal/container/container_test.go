package container

import (
	"slices"
	"strings"
	"testing"

	"github.com/planrun/planrun/steps/internal/proc"
)

func TestWrapContainer(t *testing.T) {
	tg := Target{Container: &Container{Name: "chitlaq-postgres", Engine: "podman", User: "postgres"}}
	c := tg.Wrap(proc.Cmd{Name: "pg_dump", Args: []string{"--format=custom", "--dbname=app"},
		Env: []string{"PATH=/usr/bin", "PGPASSWORD=s3cret-value"}}, "PGPASSWORD", "PGAPPNAME")
	want := []string{"exec", "-i", "--user", "postgres", "-e", "PGPASSWORD", "chitlaq-postgres",
		"sh", "-c", announce, "planrun-exec", "pg_dump", "--format=custom", "--dbname=app"}
	if c.Name != "podman" || !slices.Equal(c.Args, want) {
		t.Fatalf("got %s %q, want podman %q", c.Name, c.Args, want)
	}
	// The value stays in the client's environment, never in argv; an unset
	// name (PGAPPNAME) is not passed at all.
	for _, a := range c.Args {
		if strings.Contains(a, "s3cret") || strings.Contains(a, "=s") || a == "PGAPPNAME" {
			t.Errorf("argument %q", a)
		}
	}
	if !slices.Contains(c.Env, "PGPASSWORD=s3cret-value") {
		t.Errorf("env %q lost the password", c.Env)
	}
}

func TestWrapCompose(t *testing.T) {
	tg := Target{Compose: &Compose{ProjectDir: "/opt/chitlaq", Service: "postgres", File: "compose.prod.yaml"}}
	c := tg.Wrap(proc.Cmd{Name: "psql", Args: []string{"-X"}, Env: []string{"PGAPPNAME=x"}}, "PGPASSWORD", "PGAPPNAME")
	want := []string{"compose", "--project-directory", "/opt/chitlaq", "-f", "compose.prod.yaml", "exec", "-T", "-e", "PGAPPNAME", "postgres", "sh", "-c", announce, "planrun-exec", "psql", "-X"}
	if c.Name != "docker" || !slices.Equal(c.Args, want) {
		t.Fatalf("got %s %q, want docker %q", c.Name, c.Args, want)
	}
	if c.Inside == nil || c.Inside.Announce != announcePrefix {
		t.Fatalf("Inside = %+v: a cancelled step could not stop the tool", c.Inside)
	}
}

func TestWrapHostIsUnchanged(t *testing.T) {
	var tg Target
	c := tg.Wrap(proc.Cmd{Name: "pg_dump", Args: []string{"-a"}})
	if c.Name != "pg_dump" || !slices.Equal(c.Args, []string{"-a"}) {
		t.Fatalf("got %s %q", c.Name, c.Args)
	}
	if tools, moved := tg.HostTools(nil); moved || tools != nil {
		t.Fatalf("host target: HostTools = %q, %v", tools, moved)
	}
}

func TestCheck(t *testing.T) {
	both := Target{Container: &Container{Name: "a"}, Compose: &Compose{ProjectDir: "/p", Service: "s"}}
	if err := both.Check(); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("both: %v", err)
	}
	opt := Target{Container: &Container{Name: "--privileged"}}
	if err := opt.Check(); err == nil {
		t.Error("an option as container name was accepted")
	}
}

func TestEngineDefault(t *testing.T) {
	// No docker on this PATH: podman if it is there, else docker (whose
	// absence Probe and validate --strict then report).
	dir := t.TempDir()
	tg := Target{Container: &Container{Name: "a"}}
	if got := tg.Engine([]string{"PATH=" + dir}); got != "docker" {
		t.Errorf("engine with neither: %s", got)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	tg := Target{Container: &Container{Name: "kaleem-mongo", User: "mongodb"}}
	src := map[string]string{}
	tg.Record(src)
	with := map[string]any{}
	FromRecord(src, with)
	m, _ := with["container"].(map[string]any)
	if m["name"] != "kaleem-mongo" || m["user"] != "mongodb" || with["compose"] != nil {
		t.Errorf("with %v", with)
	}
}
