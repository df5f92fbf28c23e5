package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// EnvVar is one KEY=value assignment read from an env file.
type EnvVar struct {
	Key   string
	Value string
	Line  int // where the assignment starts
}

// DotenvError is a syntax error in an env file, printed as file:line: msg.
// Messages never quote values: env files hold secrets.
type DotenvError struct {
	File string
	Line int
	Msg  string
}

func (e *DotenvError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// maxEnvFileSize bounds what ParseDotenv reads; env files are small.
const maxEnvFileSize = 1 << 20

// ParseDotenv reads env-file syntax as operators write it (and as `. file`
// in a shell mostly reads it):
//
//   - KEY=value lines; blank lines; `#` comment lines; `export KEY=value`;
//     spaces around `=` are ignored.
//   - Unquoted values run to the end of the line, trailing blanks dropped;
//     ` #` (a `#` after a blank) starts a comment, other `#` and `=` are
//     literal. Backslashes are literal.
//   - 'single quotes': literal text, no escapes, no expansion; may span lines.
//   - "double quotes": escapes \n \t \r \" \\ \$ (a backslash before any
//     other character is kept); may span lines; a backslash at the end of a
//     line joins the next.
//   - $NAME and ${NAME} in unquoted and double-quoted values expand to an
//     earlier key of the same file or, failing that, the process
//     environment. An undefined name is an error (not an empty string: a
//     stray `$` in a password should fail loudly). A `$` not followed by a
//     name is literal. Other shell forms (${NAME:-x}, $(cmd)) are refused
//     or literal; use single quotes for a literal `$`.
//   - CRLF line endings and a leading UTF-8 BOM are accepted.
//
// A key may appear twice; both are returned in file order (the last wins
// when applied). name is used in error messages (file:line: ...).
func ParseDotenv(name string, r io.Reader) ([]EnvVar, error) {
	return parseDotenv(name, r, os.LookupEnv)
}

func parseDotenv(name string, r io.Reader, lookup func(string) (string, bool)) ([]EnvVar, error) {
	src, err := io.ReadAll(io.LimitReader(r, maxEnvFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(src) > maxEnvFileSize {
		return nil, fmt.Errorf("%s: env file larger than %d bytes", name, maxEnvFileSize)
	}
	src = bytes.TrimPrefix(src, []byte("\xef\xbb\xbf"))
	src = bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n"))
	p := &dotenvParser{name: name, src: src, line: 1, lookup: lookup, seen: map[string]string{}}
	return p.parse()
}

type dotenvParser struct {
	name   string
	src    []byte
	pos    int
	line   int
	lookup func(string) (string, bool)
	seen   map[string]string // keys so far, for expansion
	key    string            // the key being parsed, for messages
}

func (p *dotenvParser) errf(line int, format string, args ...any) error {
	return &DotenvError{File: p.name, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func (p *dotenvParser) eof() bool  { return p.pos >= len(p.src) }
func (p *dotenvParser) peek() byte { return p.src[p.pos] }

func (p *dotenvParser) skipBlanks() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t') {
		p.pos++
	}
}

// skipLine moves past the rest of the current line.
func (p *dotenvParser) skipLine() {
	for !p.eof() && p.peek() != '\n' {
		p.pos++
	}
	if !p.eof() {
		p.pos++
		p.line++
	}
}

func (p *dotenvParser) parse() ([]EnvVar, error) {
	var out []EnvVar
	for {
		p.skipBlanks()
		if p.eof() {
			return out, nil
		}
		switch p.peek() {
		case '\n', '#':
			p.skipLine()
			continue
		}
		v, err := p.assignment()
		if err != nil {
			return nil, err
		}
		p.seen[v.Key] = v.Value
		out = append(out, v)
	}
}

// word reads up to a blank, '=' or end of line.
func (p *dotenvParser) word() string {
	start := p.pos
	for !p.eof() && !strings.ContainsRune(" \t=\n", rune(p.peek())) {
		p.pos++
	}
	return string(p.src[start:p.pos])
}

func (p *dotenvParser) assignment() (EnvVar, error) {
	line := p.line
	key := p.word()
	if key == "export" && !p.eof() && (p.peek() == ' ' || p.peek() == '\t') {
		p.skipBlanks()
		key = p.word()
	}
	p.skipBlanks()
	if p.eof() || p.peek() != '=' {
		// Do not quote the line: it may be a pasted secret.
		return EnvVar{}, p.errf(line, `expected KEY=value (no "=" after the name)`)
	}
	if key == "" {
		return EnvVar{}, p.errf(line, `missing variable name before "="`)
	}
	if !validEnvName(key) {
		return EnvVar{}, p.errf(line, "invalid variable name %q (use letters, digits and _, not starting with a digit)", shorten(key))
	}
	p.pos++ // '='
	p.key = key
	p.skipBlanks()
	var val string
	var err error
	switch {
	case p.eof() || p.peek() == '\n':
		val = ""
	case p.peek() == '\'':
		val, err = p.singleQuoted(line)
	case p.peek() == '"':
		val, err = p.doubleQuoted(line)
	default:
		val, err = p.unquoted(line)
	}
	if err != nil {
		return EnvVar{}, err
	}
	return EnvVar{Key: key, Value: val, Line: line}, nil
}

func (p *dotenvParser) singleQuoted(line int) (string, error) {
	p.pos++ // opening quote
	end := bytes.IndexByte(p.src[p.pos:], '\'')
	if end < 0 {
		return "", p.errf(line, "unterminated single quote in value of %s", p.key)
	}
	val := string(p.src[p.pos : p.pos+end])
	p.line += strings.Count(val, "\n")
	p.pos += end + 1
	return val, p.afterQuote()
}

func (p *dotenvParser) doubleQuoted(line int) (string, error) {
	p.pos++ // opening quote
	var b strings.Builder
	for {
		if p.eof() {
			return "", p.errf(line, "unterminated double quote in value of %s", p.key)
		}
		c := p.peek()
		switch c {
		case '"':
			p.pos++
			return b.String(), p.afterQuote()
		case '\n':
			b.WriteByte(c)
			p.pos++
			p.line++
		case '\\':
			p.pos++
			if p.eof() {
				continue // reported as unterminated
			}
			n := p.peek()
			p.pos++
			switch n {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '"', '\\', '$':
				b.WriteByte(n)
			case '\n': // line continuation
				p.line++
			default:
				b.WriteByte('\\')
				b.WriteByte(n)
			}
		case '$':
			s, next, err := p.expand(p.src, p.pos, p.line)
			if err != nil {
				return "", err
			}
			b.WriteString(s)
			p.pos = next
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
}

// afterQuote allows only blanks and a comment after a closing quote.
func (p *dotenvParser) afterQuote() error {
	p.skipBlanks()
	if p.eof() {
		return nil
	}
	switch p.peek() {
	case '\n', '#':
		p.skipLine()
		return nil
	}
	return p.errf(p.line, "unexpected text after the closing quote of %s (quote the whole value)", p.key)
}

func (p *dotenvParser) unquoted(line int) (string, error) {
	start := p.pos
	end := start
	for !p.eof() && p.peek() != '\n' {
		if p.peek() == '#' && (p.src[p.pos-1] == ' ' || p.src[p.pos-1] == '\t') {
			break
		}
		p.pos++
		end = p.pos
	}
	p.skipLine()
	raw := bytes.TrimRight(p.src[start:end], " \t\r")
	var b strings.Builder
	for i := 0; i < len(raw); {
		if raw[i] != '$' {
			b.WriteByte(raw[i])
			i++
			continue
		}
		s, next, err := p.expand(raw, i, line)
		if err != nil {
			return "", err
		}
		b.WriteString(s)
		i = next
	}
	return b.String(), nil
}

// expand handles the '$' at src[i]: it returns the replacement text and
// the index after the reference.
func (p *dotenvParser) expand(src []byte, i, line int) (string, int, error) {
	j := i + 1
	if j < len(src) && src[j] == '{' {
		k := j + 1
		for k < len(src) && isNameByte(src[k], k == j+1) {
			k++
		}
		name := string(src[j+1 : k])
		if k < len(src) && src[k] == '}' && name != "" {
			v, ok := p.resolve(name)
			if !ok {
				return "", 0, p.errf(line, "undefined variable %q in value of %s", name, p.key)
			}
			return v, k + 1, nil
		}
		end := bytes.IndexByte(src[j:], '}')
		nl := bytes.IndexByte(src[j:], '\n')
		if end < 0 || (nl >= 0 && nl < end) {
			return "", 0, p.errf(line, `unterminated "${" in value of %s`, p.key)
		}
		return "", 0, p.errf(line, `unsupported expansion "${%s}" in value of %s (only ${NAME} and $NAME; use single quotes for a literal "$")`,
			shorten(string(src[j+1:j+end])), p.key)
	}
	k := j
	for k < len(src) && isNameByte(src[k], k == j) {
		k++
	}
	if k == j {
		return "$", j, nil // not a reference: literal '$'
	}
	v, ok := p.resolve(string(src[j:k]))
	if !ok {
		// The name is not quoted: a bare $ may be part of a password.
		return "", 0, p.errf(line, `value of %s refers to an undefined variable with "$" (for a literal "$" use single quotes, or \$ inside double quotes)`, p.key)
	}
	return v, k, nil
}

func (p *dotenvParser) resolve(name string) (string, bool) {
	if v, ok := p.seen[name]; ok {
		return v, true
	}
	if p.lookup == nil {
		return "", false
	}
	return p.lookup(name)
}

func isNameByte(c byte, first bool) bool {
	return c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || !first && c >= '0' && c <= '9'
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i], i == 0) {
			return false
		}
	}
	return true
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// LoadEnvFile reads an env file (see ParseDotenv). The file holds secrets,
// so one that group or others may access (mode & 0o077) is refused; with
// allowLoosePerms it is read and the same message comes back as a warning.
// Other warnings: a key set twice.
func LoadEnvFile(path string, allowLoosePerms bool) ([]EnvVar, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("env file %s does not exist: %w", path, fs.ErrNotExist)
		}
		return nil, nil, fmt.Errorf("env file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat() // the opened file, not the name: no race with a swap
	if err != nil {
		return nil, nil, fmt.Errorf("env file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("env file %s is not a regular file", path)
	}
	var warnings []string
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		msg := fmt.Sprintf("env file %s has mode %04o: group or others can access it, and it holds secrets; run: chmod 600 %s",
			path, perm, path)
		if !allowLoosePerms {
			return nil, nil, errors.New(msg)
		}
		warnings = append(warnings, msg)
	}
	vars, err := ParseDotenv(path, f)
	if err != nil {
		return nil, warnings, err
	}
	first := map[string]int{}
	for _, v := range vars {
		if l, dup := first[v.Key]; dup {
			warnings = append(warnings, fmt.Sprintf("%s:%d: %s is also set on line %d; the last value wins", path, v.Line, v.Key, l))
			continue
		}
		first[v.Key] = v.Line
	}
	return vars, warnings, nil
}
