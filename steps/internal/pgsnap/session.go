package pgsnap

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/planrun/planrun/steps/internal/proc"
)

// Session is a psql child holding one server connection (and so one
// transaction) open across calls: SQL goes in through its stdin, results
// come back line by line (-A -t), each batch closed by an \echo marker.
// It uses the same libpq, connection arguments and PGPASSFILE as pg_dump,
// so the snapshot is exported by the very server pg_dump then reads.
type Session struct {
	name   string
	stdin  *os.File
	stdout *bufio.Reader
	outR   *os.File
	done   chan struct{}
	err    error // proc.Run's result, valid once done is closed
	token  string
	seq    int
}

// AppName is the application_name of the snapshot session (PGAPPNAME).
const AppName = "planrun-snapshot"

// PsqlArgs are the options Start needs psql to run with (before the
// connection arguments).
var PsqlArgs = []string{"-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "--no-password"}

// Start runs c (psql with PsqlArgs and connection arguments; Stdin and
// Stdout are set here). The child ends when ctx is done or Close is called.
func Start(ctx context.Context, c proc.Cmd) (*Session, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	s := &Session{name: c.Name, stdin: inW, stdout: bufio.NewReader(outR), outR: outR, done: make(chan struct{}),
		token: "planrun-pgsnap-" + hex.EncodeToString(b)}
	c.Stdin, c.Stdout = inR, outW
	go func() {
		_, s.err = proc.Run(ctx, c)
		// Our copies of the child's ends: closing them gives the reader
		// EOF and a pending writer EPIPE once the child is gone.
		inR.Close()
		outW.Close()
		close(s.done)
	}()
	return s, nil
}

// Exec sends one or more SQL statements (each ending in ';') and returns
// the lines they printed. When a statement fails, psql stops
// (ON_ERROR_STOP) and the error carries its stderr.
func (s *Session) Exec(sql string) ([]string, error) {
	if !strings.HasSuffix(strings.TrimSpace(sql), ";") {
		return nil, errors.New("pgsnap: SQL must end with ';'")
	}
	return s.send(sql)
}

// Shell runs a shell command line with psql's \!, where psql runs (in the
// container, for a container target) and in its environment, and returns
// what the command printed on stdout. A command that cannot run would end
// the session (ON_ERROR_STOP): cmd must end in `|| :` or the like.
func (s *Session) Shell(cmd string) ([]string, error) {
	if strings.ContainsAny(cmd, "\n\r") {
		return nil, errors.New("pgsnap: a shell command must be one line")
	}
	return s.send(`\! ` + cmd)
}

// send writes one batch (SQL, or a psql meta-command) and reads its lines
// up to the batch's marker.
func (s *Session) send(batch string) ([]string, error) {
	s.seq++
	mark := fmt.Sprintf("%s-%d", s.token, s.seq)
	// Written concurrently with reading: a large batch must not fill the
	// stdin pipe while psql waits for us to drain its stdout.
	werr := make(chan error, 1)
	go func() {
		_, err := io.WriteString(s.stdin, batch+"\n\\echo "+mark+"\n")
		werr <- err
	}()
	var lines []string
	for {
		line, err := s.stdout.ReadString('\n')
		if err != nil {
			<-s.done
			<-werr
			if s.err != nil {
				return nil, s.err
			}
			return nil, fmt.Errorf("%s ended before answering", s.name)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == mark {
			break
		}
		lines = append(lines, line)
	}
	if err := <-werr; err != nil {
		return nil, fmt.Errorf("%s: writing to its stdin: %w", s.name, err)
	}
	return lines, nil
}

// Close ends psql (end of input: an open transaction is rolled back by the
// server) and returns its exit error, if any.
func (s *Session) Close() error {
	s.stdin.Close()
	<-s.done
	// Drain what psql printed after the last marker (nothing, normally).
	_, _ = io.Copy(io.Discard, s.stdout)
	s.outR.Close()
	return s.err
}
