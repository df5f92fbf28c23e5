package engine

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseDotenvFixtures(t *testing.T) {
	t.Setenv("PLANRUN_TEST_HOST", "srv1")
	for _, tc := range []struct {
		file string
		want []EnvVar
	}{
		{"kaleem-backups.env", []EnvVar{
			{"MONGO_MODE", "host", 1},
			{"MONGO_URI", "mongodb://backup:<PASS>@127.0.0.1:27017/kaleem?authSource=admin", 2},
			{"N8N_ENABLED", "0", 3},
		}},
		{"full.env", []EnvVar{
			{"BACKUP_ROOT", "/backups", 4},
			{"RESTIC_REPO", "/backups/restic-local", 5},
			{"PLAIN", "a=b=c", 6},
			{"HASH_IN_VALUE", "abc#def", 7},
			{"EMPTY", "", 8},
			{"EMPTY_COMMENT", "", 9},
			{"SINGLE", `literal $BACKUP_ROOT \n "quotes" # not a comment`, 10},
			{"DOUBLE", "tab\there\nnew \"q\" back\\slash dollar$ keep\\d", 11},
			{"EXPANDED", "/backups/mongo", 12},
			{"BRACED", "/backups/qdrant-srv1", 13},
			{"DOLLAR_ALONE", "cost $ 5 and $1 and trailing $", 14},
			{"URL", "https://hc-ping.com/5c1e1b7e?x=1#frag", 15},
			{"TRAILING_BLANKS", "value", 16},
			{"QUOTED_COMMENT", "a # b", 17},
			{"export", "not-a-keyword", 18},
		}},
		{"multiline.env", []EnvVar{
			{"CERT", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", 1},
			{"AFTER", "1", 4},
			{"SINGLE_ML", "line one\nline two", 5},
			{"JOINED", "first second", 7},
			{"LAST", "1", 9},
		}},
		{"crlf-bom.env", []EnvVar{
			{"A", "1", 1},
			{"B", "two\nlines", 2},
			{"C", "3", 5},
			{"D", "x", 6},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "env", tc.file)
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ParseDotenv(path, f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got:\n%+v\nwant:\n%+v", got, tc.want)
			}
		})
	}
}

func TestParseDotenvErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want string // after "path:"
	}{
		{"bad-unterminated-double.env", "4: unterminated double quote in value of MONGO_URI"},
		{"bad-unterminated-single.env", "2: unterminated single quote in value of PASSWORD"},
		{"bad-name.env", `2: invalid variable name "1FOO"`},
		{"bad-no-equals.env", `2: expected KEY=value`},
		{"bad-empty-name.env", `2: missing variable name before "="`},
		{"bad-after-quote.env", "1: unexpected text after the closing quote of PASSWORD"},
		{"bad-undefined-bare.env", `1: value of PASSWORD refers to an undefined variable with "$"`},
		{"bad-undefined-braced.env", `1: undefined variable "NO_SUCH_PLANRUN_VAR" in value of DIR`},
		{"bad-unsupported.env", `1: unsupported expansion "${HOME:-/root}" in value of DIR`},
		{"bad-unterminated-brace.env", `1: unterminated "${" in value of DIR`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "env", tc.file)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseDotenv(path, strings.NewReader(string(data)))
			var de *DotenvError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want a *DotenvError", err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, path+":"+tc.want) {
				t.Errorf("err = %q\nwant prefix %q", msg, path+":"+tc.want)
			}
			// Fixtures hold the fake secret s3cr3t; no message may repeat it.
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error leaks a value: %q", err)
			}
		})
	}
}

func TestParseDotenvExpansionOrder(t *testing.T) {
	t.Setenv("PLANRUN_TEST_A", "from-env")
	for _, tc := range []struct{ in, want string }{
		{"X=$PLANRUN_TEST_A", "from-env"},                               // process env
		{"PLANRUN_TEST_A=file\nX=${PLANRUN_TEST_A}", "file"},            // earlier key wins
		{"X=$PLANRUN_TEST_A\nPLANRUN_TEST_A=late", "from-env"},          // only earlier keys
		{"A=1\nA=2\nX=\"$A\"", "2"},                                     // the latest earlier value
		{"A=x y\nX=\"[$A]\"", "[x y]"},                                  // expanded text is not re-split
		{"A=$$\nX=$A", "$$"},                                            // "$$" is not a reference
		{"A=1\nX=\"\\$A ${A}\"", "$A 1"},                                // \$ escapes
		{"A='$PLANRUN_TEST_A'\nX=$A", "$PLANRUN_TEST_A"},                // no double expansion
		{"A=1\nX=${A}_suffix", "1_suffix"},                              // braces delimit
		{"A=1 \nX=\"${A}\"", "1"},                                       // trailing blank of A trimmed
		{"X=\"multi ${PLANRUN_TEST_A}\nline\"", "multi from-env\nline"}, // in multi-line values
		{"X=\"a\"\t# comment after quote", "a"},                         // tab before comment
		{"  X  =  spaced out  ", "spaced out"},                          // inner blanks kept
		{"X=\"\"", ""},                                                  // empty quotes
		{"X=''", ""},                                                    // empty single quotes
		{"export X=\"e\"", "e"},                                         // export with quotes
		{"X=a\\b", "a\\b"},                                              // unquoted backslash literal
		{"X=\"ends with backslash\\\\\"", "ends with backslash\\"},      // escaped backslash before quote
		{"X=\"unicode ✓ ok\"", "unicode ✓ ok"},                          // UTF-8 passes through
		{"X=no newline at end", "no newline at end"},                    // last line without \n
		{"X=x\r", "x"},                                                  // lone CR at end of file
		{"\ufeffX=bom", "bom"},                                          // BOM
		{"# only\nX=1 # c # d", "1"},                                    // first " #" starts the comment
		{"X=\"a\"\n", "a"},                                              // quote then newline
		{"X=${PLANRUN_TEST_A}${PLANRUN_TEST_A}", "from-envfrom-env"},    // adjacent references
		{"X=pre$PLANRUN_TEST_A-post", "prefrom-env-post"},               // '-' ends a name
		{"X=$PLANRUN_TEST_A/$PLANRUN_TEST_A", "from-env/from-env"},      // '/' ends a name
		{"X=\"${PLANRUN_TEST_A}\" # c", "from-env"},                     // comment after expansion
		{"X=a # c\nY=b", "a"},                                           // comment then more lines
		{"X=\"\\\n\"", ""},                                              // only a continuation
		{"X=\"tab\\tend\"", "tab\tend"},                                 // \t
		{"X=\"cr\\rend\"", "cr\rend"},                                   // \r
		{"X=\"$\"", "$"},                                                // lone $ in quotes
		{"X=\"#hash\"", "#hash"},                                        // # inside quotes
		{"X=#hash", "#hash"},                                            // # right after = is literal
		{"X=	# tab then hash", ""},                                      // blank then # is a comment
		{"X=a\tb", "a\tb"},                                              // inner tab kept
	} {
		vars, err := ParseDotenv("t.env", strings.NewReader(tc.in))
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		var got string
		var found bool
		for _, v := range vars {
			if v.Key == "X" {
				got, found = v.Value, true
			}
		}
		if !found || got != tc.want {
			t.Errorf("%q: X = %q (found %v), want %q", tc.in, got, found, tc.want)
		}
	}
}

