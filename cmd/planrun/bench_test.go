package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps"
)

// planOf returns a plan with n exec steps, each referring to the previous
// one, so that validation does real work (expressions, references).
func planOf(n int, cmd string) []byte {
	var b strings.Builder
	b.WriteString("version: 1\nname: bench\nvars:\n  root: /tmp\n  stamp: ${{ now().Format(\"20060102\") }}\ndefaults:\n  timeout: 1m\n  retry: {attempts: 2, delay: 1s}\nsteps:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - id: s%d\n    type: exec\n", i)
		if i > 0 {
			fmt.Fprintf(&b, "    when: steps.s%d.status == \"success\"\n", i-1)
		}
		fmt.Fprintf(&b, "    with: {command: [%s], env: {STAMP: \"${{ vars.stamp }}\", ROOT: \"${{ vars.root }}/x\"}}\n", cmd)
	}
	return []byte(b.String())
}

// BenchmarkValidate50Steps measures `planrun validate` work on a 50-step plan.
func BenchmarkValidate50Steps(b *testing.B) {
	src := planOf(50, "\"true\"")
	reg := steps.All()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := engine.Load("bench.yaml", src, reg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/plan")
}

// BenchmarkApply100ExecTrue runs a 100-step plan of `exec true`, recorded
// in a real SQLite run store; compare with BenchmarkBareExec100True.
func BenchmarkApply100ExecTrue(b *testing.B) {
	dir := b.TempDir()
	st, err := store.Open(filepath.Join(dir, "runs.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	benchApply100(b, dir, st)
}

// BenchmarkApply100ExecTrueCentral is the same plan recorded as planrun
// records with PLANRUN_DB=postgres://…: each write to the host's SQLite
// record, then to the central PostgreSQL store over loopback.
func BenchmarkApply100ExecTrueCentral(b *testing.B) {
	dir := b.TempDir()
	local, err := store.Open(filepath.Join(dir, "runs.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer local.Close()
	central, err := store.Open(testenv.PGDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer central.Close()
	benchApply100(b, dir, store.NewSynced(local, central, nil, func(err error) { b.Fatal(err) }))
}

func benchApply100(b *testing.B, dir string, rec engine.Recorder) {
	p, err := engine.Load("bench.yaml", planOf(100, "\"true\""), steps.All())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		scope, err := engine.Prepare(p, engine.Invocation{Environ: []string{"PATH=/usr/bin:/bin"}})
		if err != nil {
			b.Fatal(err)
		}
		res := engine.Apply(context.Background(), p, scope, engine.Options{Recorder: rec, StateDir: dir, Stderr: io.Discard})
		if res.ExitCode != 0 {
			b.Fatal(res.Err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100/1e6, "ms/step")
}

// BenchmarkBareExec100True is the floor: 100 plain fork/execs of true.
func BenchmarkBareExec100True(b *testing.B) {
	path, err := exec.LookPath("true")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		for i := 0; i < 100; i++ {
			if err := exec.Command(path).Run(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100/1e6, "ms/step")
}
