package walarchive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/planrun/planrun/steps/internal/artifact"
)

// span says that from segment number From on, recovery reads timeline TLI
// (until the next span's From).
type span struct {
	TLI  uint32
	From uint64
}

// tliFor is the timeline recovery reads segment segno from.
func tliFor(spans []span, segno uint64) uint32 {
	t := spans[0].TLI
	for _, s := range spans {
		if s.From <= segno {
			t = s.TLI
		}
	}
	return t
}

// index is the archive's WAL files by kind.
type index struct {
	segs    map[uint32]map[uint64]stored // timeline → segment number → file
	hist    map[uint32]stored
	files   []stored
	maxTLI  uint32
	segSize int64
}

func (c *Config) index(segSize int64) (*index, error) {
	files, err := c.list()
	if err != nil {
		return nil, err
	}
	ix := &index{segs: map[uint32]map[uint64]stored{}, hist: map[uint32]stored{}, files: files, segSize: segSize}
	for _, f := range files {
		switch f.Kind {
		case kindSegment:
			tli, segno, err := ParseSegmentName(f.Name, segSize)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.rel(f.Path), err)
			}
			if ix.segs[tli] == nil {
				ix.segs[tli] = map[uint64]stored{}
			}
			ix.segs[tli][segno] = f
			ix.maxTLI = max(ix.maxTLI, tli)
		case kindHistory:
			t, _ := strconv.ParseUint(f.Name[:8], 16, 32)
			ix.hist[uint32(t)] = f
			ix.maxTLI = max(ix.maxTLI, uint32(t))
		}
	}
	return ix, nil
}

func verify(ctx context.Context, cfg *Config) (*VerifyReport, error) {
	bs, err := backups(cfg)
	if err != nil {
		return nil, err
	}
	ix, err := cfg.index(segSize(bs))
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		ix.maxTLI = max(ix.maxTLI, b.Timeline)
	}
	rep := &VerifyReport{}
	if ix.maxTLI == 0 {
		rep.Notes = append(rep.Notes, "the archive holds no WAL and no base backup")
		return rep, nil
	}
	spans, notes, err := ix.ancestry(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rep.Timeline = ix.maxTLI
	rep.Notes = append(rep.Notes, notes...)
	onPath := func(tli uint32, segno uint64) bool { return tliFor(spans, segno) == tli }

	// The chain starts at the oldest backup's first segment (or, without
	// backups, the oldest segment recovery would read) and ends at the
	// newest segment (or the newest backup's last, if that is later).
	start, end := uint64(math.MaxUint64), uint64(0)
	for tli, m := range ix.segs {
		for segno := range m {
			if onPath(tli, segno) {
				start, end = min(start, segno), max(end, segno)
			}
		}
	}
	if len(bs) > 0 {
		b := bs[0]
		tli, s, err := ParseSegmentName(b.StartWAL, ix.segSize)
		if err != nil {
			return nil, fmt.Errorf("backup %s: start_wal: %w", b.Label, err)
		}
		if !onTimeline(spans, tli) {
			return nil, fmt.Errorf("backup %s is on timeline %d, which is not in the history of timeline %d", b.Label, tli, ix.maxTLI)
		}
		start = s
		rep.Backup = b.Label
		last := bs[len(bs)-1]
		if _, e, err := ParseSegmentName(last.StopWAL, ix.segSize); err == nil {
			end = max(end, e)
		}
	}
	if start == math.MaxUint64 {
		rep.Notes = append(rep.Notes, "no WAL segment archived yet")
		return rep, nil
	}
	name := func(segno uint64) string { return segName(tliFor(spans, segno), segno, ix.segSize) }
	rep.From, rep.To = name(start), name(max(start, end))
	var gap *Gap
	for segno := start; segno <= end; segno++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, ok := ix.segs[tliFor(spans, segno)][segno]
		if !ok {
			if gap == nil {
				rep.Gaps = append(rep.Gaps, Gap{From: name(segno)})
				gap = &rep.Gaps[len(rep.Gaps)-1]
			}
			gap.To = name(segno)
			continue
		}
		gap = nil
		rep.Segments++
		if bad, err := sidecarMismatch(f.Path); err != nil {
			return nil, err
		} else if bad != "" {
			rep.Corrupt = append(rep.Corrupt, cfg.rel(f.Path)+": "+bad)
		}
	}
	for _, s := range spans {
		if h, ok := ix.hist[s.TLI]; ok {
			if bad, err := sidecarMismatch(h.Path); err != nil {
				return nil, err
			} else if bad != "" {
				rep.Corrupt = append(rep.Corrupt, cfg.rel(h.Path)+": "+bad)
			}
		}
	}
	return rep, nil
}

