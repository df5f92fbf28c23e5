package steps

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
)

// MongoConn is the connection shared by mongodump and mongorestore.
type MongoConn struct {
	URI    string `yaml:"uri" secret:"true" doc:"mongodb:// or mongodb+srv:// connection string; passed in a 0600 --config file, never on the command line"`
	URIEnv string `yaml:"uri_env" doc:"(alternative) name of the environment variable holding the connection string"`
}

func (c *MongoConn) validate() error {
	if (c.URI == "") == (c.URIEnv == "") {
		return errors.New("give exactly one of uri and uri_env")
	}
	if c.URI != "" && !strings.Contains(c.URI, "${{") && !strings.HasPrefix(c.URI, "mongodb://") && !strings.HasPrefix(c.URI, "mongodb+srv://") {
		return errors.New("uri: must start with mongodb:// or mongodb+srv://")
	}
	return nil
}

// mongoConfig writes the tools' --config YAML file (keys uri/password, as
// mongo-tools' options.ParseConfigFile reads them) 0600 into the private temp
// dir and registers the URI's password as a secret. The caller removes it.
func mongoConfig(env *engine.Env, uri string) (string, error) {
	if u, err := url.Parse(uri); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			env.Secrets.Add(pw)
		}
	}
	env.Secrets.Add(engine.URIPasswords(uri)...)
	data, err := yaml.Marshal(map[string]string{"uri": uri})
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

// mongoCounter parses the tools' progress lines from stderr as they come:
// "done dumping db.coll (N documents)" and
// "finished restoring db.coll (N documents, M failures)".
type mongoCounter struct {
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

func newMongoCounter() *mongoCounter {
	pr, pw := io.Pipe()
	c := &mongoCounter{counts: map[string]int64{}, failures: map[string]int64{}, pw: pw, done: make(chan struct{})}
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

func (c *mongoCounter) Write(p []byte) (int, error) { return c.pw.Write(p) }

// result stops parsing and returns counts, failures and their totals.
func (c *mongoCounter) result() (map[string]int64, map[string]int64, int64, int64) {
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

func mongoURI(env *engine.Env, c *MongoConn) (string, error) {
	if c.URIEnv != "" {
		v, ok := engine.LookupEnv(env.Environ, c.URIEnv)
		if !ok || v == "" {
			return "", fmt.Errorf("uri_env: %s is not set", c.URIEnv)
		}
		return v, nil
	}
	return c.URI, nil
}

// mongoHosts returns the URI's host list ("h1:27017,h2:27017", or the SRV
// name), without credentials, options or database.
func mongoHosts(uri string) string {
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

// mongoConnect opens a driver client for the few queries the steps make
// themselves (counts, scratch checks, drops). The URI's password must
// already be registered as a secret (mongoConfig does).
func mongoConnect(uri string) (*mongo.Client, error) {
	cl, err := mongo.Connect(options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(mongoReachTimeout).SetAppName("planrun"))
	if err != nil {
		return nil, fmt.Errorf("MongoDB client: %w", err)
	}
	return cl, nil
}

// mongoCountDocuments counts a collection's documents exactly (a query,
// not the collection's metadata estimate).
func mongoCountDocuments(ctx context.Context, cl *mongo.Client, ns string) (int64, error) {
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

// mongoReachTimeout bounds the reachability check before the tools run.
var mongoReachTimeout = 10 * time.Second

// mongoReachable fails fast, with a clear error, when none of the URI's
// hosts accepts a TCP connection: mongodump and mongorestore themselves
// wait for a server indefinitely (they ignore serverSelectionTimeoutMS),
// which would turn a down database into a step that hangs until its
// timeout. mongodb+srv:// URIs (DNS seed lists) are left to the tools.
func mongoReachable(ctx context.Context, uri string) error {
	rest, ok := strings.CutPrefix(uri, "mongodb://")
	if !ok {
		return nil
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	var errs []string
	d := net.Dialer{Timeout: mongoReachTimeout}
	for _, h := range strings.Split(rest, ",") {
		if h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), "27017")
		}
		c, err := d.DialContext(ctx, "tcp", h)
		if err == nil {
			c.Close()
			return nil
		}
		errs = append(errs, err.Error())
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("MongoDB unreachable: %s", strings.Join(errs, "; "))
}
