package container

import (
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps/internal/proc"
)

// In a real container on this host, a tool's output takes the FIFO, every
// byte arrives, and nothing is left in the container's /tmp; without a
// root to enter, the same command goes through the engine's relay.
func TestFIFORealContainer(t *testing.T) {
	docker := testenv.RequireDocker(t)
	pg := testenv.PGContainer(t)
	const n = 64 << 20
	want := sha256.Sum256([]byte(strings.Repeat("x", n)))
	for _, direct := range []bool{true, false} {
		tg := Target{Container: &Container{Name: pg.Name, Engine: "docker", User: "postgres"}}
		if err := tg.Probe(context.Background(), os.Environ(), nil); err != nil {
			t.Fatal(err)
		}
		if tg.root == "" {
			t.Fatal("Probe found no container root to enter; the tests run as root on the engine's host")
		}
		if !direct {
			tg.root = ""
		}
		h := sha256.New()
		c := tg.Wrap(proc.Cmd{Name: "sh", Args: []string{"-c", "head -c " + strconv.Itoa(n) + " /dev/zero | tr '\\0' x"},
			Env: os.Environ(), Stdout: h})
		// Which way the container's shell took: its announcement says.
		announced := ""
		if attach := c.Inside.Attach; attach != nil {
			c.Inside.Attach = func(pid string, words []string) func(error) error {
				announced = strings.Join(words, " ")
				return attach(pid, words)
			}
		}
		if _, err := proc.Run(context.Background(), c); err != nil {
			t.Fatalf("direct=%v: %v", direct, err)
		}
		if got := h.Sum(nil); string(got) != string(want[:]) {
			t.Errorf("direct=%v: the output differs", direct)
		}
		if used := announced == "fifo"; used != direct {
			t.Errorf("direct=%v: FIFO used = %v", direct, used)
		}
		out, err := exec.Command(docker, "exec", pg.Name, "ls", "-A", "/tmp").CombinedOutput()
		if err != nil || strings.Contains(string(out), ".planrun-") {
			t.Errorf("direct=%v: container /tmp: %v %s", direct, err, out)
		}
	}
}