func onTimeline(spans []span, tli uint32) bool {
	for _, s := range spans {
		if s.TLI == tli {
			return true
		}
	}
	return false
}

// OK reports whether the chain is unbroken and every file matches its sidecar.
func (r *VerifyReport) OK() bool { return len(r.Gaps) == 0 && len(r.Corrupt) == 0 }

// Problem describes the first thing wrong ("" when OK).
func (r *VerifyReport) Problem() string {
	switch {
	case len(r.Gaps) > 0:
		g := r.Gaps[0]
		what := "segment " + g.From + " is missing"
		if g.To != g.From {
			what = "segments " + g.From + " to " + g.To + " are missing"
		}
		if n := len(r.Gaps); n > 1 {
			what += fmt.Sprintf(" (and %d more gaps)", n-1)
		}
		return "WAL chain broken: " + what
	case len(r.Corrupt) > 0:
		return "corrupt archive file " + r.Corrupt[0]
	}
	return ""
}

// ancestry is the timeline path recovery to the newest timeline follows,
// from its history file; when that is encrypted and no identity is
// configured (the database host), the switch points are inferred from
// where each timeline's segments begin.
func (ix *index) ancestry(ctx context.Context, cfg *Config) ([]span, []string, error) {
	top := ix.maxTLI
	if top == 1 {
		return []span{{TLI: 1}}, nil, nil
	}
	h, ok := ix.hist[top]
	if !ok {
		return nil, nil, fmt.Errorf("timeline %d: history file %08X.history is not in the archive", top, top)
	}
	if strings.HasSuffix(h.Path, ".age") && cfg.IdentityFile == "" && cfg.ReadOptions.PassphraseFile == "" {
		return ix.inferAncestry(), []string{fmt.Sprintf(
			"history files are encrypted and no identity_file is configured: timeline switches inferred from the segments present")}, nil
	}
	entries, err := history(ctx, cfg, top)
	if err != nil {
		return nil, nil, err
	}
	var spans []span
	var from uint64
	for _, e := range entries {
		spans = append(spans, span{TLI: e.TLI, From: from})
		from = uint64(e.Switch) / uint64(ix.segSize)
	}
	return append(spans, span{TLI: top, From: from}), nil, nil
}

func (ix *index) inferAncestry() []span {
	minSeg := func(tli uint32) (uint64, bool) {
		m, ok := uint64(math.MaxUint64), false
		for s := range ix.segs[tli] {
			m, ok = min(m, s), true
		}
		return m, ok
	}
	var tlis []uint32
	for t := range ix.segs {
		tlis = append(tlis, t)
	}
	sort.Slice(tlis, func(i, j int) bool { return tlis[i] > tlis[j] })
	var spans []span
	begin := uint64(math.MaxUint64)
	if m, ok := minSeg(ix.maxTLI); ok {
		begin = m
	}
	spans = append(spans, span{TLI: ix.maxTLI, From: begin})
	for _, t := range tlis {
		if t >= spans[0].TLI {
			continue
		}
		if m, ok := minSeg(t); ok && m < begin {
			spans = append([]span{{TLI: t, From: m}}, spans...)
			begin = m
		}
	}
	spans[0].From = 0
	return spans
}

// sidecarMismatch returns why the file at path does not match its
// sidecar, or "" when it does.
func sidecarMismatch(path string) (string, error) {
	want, err := artifact.ReadSidecar(path)
	if os.IsNotExist(err) {
		return "no .sha256 sidecar", nil
	}
	if err != nil {
		return err.Error(), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Sprintf("sha256 %s does not match its sidecar (%s)", got[:12], want[:12]), nil
	}
	return "", nil
}
