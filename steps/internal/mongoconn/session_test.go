package mongoconn

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps/internal/container"
	"github.com/planrun/planrun/steps/internal/proc"
)

// The --config document reaches the tool in the container byte for byte,
// whatever the password holds (quotes, $, backslashes, backticks, YAML
// and here-document syntax), on fd 3, and the variable is gone from the
// tool's environment.
func TestContainerConfigVerbatim(t *testing.T) {
	testenv.RequireDocker(t)
	m := testenv.MongoContainer(t)
	uri := "mongodb://u:" + `a'b"c$HOME\n` + "`id`" + `%20#: - EOF{x}` + "@127.0.0.1:27017/?authSource=admin"
	env := &engine.Env{Environ: []string{"PATH=" + os.Getenv("PATH"), "DOCKER_HOST=" + os.Getenv("DOCKER_HOST"), "M_URI=" + uri}, Secrets: engine.NewRedactor()}
	c := Conn{URIEnv: "M_URI", Target: container.Target{Container: &container.Container{Name: m.Name}}}
	s, err := c.Session(env)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Cmd's wrapping, with a tool that shows what it got.
	var out bytes.Buffer
	cmd := s.target.Wrap(proc.Cmd{Name: "sh", Args: []string{"-c", configScript, "sh", "sh", "-c", `cat /dev/fd/3; echo; env | grep -c ` + ConfigEnv + ` || true`},
		Env: s.Environ, Secrets: env.Secrets, Stdout: &out}, ConfigEnv)
	if _, err := proc.Run(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	doc, rest, _ := strings.Cut(out.String(), "\n\n")
	var got struct {
		URI string `yaml:"uri"`
	}
	if err := yaml.Unmarshal([]byte(doc), &got); err != nil || got.URI != uri {
		t.Fatalf("config in the container: %q (%v), want uri %q", out.String(), err, uri)
	}
	if strings.TrimSpace(rest) != "0" {
		t.Errorf("%s still in the tool's environment: %q", ConfigEnv, rest)
	}
}
