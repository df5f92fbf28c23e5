package steps

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/planrun/planrun/engine"
)

// runInverse derives the restore step for rec and runs it.
func runInverse(t *testing.T, backup *engine.Type, rec engine.ArtifactRecord, tgt engine.RestoreTarget) (string, engine.Outputs) {
	t.Helper()
	name, p := inverseDecode(t, backup, rec, tgt)
	env, logs := stepEnv(t)
	out, err := All().Lookup(name).Run(context.Background(), env, p)
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, logs.String())
	}
	return name, out
}

func restoredCounts(t *testing.T, out engine.Outputs) map[string]int64 {
	t.Helper()
	c, ok := engine.CountsOf(out["counts"])
	if !ok {
		t.Fatalf("no counts in outputs %v", out)
	}
	return c
}

// A tar artifact records where it came from and what it holds; its
// inverse restores it into a scratch directory (FIFOs counted, not made)
// or an operator's directory (FIFOs made), measuring the same counts.
func TestTarRecordAndUntarInverse(t *testing.T) {
	src := tree(t, 64<<10)
	fifo := filepath.Join(src, "var/ctl.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(fifo, 0o620) // past the umask
	out := filepath.Join(t.TempDir(), "a.tar.zst.age")
	env, _ := stepEnv(t)
	key, _ := filepath.Abs(filepath.Join(keys, "demo.agekey"))
	res, err := runStep(t, context.Background(), env, "tar", fmt.Sprintf("{paths: [%s], exclude: ['*.bin'], output: %s, encrypt: {recipients: [%s]}}", src, out, pubKey(t)))
	if err != nil {
		t.Fatal(err)
	}
	recs := recorded(t, env)
	if len(recs) != 1 {
		t.Fatalf("records %+v", recs)
	}
	rec := *recs[0]
	wantSource := map[string]string{"kind": "files", "paths": src, "exclude": "*.bin"}
	if !reflect.DeepEqual(rec.Source, wantSource) {
		t.Errorf("source %v, want %v", rec.Source, wantSource)
	}
	// app.conf (60000 bytes); hard.conf is a second name, not a file;
	// the dirs are data and its 6 descendants; *.bin are excluded.
	wantCounts := map[string]int64{"files": 1, "dirs": 7, "symlinks": 1, "bytes": 60000, "special": 1}
	if !reflect.DeepEqual(rec.Counts, wantCounts) {
		t.Errorf("counts %v, want %v", rec.Counts, wantCounts)
	}
	if res["special"] != 1 {
		t.Errorf("outputs %v", res)
	}
	tar := All().Lookup("tar")

	t.Run("scratch", func(t *testing.T) {
		dir := t.TempDir()
		tgt := engine.RestoreTarget{Input: out, Scratch: true, ScratchSuffix: "_drill_1", Dir: dir, IdentityFile: key}
		name, got := runInverse(t, tar, rec, tgt)
		if name != "untar" {
			t.Fatalf("inverse type %s", name)
		}
		if d := engine.CompareCounts(rec.Counts, restoredCounts(t, got)); len(d) > 0 {
			t.Errorf("count diffs %v", d)
		}
		if got["special_skipped"] != 1 {
			t.Errorf("outputs %v", got)
		}
		restored := filepath.Join(dir, strings.TrimPrefix(src, "/"))
		if _, err := os.Lstat(filepath.Join(restored, "var/ctl.fifo")); !os.IsNotExist(err) {
			t.Errorf("scratch restore made the fifo: %v", err)
		}
		shell(t, fmt.Sprintf("diff -r --no-dereference -x '*.bin' -x '*.fifo' %s %s", src, restored), "diff")
	})
	t.Run("operator-dir", func(t *testing.T) {
		dir := t.TempDir()
		_, p := inverseDecode(t, tar, rec, engine.RestoreTarget{Input: out, Dir: dir, IdentityFile: key})
		if up := p.(*UntarParams); up.Target != dir || !up.Overwrite || !up.CreateSpecial || !up.PreserveOwner {
			t.Fatalf("params %+v", up)
		}
		_, got := runInverse(t, tar, rec, engine.RestoreTarget{Input: out, Dir: dir, IdentityFile: key})
		if d := engine.CompareCounts(rec.Counts, restoredCounts(t, got)); len(d) > 0 {
			t.Errorf("count diffs %v", d)
		}
		fi, err := os.Lstat(filepath.Join(dir, strings.TrimPrefix(src, "/"), "var/ctl.fifo"))
		if err != nil || fi.Mode()&os.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o620 {
			t.Errorf("fifo: %v %v", fi, err)
		}
	})
	t.Run("original-location", func(t *testing.T) {
		// Not run: it would write under /. The params must say so.
		_, p := inverseDecode(t, tar, rec, engine.RestoreTarget{Input: out, PassphraseFile: "/k"})
		up := p.(*UntarParams)
		if up.Target != "/" || !up.Overwrite || up.Input != out || up.PassphraseFile != "/k" {
			t.Fatalf("params %+v", up)
		}
		if _, err := tar.Inverse.With(rec, engine.RestoreTarget{Input: out, Scratch: true}); err == nil {
			t.Fatal("a scratch restore without a directory was derived")
		}
		// Relative paths were stored relative to the backup's cwd: "/" is a guess.
		rel := rec
		rel.Source = map[string]string{"kind": "files", "paths": "/etc,data/app"}
		w, err := tar.Inverse.With(rel, engine.RestoreTarget{Input: out})
		if err != nil {
			t.Fatal(err)
		}
		if target, ok := w["target"]; ok {
			t.Fatalf("relative path restored to %v: the operator must name the directory", target)
		}
	})
}

// encrypt and compress restore exactly the file they read: the layer
// they added comes off, the input's own compression stays.
func TestEncryptCompressInverse(t *testing.T) {
	key, _ := filepath.Abs(filepath.Join(keys, "demo.agekey"))
	dir := t.TempDir()
	plain := bytes.Repeat([]byte("row,value\n"), 50000)
	gz := filepath.Join(dir, "legacy.sql.gz")
	shell(t, fmt.Sprintf("printf 'x%%.0s' $(seq 1 1000) | gzip -c > %s", gz), "gzip", "seq")
	gzBytes, _ := os.ReadFile(gz)
	sql := filepath.Join(dir, "dump.sql")
	os.WriteFile(sql, plain, 0o600)
	cases := []struct {
		name, typ, input, with, restore string
		content                         []byte
	}{
		{"encrypt-zstd", "encrypt", sql, "encrypt: {recipients: [" + pubKey(t) + "]}", "decrypt", plain},
		{"encrypt-none-of-gz", "encrypt", gz, "compress: none, encrypt: {recipients: [" + pubKey(t) + "]}", "decrypt", gzBytes},
		{"compress-zstd-of-gz", "compress", gz, "", "decompress", gzBytes},
		{"compress-gzip-encrypted", "compress", sql, "compress: gzip, encrypt: {recipients: [" + pubKey(t) + "]}", "decompress", plain},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), filepath.Base(c.input)+".out")
			env, _ := stepEnv(t)
			if _, err := runStep(t, context.Background(), env, c.typ, fmt.Sprintf("{input: %s, output: %s, %s}", c.input, out, c.with)); err != nil {
				t.Fatal(err)
			}
			rec := *recorded(t, env)[0]
			if rec.Source["kind"] != "file" || rec.Source["input"] != c.input || rec.Counts["bytes"] != int64(len(c.content)) {
				t.Fatalf("record source %v counts %v", rec.Source, rec.Counts)
			}
			typ := All().Lookup(c.typ)
			scratch := t.TempDir()
			name, got := runInverse(t, typ, rec, engine.RestoreTarget{Input: out, Scratch: true, Dir: scratch, IdentityFile: key})
			if name != c.restore {
				t.Fatalf("inverse %s", name)
			}
			b, err := os.ReadFile(filepath.Join(scratch, filepath.Base(c.input)))
			if err != nil || !bytes.Equal(b, c.content) {
				t.Fatalf("restored %d bytes, want %d (%v)", len(b), len(c.content), err)
			}
			if d := engine.CompareCounts(rec.Counts, restoredCounts(t, got)); len(d) > 0 {
				t.Errorf("count diffs %v", d)
			}
			// Non-scratch: back to the original path, never over an existing file.
			_, p := inverseDecode(t, typ, rec, engine.RestoreTarget{Input: out, IdentityFile: key})
			if o := reflect.ValueOf(p).Elem().FieldByName("Output").String(); o != c.input {
				t.Errorf("original-location output %q, want %q", o, c.input)
			}
			if o := reflect.ValueOf(p).Elem().FieldByName("Overwrite").Bool(); o {
				t.Errorf("original-location restore overwrites")
			}
		})
	}
	_, err := All().Lookup("compress").Inverse.With(engine.ArtifactRecord{Path: "/b/x", Compression: "none"}, engine.RestoreTarget{Input: "/b/x", Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "decrypt") {
		t.Errorf("compress: none: %v", err)
	}
}
