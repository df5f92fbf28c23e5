package walarchive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/planrun/planrun/steps/internal/artifact"
)

func expire(ctx context.Context, cfg *Config, keep int, keepFor time.Duration, dryRun bool) (*ExpireResult, error) {
	if keep <= 0 && keepFor <= 0 {
		return nil, errors.New("expire: give keep (backups) and/or keep_for (a time window): refusing to remove every backup")
	}
	bs, err := backups(cfg)
	if err != nil {
		return nil, err
	}
	res := &ExpireResult{}
	if len(bs) == 0 {
		// Without a backup no WAL is known to be unneeded.
		return res, nil
	}
	now := time.Now()
	kept := make([]bool, len(bs))
	for i, b := range bs {
		newest := keep > 0 && i >= len(bs)-keep
		recent := keepFor > 0 && now.Sub(b.StartTime) <= keepFor
		kept[i] = newest || recent
	}
	oldest := -1
	for i, b := range bs {
		if kept[i] {
			res.Kept = append(res.Kept, b.Label)
			if oldest < 0 {
				oldest = i
			}
		}
	}
	if oldest < 0 {
		// keep_for alone and every backup older: the newest one stays,
		// or the archive could not be restored at all.
		oldest = len(bs) - 1
		kept[oldest] = true
		res.Kept = []string{bs[oldest].Label}
	}
	first := bs[oldest]
	_, startSeg, err := ParseSegmentName(first.StartWAL, segSize(bs))
	if err != nil {
		return nil, fmt.Errorf("backup %s: start_wal: %w", first.Label, err)
	}
	for i, b := range bs {
		if !kept[i] {
			res.Backups = append(res.Backups, b.Label)
		}
	}
	ix, err := cfg.index(segSize(bs))
	if err != nil {
		return nil, err
	}
	var doomed []stored
	for _, f := range ix.files {
		if f.Kind == kindHistory {
			continue
		}
		// Every kind but history starts with a segment name; its position
		// counts, not its timeline: WAL positions grow across timelines.
		_, segno, err := ParseSegmentName(f.Name[:24], ix.segSize)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.rel(f.Path), err)
		}
		if segno < startSeg {
			doomed = append(doomed, f)
			res.WALFiles = append(res.WALFiles, cfg.rel(f.Path))
		}
	}
	if dryRun {
		return res, nil
	}
	// Backups first (their record first: a half-removed backup is then
	// merely incomplete), then the WAL only they needed.
	for i, b := range bs {
		if kept[i] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := os.Remove(filepath.Join(b.Dir, recordName)); err != nil {
			return res, err
		}
		if err := artifact.SyncDir(b.Dir); err != nil {
			return res, err
		}
		if err := os.RemoveAll(b.Dir); err != nil {
			return res, err
		}
	}
	if len(res.Backups) > 0 {
		if err := artifact.SyncDir(filepath.Join(cfg.Dir, "base")); err != nil {
			return res, err
		}
	}
	dirs := map[string]bool{}
	for _, f := range doomed {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := os.Remove(f.Path + ".sha256"); err != nil && !os.IsNotExist(err) {
			return res, err
		}
		if err := os.Remove(f.Path); err != nil && !os.IsNotExist(err) {
			return res, err
		}
		dirs[filepath.Dir(f.Path)] = true
	}
	for d := range dirs {
		// Empty directories go (Remove fails on the others, as it should).
		if os.Remove(d) != nil {
			if err := artifact.SyncDir(d); err != nil {
				return res, err
			}
		}
	}
	return res, artifact.SyncDir(filepath.Join(cfg.Dir, "wal"))
}
