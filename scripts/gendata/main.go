// Command gendata writes a reproducible mixed file tree for the artifact
// benchmarks: JSON-lines logs and text of varied sizes (compressible),
// many small files (per-file overhead), random bytes (incompressible, like
// media or already-compressed dumps), plus a few symlinks, hard links and
// empty directories. The same -seed and -size give the same bytes.
//
//	go run ./scripts/gendata -out /var/tmp/planrun-bench/tree -size 2GiB
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/planrun/planrun/engine"
)

func main() {
	out := flag.String("out", "", "directory to create (must not exist)")
	sizeStr := flag.String("size", "2GiB", "approximate total size")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	size, err := engine.ParseSize(*sizeStr)
	if err != nil || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: gendata -out DIR [-size 2GiB] [-seed 1]")
		os.Exit(2)
	}
	if _, err := os.Stat(*out); err == nil {
		fmt.Fprintf(os.Stderr, "gendata: %s exists\n", *out)
		os.Exit(1)
	}
	g := &gen{rng: rand.New(rand.NewPCG(*seed, 0x5eed)), root: *out}
	g.words()
	if err := g.tree(size); err != nil {
		fmt.Fprintln(os.Stderr, "gendata:", err)
		os.Exit(1)
	}
	fmt.Printf("gendata: %d files, %d bytes in %s\n", g.files, g.bytes, *out)
}

type gen struct {
	rng   *rand.Rand
	root  string
	vocab []string
	files int
	bytes int64
}

func (g *gen) words() {
	const letters = "etaoinshrdlucmfwypvbgkjqxz"
	for i := 0; i < 4000; i++ {
		n := 2 + g.rng.IntN(9)
		b := make([]byte, n)
		for j := range b {
			// Skewed letter choice: text-like entropy.
			b[j] = letters[min(g.rng.IntN(26), g.rng.IntN(26))]
		}
		g.vocab = append(g.vocab, string(b))
	}
}

// word picks Zipf-like: a few words are very common.
func (g *gen) word() string {
	i := g.rng.IntN(len(g.vocab))
	return g.vocab[i*i/len(g.vocab)]
}

// logSize is log-uniform in [lo, hi).
func (g *gen) logSize(lo, hi int64) int64 {
	return int64(float64(lo) * math.Pow(float64(hi)/float64(lo), g.rng.Float64()))
}

func (g *gen) tree(total int64) error {
	budget := map[string]int64{
		"logs":  total * 60 / 100, // JSON lines
		"docs":  total * 12 / 100, // prose/markdown
		"small": total * 8 / 100,  // many small config/text files
		"blobs": total * 20 / 100, // incompressible
	}
	for _, kind := range []string{"logs", "docs", "small", "blobs"} {
		left := budget[kind]
		for i := 0; left > 0; i++ {
			var n int64
			var ext string
			switch kind {
			case "logs":
				n, ext = g.logSize(4<<10, 48<<20), ".jsonl"
			case "docs":
				n, ext = g.logSize(1<<10, 4<<20), ".md"
			case "small":
				n, ext = g.logSize(64, 32<<10), ".conf"
			case "blobs":
				n, ext = g.logSize(256<<10, 96<<20), ".bin"
			}
			n = min(n, left)
			dir := filepath.Join(g.root, kind, fmt.Sprintf("d%02d", i%23), fmt.Sprintf("s%d", i%7))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			path := filepath.Join(dir, fmt.Sprintf("f%06d%s", i, ext))
			if err := g.file(path, kind, n); err != nil {
				return err
			}
			left -= n
		}
	}
	// A few of the things tar must keep.
	for i := 0; i < 5; i++ {
		if err := os.MkdirAll(filepath.Join(g.root, "empty", fmt.Sprintf("e%d", i)), 0o750); err != nil {
			return err
		}
	}
	if err := os.Symlink("../logs/d00/s0", filepath.Join(g.root, "empty", "link-to-logs")); err != nil {
		return err
	}
	first := filepath.Join(g.root, "small", "d00", "s0", "f000000.conf")
	return os.Link(first, filepath.Join(g.root, "empty", "hardlink.conf"))
}

func (g *gen) file(path, kind string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var written int64
	buf := make([]byte, 0, 64<<10)
	for written < n {
		buf = buf[:0]
		switch kind {
		case "logs":
			buf = g.logLines(buf)
		case "docs", "small":
			buf = g.prose(buf)
		default:
			buf = buf[:cap(buf)]
			for i := 0; i+8 <= len(buf); i += 8 {
				v := g.rng.Uint64()
				for j := 0; j < 8; j++ {
					buf[i+j] = byte(v >> (8 * j))
				}
			}
		}
		k := min(int64(len(buf)), n-written)
		if _, err := w.Write(buf[:k]); err != nil {
			f.Close()
			return err
		}
		written += k
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	g.files++
	g.bytes += n
	return f.Close()
}

var levels = []string{"info", "info", "info", "debug", "warn", "error"}
var services = []string{"api", "worker", "gateway", "billing", "auth", "search"}

func (g *gen) logLines(b []byte) []byte {
	for len(b) < 60<<10 {
		b = append(b, `{"ts":"2024-`...)
		b = appendPad(b, 1+g.rng.IntN(12))
		b = append(b, '-')
		b = appendPad(b, 1+g.rng.IntN(28))
		b = append(b, 'T')
		b = appendPad(b, g.rng.IntN(24))
		b = append(b, ':')
		b = appendPad(b, g.rng.IntN(60))
		b = append(b, ':')
		b = appendPad(b, g.rng.IntN(60))
		b = append(b, `.`...)
		b = strconv.AppendInt(b, int64(100+g.rng.IntN(900)), 10)
		b = append(b, `Z","level":"`...)
		b = append(b, levels[g.rng.IntN(len(levels))]...)
		b = append(b, `","service":"`...)
		b = append(b, services[g.rng.IntN(len(services))]...)
		b = append(b, `","user_id":`...)
		b = strconv.AppendInt(b, int64(g.rng.IntN(50000)), 10)
		b = append(b, `,"path":"/v1/`...)
		b = append(b, g.word()...)
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(g.rng.IntN(10000)), 10)
		b = append(b, `","status":`...)
		b = strconv.AppendInt(b, int64([]int{200, 200, 200, 201, 204, 404, 500}[g.rng.IntN(7)]), 10)
		b = append(b, `,"latency_ms":`...)
		b = strconv.AppendFloat(b, float64(g.rng.IntN(100000))/100, 'f', 2, 64)
		b = append(b, `,"msg":"`...)
		for i, n := 0, 3+g.rng.IntN(8); i < n; i++ {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, g.word()...)
		}
		b = append(b, "\"}\n"...)
	}
	return b
}

func appendPad(b []byte, v int) []byte {
	if v < 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, int64(v), 10)
}

func (g *gen) prose(b []byte) []byte {
	for len(b) < 60<<10 {
		n := 5 + g.rng.IntN(20)
		for i := 0; i < n; i++ {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, g.word()...)
		}
		b = append(b, ".\n"...)
		if g.rng.IntN(8) == 0 {
			b = append(b, '\n')
		}
	}
	return b
}
