package walarchive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/planrun/planrun/steps/internal/artifact"
)

// recordName is the file whose presence marks a base backup complete.
const recordName = "backup.json"

func writeBackupRecord(b *BaseBackup) error {
	if b.Dir == "" {
		return errors.New("backup record: no Dir")
	}
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	w, err := artifact.Create(context.Background(), nil, artifact.WriteOptions{
		Output: filepath.Join(b.Dir, recordName), Compress: "none"})
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := w.Write(append(data, '\n')); err != nil {
		return err
	}
	_, err = w.Commit()
	return err
}

func backups(cfg *Config) ([]BaseBackup, error) {
	root := filepath.Join(cfg.Dir, "base")
	ents, err := readDir(root)
	if err != nil {
		return nil, err
	}
	var out []BaseBackup
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(root, e.Name())
		data, err := os.ReadFile(filepath.Join(dir, recordName))
		if errors.Is(err, os.ErrNotExist) {
			continue // incomplete (or being written)
		}
		if err != nil {
			return nil, err
		}
		var b BaseBackup
		if err := json.Unmarshal(data, &b); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, recordName), err)
		}
		b.Dir = dir
		out = append(out, b)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].StartTime.Equal(out[j].StartTime) {
			return out[i].StartTime.Before(out[j].StartTime)
		}
		return out[i].Label < out[j].Label
	})
	return out, nil
}

// segSize is the segment size the archive's backups record (16 MiB
// without any).
func segSize(bs []BaseBackup) int64 {
	for i := len(bs) - 1; i >= 0; i-- {
		if bs[i].WALSegmentSize > 0 {
			return bs[i].WALSegmentSize
		}
	}
	return DefaultSegmentSize
}

func history(ctx context.Context, cfg *Config, tli uint32) ([]HistoryEntry, error) {
	if tli <= 1 {
		return nil, nil
	}
	name := fmt.Sprintf("%08X.history", tli)
	have, err := cfg.lookup(name, kindHistory)
	if err != nil {
		return nil, err
	}
	if len(have) == 0 {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	data, err := cfg.read(ctx, have[0])
	if err != nil {
		return nil, err
	}
	return ParseHistory(name, data)
}

// ParseHistory parses a timeline history file: one line per earlier
// timeline, "parentTLI<TAB>switchpoint<TAB>reason", # comments.
func ParseHistory(name string, data []byte) ([]HistoryEntry, error) {
	var out []HistoryEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.SplitN(line, "\t", 3)
		if len(f) < 2 {
			f = strings.Fields(line)
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("%s:%d: want \"timeline<TAB>switchpoint<TAB>reason\", got %q", name, n, line)
		}
		t, err := strconv.ParseUint(strings.TrimSpace(f[0]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: bad timeline %q", name, n, f[0])
		}
		lsn, err := parseLSN(f[1])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		e := HistoryEntry{TLI: uint32(t), Switch: lsn}
		if len(f) > 2 {
			e.Reason = strings.TrimSpace(f[2])
		}
		if len(out) > 0 && (e.TLI <= out[len(out)-1].TLI || e.Switch < out[len(out)-1].Switch) {
			return nil, fmt.Errorf("%s:%d: timelines must increase in order", name, n)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
