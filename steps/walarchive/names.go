package walarchive

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// DefaultSegmentSize is PostgreSQL's default WAL segment size, used where
// no backup record says otherwise.
const DefaultSegmentSize = 16 << 20

func parseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(strings.TrimSpace(s), "/")
	if ok {
		h, err1 := strconv.ParseUint(hi, 16, 32)
		l, err2 := strconv.ParseUint(lo, 16, 32)
		if err1 == nil && err2 == nil {
			return LSN(h<<32 | l), nil
		}
	}
	return 0, fmt.Errorf("bad LSN %q (want e.g. 16/B374D848)", s)
}

// segsPerID is the number of segments in one "log file" (the middle 8
// hex digits of a segment name count these units of 4 GiB).
func segsPerID(segSize int64) uint64 { return 0x100000000 / uint64(segSize) }

func segName(tli uint32, segno uint64, segSize int64) string {
	n := segsPerID(segSize)
	return fmt.Sprintf("%08X%08X%08X", tli, segno/n, segno%n)
}

// ParseSegmentName splits a segment name into its timeline and segment number.
func ParseSegmentName(name string, segSize int64) (tli uint32, segno uint64, err error) {
	if !isHex(name, 24) {
		return 0, 0, fmt.Errorf("%q is not a WAL segment name", name)
	}
	t, _ := strconv.ParseUint(name[:8], 16, 32)
	log, _ := strconv.ParseUint(name[8:16], 16, 32)
	seg, _ := strconv.ParseUint(name[16:24], 16, 32)
	if seg >= segsPerID(segSize) {
		return 0, 0, fmt.Errorf("%q: segment %X out of range for %d-byte segments", name, seg, segSize)
	}
	return uint32(t), log*segsPerID(segSize) + seg, nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// fileKind is what PostgreSQL archives.
type fileKind int

const (
	kindSegment fileKind = iota
	kindPartial          // 000000010000000000000005.partial (end of a timeline)
	kindBackup           // 000000010000000000000002.00000028.backup
	kindHistory          // 00000002.history
)

// classify checks a WAL file name as PostgreSQL writes it.
func classify(name string) (fileKind, error) {
	switch {
	case isHex(name, 24):
		return kindSegment, nil
	case len(name) == 32 && strings.HasSuffix(name, ".partial") && isHex(name[:24], 24):
		return kindPartial, nil
	case len(name) == 40 && strings.HasSuffix(name, ".backup") && isHex(name[:24], 24) && name[24] == '.' && isHex(name[25:33], 8):
		return kindBackup, nil
	case len(name) == 16 && strings.HasSuffix(name, ".history") && isHex(name[:8], 8):
		return kindHistory, nil
	}
	return 0, fmt.Errorf("%q is not a WAL file name (segment, .partial, .backup or .history)", name)
}

// walDir is the archive directory of a WAL file: wal/ for history files,
// wal/<timeline+log> for the rest (at most 256 segments of 16 MiB each).
func (c *Config) walDir(name string, kind fileKind) string {
	if kind == kindHistory {
		return filepath.Join(c.Dir, "wal")
	}
	return filepath.Join(c.Dir, "wal", name[:16])
}

// stored is one archived WAL file.
type stored struct {
	Name string // PostgreSQL's name
	Kind fileKind
	Path string // on disk
	Raw  string // sha256 of the clear content, from the file name
}

// parseStored recognises <walname>-<sha256>.<ext> (temp files and
// sidecars are not).
func parseStored(dir, base string) (stored, bool) {
	if strings.HasPrefix(base, ".") || strings.HasSuffix(base, ".sha256") {
		return stored{}, false
	}
	name, rest, ok := strings.Cut(base, "-")
	if !ok || len(rest) < 65 || rest[64] != '.' {
		return stored{}, false
	}
	kind, err := classify(name)
	if err != nil {
		return stored{}, false
	}
	return stored{Name: name, Kind: kind, Path: filepath.Join(dir, base), Raw: rest[:64]}, true
}

// lookup finds the archived copies of name (normally none or one).
func (c *Config) lookup(name string, kind fileKind) ([]stored, error) {
	dir := c.walDir(name, kind)
	ents, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	var out []stored
	prefix := name + "-"
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		if s, ok := parseStored(dir, e.Name()); ok && s.Name == name {
			out = append(out, s)
		}
	}
	return out, nil
}

// list returns every archived WAL file, sorted by name.
func (c *Config) list() ([]stored, error) {
	root := filepath.Join(c.Dir, "wal")
	ents, err := readDir(root)
	if err != nil {
		return nil, err
	}
	var out []stored
	for _, e := range ents {
		if !e.IsDir() {
			if s, ok := parseStored(root, e.Name()); ok {
				out = append(out, s)
			}
			continue
		}
		if !isHex(e.Name(), 16) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		sub, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, f := range sub {
			if s, ok := parseStored(dir, f.Name()); ok {
				out = append(out, s)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// rel is path relative to the archive directory.
func (c *Config) rel(path string) string {
	if r, err := filepath.Rel(c.Dir, path); err == nil {
		return r
	}
	return path
}

// Archived reports whether the archive holds a complete copy of the WAL
// file name (pg_basebackup's archive check waits for it).
func Archived(cfg *Config, name string) (bool, error) {
	kind, err := classify(name)
	if err != nil {
		return false, err
	}
	have, err := cfg.lookup(name, kind)
	return len(have) > 0, err
}

// readDir is os.ReadDir with a missing directory read as empty.
func readDir(dir string) ([]os.DirEntry, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	return ents, err
}
