package steps

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dump.sql")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEncryptStepDecryptsWithAgeCLI(t *testing.T) {
	data := bytes.Repeat([]byte("INSERT INTO t VALUES (1, 'x');\n"), 100000)
	in := writeFile(t, data)
	key := filepath.Join(keys, "demo.agekey")
	for _, c := range []struct{ name, with, decode string }{
		{"none", "compress: none", "age -d -i %s %s"},
		{"zstd", "compress: zstd", "age -d -i %s %s | zstd -d"},
		{"gzip-9", "compress: gzip, level: 9", "age -d -i %s %s | gzip -d"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "dump.sql.age")
			res := mustRun(t, "encrypt", fmt.Sprintf("{input: %s, output: %s, %s, encrypt: {recipients: [%s]}}", in, out, c.with, pubKey(t)))
			if res["bytes_in"].(int64) != int64(len(data)) {
				t.Errorf("outputs %v", res)
			}
			got := shell(t, fmt.Sprintf(c.decode, key, out), "age", "zstd", "gzip")
			if got != string(data) {
				t.Fatalf("age CLI decrypted %d bytes, want %d", len(got), len(data))
			}
		})
	}
}

func TestDecryptStepReadsAgeCLIFiles(t *testing.T) {
	data := bytes.Repeat([]byte("legacy dump\n"), 50000)
	in := writeFile(t, data)
	pub := filepath.Join(keys, "demo.agepub")
	key := filepath.Join(keys, "demo.agekey")
	enc := in + ".zst.age"
	shell(t, fmt.Sprintf("zstd -q -c %s | age -e -R %s -o %s", in, pub, enc), "zstd", "age")
	// decrypt keeps the compression inside; decompress removes both.
	out := filepath.Join(t.TempDir(), "dump.sql.zst")
	mustRun(t, "decrypt", fmt.Sprintf("{input: %s, output: %s, identity_file: %s}", enc, out, key))
	if got := shell(t, "zstd -d -c "+out, "zstd"); got != string(data) {
		t.Fatalf("decrypt+zstd -d gave %d bytes", len(got))
	}
	plain := filepath.Join(t.TempDir(), "dump.sql")
	mustRun(t, "decompress", fmt.Sprintf("{input: %s, output: %s, identity_file: %s}", enc, plain, key))
	if got, _ := os.ReadFile(plain); !bytes.Equal(got, data) {
		t.Fatalf("decompress gave %d bytes", len(got))
	}
	// decrypt of a plaintext file: an error, and no output.
	env, _ := stepEnv(t)
	nope := filepath.Join(t.TempDir(), "nope")
	_, err := runStep(t, context.Background(), env, "decrypt", fmt.Sprintf("{input: %s, output: %s/x, identity_file: %s}", in, nope, key))
	if err == nil || !strings.Contains(err.Error(), "not age-encrypted") {
		t.Fatalf("decrypt plaintext: %v", err)
	}
	if _, err := os.Stat(nope); !os.IsNotExist(err) {
		t.Errorf("output dir created for a failed decrypt: %v", err)
	}
}

// A compressed file cut short (no sidecar to catch it) fails decompress
// and leaves no output: the decoder's unexpected EOF is not a clean end.
func TestDecompressStepRefusesTruncatedInput(t *testing.T) {
	data := bytes.Repeat([]byte("row of a legacy dump 0123456789\n"), 200000)
	in := writeFile(t, data)
	for _, c := range []struct{ name, cmd string }{{"zstd", "zstd -q -c %s"}, {"gzip", "gzip -c %s"}} {
		t.Run(c.name, func(t *testing.T) {
			comp := shell(t, fmt.Sprintf(c.cmd, in), c.name)
			cut := filepath.Join(t.TempDir(), "dump.sql.cut")
			if err := os.WriteFile(cut, []byte(comp[:len(comp)*3/4]), 0o600); err != nil {
				t.Fatal(err)
			}
			outDir := t.TempDir()
			env, _ := stepEnv(t)
			_, err := runStep(t, context.Background(), env, "decompress", fmt.Sprintf("{input: %s, output: %s/dump.sql}", cut, outDir))
			if err == nil {
				t.Fatal("decompress of a truncated file succeeded")
			}
			assertOnly(t, outDir)
		})
	}
}

func TestCompressStepAndRemoveInput(t *testing.T) {
	data := bytes.Repeat([]byte("compress me\n"), 80000)
	in := writeFile(t, data)
	os.WriteFile(in+".sha256", []byte("x"), 0o600)
	out := in + ".gz"
	mustRun(t, "compress", fmt.Sprintf("{input: %s, output: %s, compress: gzip, remove_input: true}", in, out))
	if got := shell(t, "gzip -d -c "+out, "gzip"); got != string(data) {
		t.Fatalf("gzip -d gave %d bytes", len(got))
	}
	assertOnly(t, filepath.Dir(in), "dump.sql.gz", "dump.sql.gz.sha256")
	env, _ := stepEnv(t)
	if _, err := runStep(t, context.Background(), env, "compress", fmt.Sprintf("{input: %s, output: %s, overwrite: true}", out, out)); err == nil || !strings.Contains(err.Error(), "is the input") {
		t.Fatalf("in place: %v", err)
	}
}

func TestEncryptRequiresEncryptBlock(t *testing.T) {
	st := All().Lookup("encrypt")
	_, probs := decodeProbs(t, st.Name, "{input: /a, output: /b}")
	if len(probs) == 0 || !strings.Contains(probs[0].Msg, "encrypt") {
		t.Fatalf("problems %v", probs)
	}
}
