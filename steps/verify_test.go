package steps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVerifyStep(t *testing.T) {
	src := tree(t, 2<<20)
	dir := t.TempDir()
	key := filepath.Join(keys, "demo.agekey")
	enc := filepath.Join(dir, "configs-1.tar.zst.age")
	mustRun(t, "tar", fmt.Sprintf("{paths: [%s], output: %s, encrypt: {recipients: [%s]}}", src, enc, pubKey(t)))
	plain := filepath.Join(dir, "configs-2.tar.gz")
	mustRun(t, "tar", fmt.Sprintf("{paths: [%s], output: %s, compress: gzip}", src, plain))
	dump := filepath.Join(dir, "dump.sql.zst")
	mustRun(t, "compress", fmt.Sprintf("{input: %s, output: %s}", filepath.Join(src, "etc/app/app.conf"), dump))

	out := mustRun(t, "verify", fmt.Sprintf("{path: '%s/*', identity_file: %s}", dir, key))
	sum := out["summary"].(string)
	if out["files"].(int) != 3 || out["failed"].(int) != 0 ||
		strings.Count(sum, "tar lists cleanly: 3 files") != 2 || !strings.Contains(sum, "age+zstd; sha256 matches") ||
		!strings.Contains(sum, "decoded to the end: 58.6 KiB") {
		t.Fatalf("outputs %v", out)
	}
	// Without the key: sidecar only, said so.
	out = mustRun(t, "verify", fmt.Sprintf("{path: %s}", enc))
	if !strings.Contains(out["summary"].(string), "not decrypted") {
		t.Errorf("no-key summary %q", out["summary"])
	}

	bad := func(name, path, with, want string) {
		t.Run(name, func(t *testing.T) {
			env, _ := stepEnv(t)
			out, err := runStep(t, context.Background(), env, "verify", fmt.Sprintf("{path: %s, %s}", path, with))
			if err == nil || !strings.Contains(err.Error(), want) || out["failed"].(int) != 1 {
				t.Fatalf("want failure %q, got %v (%v)", want, err, out)
			}
		})
	}
	// A flipped byte inside the ciphertext: the MAC fails (and the sha256 would too).
	b, _ := os.ReadFile(enc)
	b[len(b)/2] ^= 1
	corrupt := filepath.Join(t.TempDir(), "c.tar.zst.age")
	os.WriteFile(corrupt, b, 0o600)
	os.WriteFile(corrupt+".sha256", mustRead(t, enc+".sha256"), 0o600)
	bad("corrupt-ciphertext", corrupt, "identity_file: "+key, "decrypt")
	bad("corrupt-no-key", corrupt, "sidecar: required", "sha256 mismatch")
	// Truncated gzip: decompression fails before the sidecar is even compared.
	b, _ = os.ReadFile(plain)
	trunc := filepath.Join(t.TempDir(), "t.tar.gz")
	os.WriteFile(trunc, b[:len(b)-100], 0o600)
	bad("truncated-no-sidecar", trunc, "sidecar: required", "sidecar")
	bad("truncated", trunc, "sidecar: optional", "unexpected EOF")
	bad("wrong-key", enc, "identity_file: "+writeKey(t), "identity did not match")
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeKey makes a fresh identity that matches nothing.
func writeKey(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "other.key")
	shell(t, "age-keygen -o "+p+" 2>/dev/null", "age-keygen")
	return p
}

// sha256 checks the file against a digest from elsewhere (a manifest), also
// when the sidecar was replaced together with the file; inspect measures
// the content.
func TestVerifySHA256AndInspect(t *testing.T) {
	src := tree(t, 64<<10)
	dir := t.TempDir()
	key := filepath.Join(keys, "demo.agekey")
	art := filepath.Join(dir, "configs-[1].tar.zst.age") // glob characters in a literal path
	tout := mustRun(t, "tar", fmt.Sprintf("{paths: [%s], output: '%s', encrypt: {recipients: [%s]}}", src, art, pubKey(t)))
	sum := tout["sha256"].(string)

	out := mustRun(t, "verify", fmt.Sprintf("{path: '%s', sha256: %s, identity_file: %s, inspect: tar}", art, strings.ToUpper(sum), key))
	counts, _ := out["counts"].(map[string]int64)
	if !strings.Contains(out["summary"].(string), "matches the expected digest and the sidecar") ||
		counts["files"] != int64(tout["files"].(int)) || counts["dirs"] != int64(tout["dirs"].(int)) ||
		counts["symlinks"] != 1 || counts["special"] != 0 || counts["bytes"] < 64<<10 {
		t.Fatalf("outputs %v", out)
	}
	if _, ok := mustRun(t, "verify", fmt.Sprintf("{path: '%s'}", art))["counts"]; ok {
		t.Error("counts output without inspect")
	}

	// Another file with its own, consistent sidecar: the sidecar passes,
	// the expected digest does not.
	other := filepath.Join(dir, "other.tar.zst.age")
	mustRun(t, "tar", fmt.Sprintf("{paths: [%s], output: %s, encrypt: {recipients: [%s]}}", filepath.Join(src, "etc"), other, pubKey(t)))
	env, _ := stepEnv(t)
	_, err := runStep(t, context.Background(), env, "verify", fmt.Sprintf("{path: %s, sha256: %s}", other, sum))
	if err == nil || !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), "expected "+sum) ||
		!strings.Contains(err.Error(), "file has ") {
		t.Fatalf("mismatch error %v", err)
	}

	for name, c := range map[string]struct{ with, want string }{
		"sha256-several-files":  {fmt.Sprintf("{path: '%s/*', sha256: %s}", dir, sum), "matches 2 files"},
		"inspect-encrypted-key": {fmt.Sprintf("{path: %s, inspect: tar}", other), "give identity_file"},
		"inspect-wrong-format":  {fmt.Sprintf("{path: %s, inspect: rabbitmq-definitions, identity_file: %s}", other, key), "not a RabbitMQ definitions export"},
	} {
		t.Run(name, func(t *testing.T) {
			env, _ := stepEnv(t)
			if _, err := runStep(t, context.Background(), env, "verify", c.with); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	if _, probs := dbTryDecode(Verify, "path: x\nsha256: abc"); len(probs) == 0 {
		t.Error("malformed sha256 accepted")
	}
}
