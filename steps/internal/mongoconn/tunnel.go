package mongoconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/planrun/planrun/steps/internal/proc"
)

// tunnelScript connects to $1:$2 from inside the container (bash's
// /dev/tcp), says "+" once connected, then relays both ways with cat. When
// either side ends (the driver closes stdin, the server closes the socket)
// both relays stop and the exec ends: nothing stays running in the
// container, and bash reaps both (the container's PID 1, often the server
// itself, would leave them zombies). The container needs bash and cat (the official mongo images
// have both; the tools' own containers need nothing else).
const tunnelScript = `exec 3<>"/dev/tcp/$1/$2" || exit 1; printf +; cat <&3 & r=$!; cat <&0 >&3 & w=$!; wait -n; kill $r $w 2>/dev/null; wait`

// tunnelCloseWait bounds how long Close waits for the exec to end before
// it kills the engine client.
const tunnelCloseWait = 10 * time.Second

// tunnel dials through the session's container: the driver's connections
// reach the server's address as the container sees it, whatever the
// container's network (none, bridge, host) and without a published port.
type tunnel struct{ s *Session }

func (s *Session) tunnel() *tunnel { return &tunnel{s: s} }

// relayCmd is the relay to addr's host and port, run in the container.
func (t *tunnel) relayCmd(host, port string) proc.Cmd {
	return t.s.target.Wrap(proc.Cmd{Name: "bash", Args: []string{"-c", tunnelScript, "planrun-tunnel", host, port},
		Env: t.s.Environ, Secrets: t.s.secrets})
}

// RelayCommandLine renders the relay to the URI's first host, for dry-run
// ("" on the host or for an SRV URI).
func (s *Session) RelayCommandLine() string {
	if s.target == nil {
		return ""
	}
	host, port := "127.0.0.1", "27017"
	if strings.HasPrefix(s.URI, "mongodb://") {
		h, _, _ := strings.Cut(Hosts(s.URI), ",")
		if hh, pp, err := net.SplitHostPort(h); err == nil {
			host, port = hh, pp
		} else if h != "" {
			host = strings.Trim(h, "[]")
		}
	}
	c := s.tunnel().relayCmd(host, port)
	return proc.CommandLine(s.secrets, c.Name, c.Args...)
}

// DialContext runs the relay in the container (`docker exec -i ... bash`)
// and returns its stdin/stdout as the connection, once it is connected.
func (t *tunnel) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
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
	// The relay outlives the dial's context: it ends with Close.
	rctx, cancel := context.WithCancel(context.Background())
	c := &tunnelConn{in: inW, out: outR, cancel: cancel, done: make(chan struct{}), addr: tunnelAddr(addr)}
	cmd := t.relayCmd(host, port)
	cmd.Stdin, cmd.Stdout = inR, outW
	go func() {
		// *os.File stdin/stdout go to the child as they are: the pipes' far
		// ends close here once it has exited, which the reader sees as EOF.
		_, c.err = proc.Run(rctx, cmd)
		inR.Close()
		outW.Close()
		close(c.done)
	}()
	stop := context.AfterFunc(ctx, func() { outR.SetReadDeadline(time.Now()) })
	var b [1]byte
	_, err = io.ReadFull(outR, b[:])
	if !stop() && err == nil {
		err = ctx.Err()
	}
	outR.SetReadDeadline(time.Time{})
	if err == nil && b[0] != '+' {
		err = fmt.Errorf("unexpected relay output %q", b[0])
	}
	if err != nil {
		c.Close()
		if c.err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			err = c.err
		}
		return nil, fmt.Errorf("connecting to %s inside %s: %w", addr, t.s.target.Describe(), err)
	}
	return c, nil
}

// tunnelConn is a net.Conn over the relay's stdin and stdout; os.Pipe ends
// support deadlines, which the driver's timeouts rely on.
type tunnelConn struct {
	in     *os.File // the relay's stdin
	out    *os.File // the relay's stdout
	cancel context.CancelFunc
	done   chan struct{}
	err    error // the relay's exit (after done)
	addr   tunnelAddr
	once   sync.Once
}

func (c *tunnelConn) Read(p []byte) (int, error)  { return c.out.Read(p) }
func (c *tunnelConn) Write(p []byte) (int, error) { return c.in.Write(p) }

// Close ends the relay: EOF on its stdin stops it inside the container;
// its output is drained until it has exited (bounded, then killed).
func (c *tunnelConn) Close() error {
	c.once.Do(func() {
		c.in.Close()
		c.out.SetReadDeadline(time.Now().Add(tunnelCloseWait))
		io.Copy(io.Discard, c.out)
		select {
		case <-c.done:
		default:
			c.cancel()
			<-c.done
		}
		c.out.Close()
		c.cancel()
	})
	return nil
}

func (c *tunnelConn) LocalAddr() net.Addr  { return c.addr }
func (c *tunnelConn) RemoteAddr() net.Addr { return c.addr }

func (c *tunnelConn) SetDeadline(t time.Time) error {
	return errors.Join(c.out.SetReadDeadline(t), c.in.SetWriteDeadline(t))
}
func (c *tunnelConn) SetReadDeadline(t time.Time) error  { return c.out.SetReadDeadline(t) }
func (c *tunnelConn) SetWriteDeadline(t time.Time) error { return c.in.SetWriteDeadline(t) }

// tunnelAddr is the server address as the container sees it.
type tunnelAddr string

func (a tunnelAddr) Network() string { return "tcp" }
func (a tunnelAddr) String() string  { return string(a) }
