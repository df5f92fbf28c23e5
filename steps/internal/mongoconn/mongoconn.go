// Package mongoconn is how the MongoDB steps reach a server: the connection
// params they share, the tools' --config file that keeps the URI off the
// command line, a fast reachability check, a driver client for the counts
// and scratch drops the steps make themselves, and the parsing of the
// tools' per-collection progress lines. With container:/compose: the tools
// run inside the container and the driver's connections are tunnelled
// through it (session.go, tunnel.go).
package mongoconn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/container"
)

// Conn is embedded (inline) in the params of mongodump and mongorestore.
type Conn struct {
	URI    string `yaml:"uri" secret:"true" doc:"mongodb:// or mongodb+srv:// connection string; passed in a 0600 --config file (in a container: piped to the tool's --config), never on the command line"`
	URIEnv string `yaml:"uri_env" doc:"(alternative) name of the environment variable holding the connection string"`
	// In a container, the URI's hosts are as seen from inside it; without
	// uri/uri_env the tools connect to its localhost (DefaultContainerURI).
	container.Target `yaml:",inline"`
}

// DefaultContainerURI is the server a tool in a container reaches when
// neither uri nor uri_env is given: the container's own mongod.
const DefaultContainerURI = "mongodb://127.0.0.1:27017/"

// Check enforces the connection rules (the steps' Validate calls it).
func (c *Conn) Check() error {
	if err := c.Target.Check(); err != nil {
		return err
	}
	if c.URI != "" && c.URIEnv != "" {
		return errors.New("give exactly one of uri and uri_env")
	}
	if c.URI == "" && c.URIEnv == "" && !c.Target.Enabled() {
		return errors.New("give exactly one of uri and uri_env (or container/compose, for the container's localhost)")
	}
	if c.URI != "" && !strings.Contains(c.URI, "${{") && !strings.HasPrefix(c.URI, "mongodb://") && !strings.HasPrefix(c.URI, "mongodb+srv://") {
		return errors.New("uri: must start with mongodb:// or mongodb+srv://")
	}
	return nil
}

// ConfigFile writes the tools' --config YAML file (keys uri/password, as
// mongo-tools' options.ParseConfigFile reads them) 0600 into the private temp
// dir and registers the URI's password as a secret. The caller removes it.
func ConfigFile(env *engine.Env, uri string) (string, error) {
	addSecrets(env, uri)
	data, err := configYAML(uri)
	if err != nil {
		return "", err
	}
	dir, err := env.TempDir()
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "mongo-config-*.yaml")
	if err != nil {
		return "", err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), f.Close()
}

// addSecrets registers the URI's passwords as secrets.
func addSecrets(env *engine.Env, uri string) {
	if u, err := url.Parse(uri); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			env.Secrets.Add(pw)
		}
	}
	env.Secrets.Add(engine.URIPasswords(uri)...)
}

// configYAML is the --config document: YAML quoting is yaml.Marshal's, so
// any character in the URI survives mongo-tools' yaml.UnmarshalStrict.
func configYAML(uri string) ([]byte, error) {
	return yaml.Marshal(map[string]string{"uri": uri})
}

// Counter parses the tools' progress lines from stderr as they come:
// "done dumping db.coll (N documents)" and
// "finished restoring db.coll (N documents, M failures)".
type Counter struct {
	mu       sync.Mutex
	counts   map[string]int64
	failures map[string]int64
	pw       *io.PipeWriter
	done     chan struct{}
}

var (
	dumpedRe   = regexp.MustCompile("done dumping `?([^`\\s]+)`? \\((\\d+) documents?\\)")
	restoredRe = regexp.MustCompile("finished restoring `?([^`\\s]+)`? \\((\\d+) documents?, (\\d+) failures?\\)")
)