func TestParseDotenvRejects(t *testing.T) {
	for _, in := range []string{
		"A=v\nX=$A_suffix", // the name is A_suffix, which is undefined
		"X='it''s'",        // text after the closing quote
		"X=\"${}\"",        // empty braces
	} {
		if vars, err := ParseDotenv("t.env", strings.NewReader(in)); err == nil {
			t.Errorf("%q: no error, got %+v", in, vars)
		}
	}
}

// writeEnv copies a fixture into a temp dir with the given mode.
func writeEnv(t *testing.T, fixture string, mode os.FileMode) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "env", fixture))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kaleem-backups.env")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // not subject to umask
		t.Fatal(err)
	}
	return path
}

func TestLoadEnvFile(t *testing.T) {
	path := writeEnv(t, "kaleem-backups.env", 0o600)
	vars, warns, err := LoadEnvFile(path, false)
	if err != nil || len(warns) != 0 {
		t.Fatalf("LoadEnvFile 0600: %v, warnings %q", err, warns)
	}
	if len(vars) != 3 || vars[1].Key != "MONGO_URI" {
		t.Errorf("vars = %+v", vars)
	}
	for _, mode := range []os.FileMode{0o400, 0o700} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadEnvFile(path, false); err != nil {
			t.Errorf("mode %o refused: %v", mode, err)
		}
	}
}

func TestLoadEnvFileLoosePerms(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o666} {
		path := writeEnv(t, "kaleem-backups.env", mode)
		_, _, err := LoadEnvFile(path, false)
		if err == nil {
			t.Errorf("mode %04o: accepted", mode)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, path) || !strings.Contains(msg, "chmod 600 "+path) {
			t.Errorf("mode %04o: message should name the file and the fix: %q", mode, msg)
		}
		vars, warns, err := LoadEnvFile(path, true)
		if err != nil {
			t.Errorf("mode %04o with allowLoosePerms: %v", mode, err)
			continue
		}
		if len(vars) != 3 || len(warns) != 1 || warns[0] != msg {
			t.Errorf("mode %04o with allowLoosePerms: vars %+v warnings %q; want the refusal text as a warning", mode, vars, warns)
		}
	}
}

func TestLoadEnvFileErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.env")
	_, _, err := LoadEnvFile(missing, false)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadEnvFile(dir, false); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	bad := writeEnv(t, "bad-unterminated-double.env", 0o600)
	if _, _, err := LoadEnvFile(bad, false); err == nil || !strings.HasPrefix(err.Error(), bad+":4: ") {
		t.Errorf("syntax error should be reported as %s:4: ..., got %v", bad, err)
	}
}

func TestLoadEnvFileDuplicateWarning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dup.env")
	if err := os.WriteFile(path, []byte("A=1\nB=2\nA=3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars, warns, err := LoadEnvFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(vars) != 3 || vars[2].Value != "3" {
		t.Errorf("vars = %+v", vars)
	}
	want := path + ":3: A is also set on line 1; the last value wins"
	if len(warns) != 1 || warns[0] != want {
		t.Errorf("warnings = %q, want [%q]", warns, want)
	}
}

func FuzzParseDotenv(f *testing.F) {
	fixtures, _ := filepath.Glob(filepath.Join("testdata", "env", "*.env"))
	for _, p := range fixtures {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(string(data))
		}
	}
	f.Add("A=\"${")
	f.Add("A='\n")
	f.Add("export \t")
	f.Fuzz(func(t *testing.T, in string) {
		vars, err := ParseDotenv("fuzz.env", strings.NewReader(in))
		if err != nil {
			var de *DotenvError
			if !errors.As(err, &de) || de.Line < 1 || !strings.HasPrefix(err.Error(), "fuzz.env:") {
				t.Fatalf("error without file:line: %v", err)
			}
			return
		}
		prev := 0
		for _, v := range vars {
			if !validEnvName(v.Key) || v.Line < prev || v.Line < 1 {
				t.Fatalf("bad var %+v after line %d", v, prev)
			}
			prev = v.Line
		}
	})
}
