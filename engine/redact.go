package engine

import (
	"bytes"
	"io"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Mask replaces every secret value in redacted text.
const Mask = "***"

// minSecretLen: shorter values would mask ordinary text everywhere.
const minSecretLen = 3

// Redactor replaces known secret values by Mask. It is safe for concurrent use.
type Redactor struct {
	mu       sync.RWMutex
	values   map[string]bool
	replacer *strings.Replacer
}

// NewRedactor returns an empty redactor.
func NewRedactor() *Redactor { return &Redactor{values: map[string]bool{}} }

// Add registers secret values (and their URL-escaped forms).
func (r *Redactor) Add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for _, v := range values {
		for _, form := range []string{v, url.QueryEscape(v), url.PathEscape(v)} {
			if len(form) >= minSecretLen && !r.values[form] {
				r.values[form] = true
				changed = true
			}
		}
	}
	if changed {
		r.rebuild()
	}
}

func (r *Redactor) rebuild() {
	vals := make([]string, 0, len(r.values))
	for v := range r.values {
		vals = append(vals, v)
	}
	// Longest first so a secret containing another is masked whole.
	sort.Slice(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	pairs := make([]string, 0, 2*len(vals))
	for _, v := range vals {
		pairs = append(pairs, v, Mask)
	}
	r.replacer = strings.NewReplacer(pairs...)
}

// Redact masks every known secret in s.
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	rep := r.replacer
	r.mu.RUnlock()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}

// RedactArgs masks secrets in each element.
func (r *Redactor) RedactArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = r.Redact(a)
	}
	return out
}

// Writer returns a writer that masks secrets line by line before passing
// them to w. Partial lines are held until a newline or Flush/Close.
func (r *Redactor) Writer(w io.Writer) *RedactingWriter {
	return &RedactingWriter{r: r, w: w}
}

// RedactingWriter masks secrets in whole lines written through it.
type RedactingWriter struct {
	mu  sync.Mutex
	r   *Redactor
	w   io.Writer
	buf []byte
}

func (rw *RedactingWriter) Write(p []byte) (int, error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	rw.buf = append(rw.buf, p...)
	i := bytes.LastIndexByte(rw.buf, '\n')
	if i < 0 {
		if len(rw.buf) < 64<<10 {
			return len(p), nil
		}
		i = len(rw.buf) - 1 // very long line: flush what we have
	}
	out := rw.r.Redact(string(rw.buf[:i+1]))
	rw.buf = append(rw.buf[:0], rw.buf[i+1:]...)
	if _, err := io.WriteString(rw.w, out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes out a held partial line.
func (rw *RedactingWriter) Flush() error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if len(rw.buf) == 0 {
		return nil
	}
	out := rw.r.Redact(string(rw.buf))
	rw.buf = rw.buf[:0]
	_, err := io.WriteString(rw.w, out)
	return err
}

// secretNameRe matches env names whose values are treated as secrets.
var secretNameRe = regexp.MustCompile(`(?i)PASS|SECRET|TOKEN|KEY|CREDENTIAL`)

// IsSecretName reports whether an env variable name denotes a secret. A
// *_FILE name (RESTIC_PASSWORD_FILE) holds a path to a secret, not one.
func IsSecretName(name string) bool {
	return secretNameRe.MatchString(name) && !strings.HasSuffix(strings.ToUpper(name), "_FILE")
}

// uriPasswordRe finds scheme://user:password@ in any text.
var uriPasswordRe = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^/:@\s]*:([^@\s/]+)@`)

// URIPasswords returns the password parts of any URIs with userinfo in s.
func URIPasswords(s string) []string {
	var out []string
	for _, m := range uriPasswordRe.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
		if u, err := url.PathUnescape(m[1]); err == nil && u != m[1] {
			out = append(out, u)
		}
	}
	return out
}

// AddEnv registers the secrets found in an environment: values of names
// that look secret, and passwords inside URIs of any value.
func (r *Redactor) AddEnv(environ []string) {
	var vals []string
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			continue
		}
		if IsSecretName(k) {
			vals = append(vals, v)
		}
		vals = append(vals, URIPasswords(v)...)
	}
	r.Add(vals...)
}