// NewCounter starts parsing what is written to it.
func NewCounter() *Counter {
	pr, pw := io.Pipe()
	c := &Counter{counts: map[string]int64{}, failures: map[string]int64{}, pw: pw, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			if m := dumpedRe.FindStringSubmatch(line); m != nil {
				n, _ := strconv.ParseInt(m[2], 10, 64)
				c.counts[m[1]] = n
			} else if m := restoredRe.FindStringSubmatch(line); m != nil {
				n, _ := strconv.ParseInt(m[2], 10, 64)
				f, _ := strconv.ParseInt(m[3], 10, 64)
				c.counts[m[1]] = n
				c.failures[m[1]] = f
			}
			c.mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	return c
}

func (c *Counter) Write(p []byte) (int, error) { return c.pw.Write(p) }

// Result stops parsing and returns counts, failures and their totals.
func (c *Counter) Result() (map[string]int64, map[string]int64, int64, int64) {
	c.pw.Close()
	<-c.done
	var n, f int64
	for _, v := range c.counts {
		n += v
	}
	for _, v := range c.failures {
		f += v
	}
	return c.counts, c.failures, n, f
}

// Resolve is the connection string, from uri or the uri_env variable
// (in a container without either: DefaultContainerURI).
func (c *Conn) Resolve(env *engine.Env) (string, error) {
	if c.URIEnv != "" {
		v, ok := engine.LookupEnv(env.Environ, c.URIEnv)
		if !ok || v == "" {
			return "", fmt.Errorf("uri_env: %s is not set", c.URIEnv)
		}
		return v, nil
	}
	if c.URI == "" && c.Target.Enabled() {
		return DefaultContainerURI, nil
	}
	return c.URI, nil
}

// Hosts returns the URI's host list ("h1:27017,h2:27017", or the SRV
// name), without credentials, options or database.
func Hosts(uri string) string {
	rest, ok := strings.CutPrefix(uri, "mongodb://")
	if !ok {
		if rest, ok = strings.CutPrefix(uri, "mongodb+srv://"); !ok {
			return ""
		}
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	return rest
}

// Connect opens a driver client for the few queries the steps make
// themselves (counts, scratch checks, drops). The URI's password must
// already be registered as a secret (ConfigFile does).
func Connect(uri string) (*mongo.Client, error) {
	cl, err := mongo.Connect(options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(ReachTimeout).SetAppName("planrun"))
	if err != nil {
		return nil, fmt.Errorf("MongoDB client: %w", err)
	}
	return cl, nil
}

// CountDocuments counts a collection's documents exactly (a query,
// not the collection's metadata estimate).
func CountDocuments(ctx context.Context, cl *mongo.Client, ns string) (int64, error) {
	db, coll, ok := strings.Cut(ns, ".")
	if !ok {
		return 0, fmt.Errorf("namespace %q has no collection", ns)
	}
	n, err := cl.Database(db).Collection(coll).CountDocuments(ctx, bson.D{})
	if err != nil {
		return 0, fmt.Errorf("counting documents in %s: %w", ns, err)
	}
	return n, nil
}

// ReachTimeout bounds the reachability check before the tools run.
var ReachTimeout = 10 * time.Second

// Reachable fails fast, with a clear error, when none of the URI's
// hosts accepts a TCP connection: mongodump and mongorestore themselves
// wait for a server indefinitely (they ignore serverSelectionTimeoutMS),
// which would turn a down database into a step that hangs until its
// timeout. mongodb+srv:// URIs (DNS seed lists) are left to the tools.
func Reachable(ctx context.Context, uri string) error {
	d := net.Dialer{Timeout: ReachTimeout}
	return reachable(ctx, uri, "MongoDB unreachable", d.DialContext)
}

// reachable returns nil once dial connects to one of the URI's hosts.
func reachable(ctx context.Context, uri, what string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) error {
	if !strings.HasPrefix(uri, "mongodb://") {
		return nil
	}
	var errs []string
	for _, h := range strings.Split(Hosts(uri), ",") {
		if h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), "27017")
		}
		dctx, cancel := context.WithTimeout(ctx, ReachTimeout)
		c, err := dial(dctx, "tcp", h)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		errs = append(errs, err.Error())
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s", what, strings.Join(errs, "; "))
}
