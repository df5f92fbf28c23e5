package walarchive

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planrun/planrun/internal/testenv"
)

const keys = "../../testdata/keys"

func TestLSN(t *testing.T) {
	l, err := ParseLSN("16/B374D848")
	if err != nil || uint64(l) != 0x16B374D848 || l.String() != "16/B374D848" {
		t.Fatalf("ParseLSN = %x %v, String %s", uint64(l), err, l)
	}
	for _, bad := range []string{"", "16", "x/1", "1/100000000"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
	for _, c := range []struct {
		tli  uint32
		lsn  string
		size int64
		want string
	}{
		{1, "0/2000028", 16 << 20, "000000010000000000000002"},
		{1, "0/1FFFFFF", 16 << 20, "000000010000000000000001"},
		{2, "1/0", 16 << 20, "000000020000000100000000"},
		{3, "16/B374D848", 16 << 20, "0000000300000016000000B3"},
		{1, "16/B374D848", 1 << 30, "000000010000001600000002"},
	} {
		l, _ := ParseLSN(c.lsn)
		if got := SegmentName(c.tli, l, c.size); got != c.want {
			t.Errorf("SegmentName(%d, %s, %d) = %s, want %s", c.tli, c.lsn, c.size, got, c.want)
		}
		tli, segno, err := ParseSegmentName(c.want, c.size)
		if err != nil || tli != c.tli || segno != uint64(l)/uint64(c.size) {
			t.Errorf("ParseSegmentName(%s) = %d %d %v", c.want, tli, segno, err)
		}
	}
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "wal.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	keysAbs, _ := filepath.Abs(keys)
	p := writeConfig(t, "dir: archive\ncompress: zstd\nlevel: 1\nencrypt:\n  recipients_file: "+keysAbs+"/demo.agepub\nidentity_file: key\n")
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Dir != filepath.Join(filepath.Dir(p), "archive") || cfg.IdentityFile != filepath.Join(filepath.Dir(p), "key") ||
		cfg.Encrypt.RecipientsFile != keysAbs+"/demo.agepub" || cfg.File != p || cfg.Ext() != ".zst.age" {
		t.Fatalf("config %+v", cfg)
	}
	if cfg, err := LoadConfig(writeConfig(t, "dir: /a\n")); err != nil || cfg.Compress != "zstd" || cfg.Ext() != ".zst" {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	for _, c := range []struct{ body, want string }{
		{"dir: /a\ncompres: zstd\n", `:2:1: unknown key "compres" (did you mean "compress"?)`},
		{"dir: /a\ncompress: lz4\n", `:2:11: key "compress": must be one of zstd, gzip, none, got "lz4"`},
		{"compress: zstd\n", `:1:1: missing required key "dir"`},
		{"", `: missing required key "dir"`},
		{"dir: /a\nlevel: 30\n", `:2:1: key level: zstd levels are 1-22, got 30`},
		{"dir: /a\nencrypt:\n  recipients: [age1x]\n  passphrase_file: /p\n", `:2:1: key encrypt: give recipients`},
		{"dir: [\n", `yaml:`},
	} {
		p := writeConfig(t, c.body)
		_, err := LoadConfig(p)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %s%s", c.body, err, p, c.want)
		}
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// archive returns a config for a new archive: zstd, age to the demo key
// (identity only in the fetching copy, like a database host and a
// restore host).
func archive(t *testing.T, encrypted bool) (push, fetch *Config) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "archive")
	body := "dir: " + dir + "\n"
	if encrypted {
		k, _ := filepath.Abs(keys)
		body += "encrypt:\n  recipients_file: " + k + "/demo.agepub\n"
		fcfg, err := ParseConfig("fetch.yaml", []byte(body+"identity_file: "+k+"/demo.agekey\n"))
		if err != nil {
			t.Fatal(err)
		}
		fetch = fcfg
	}
	pcfg, err := ParseConfig("push.yaml", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if fetch == nil {
		fetch = pcfg
	}
	return pcfg, fetch
}

// walFile writes a fake WAL file named name with n random bytes.
func walFile(t *testing.T, name string, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, data
}

func TestPushFetchRoundTripEncrypted(t *testing.T) {
	ctx := context.Background()
	pcfg, fcfg := archive(t, true)
	for _, name := range []string{"000000010000000000000003", "00000002.history", "000000010000000000000003.00000028.backup", "000000010000000000000004.partial"} {
		p, data := walFile(t, name, 1<<20)
		if err := Push(ctx, pcfg, p); err != nil {
			t.Fatalf("push %s: %v", name, err)
		}
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		// The pushing host has no identity: it cannot read back.
		if err := Fetch(ctx, pcfg, name, dest); err == nil || errors.Is(err, ErrNotFound) {
			t.Fatalf("fetch without identity: %v", err)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatalf("failed fetch left %s: %v", dest, err)
		}
		if err := Fetch(ctx, fcfg, name, dest); err != nil {
			t.Fatalf("fetch %s: %v", name, err)
		}
		got, _ := os.ReadFile(dest)
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: fetched content differs", name)
		}
	}
	// Stored encrypted, under the layout of the package doc, with sidecars.
	files, _ := filepath.Glob(filepath.Join(pcfg.Dir, "wal", "0000000100000000", "0000000100000000000000*-*.zst.age"))
	sides, _ := filepath.Glob(filepath.Join(pcfg.Dir, "wal", "0000000100000000", "*.zst.age.sha256"))
	if len(files) != 3 || len(sides) != 3 {
		t.Fatalf("layout: %v %v", files, sides)
	}
	if h, _ := filepath.Glob(filepath.Join(pcfg.Dir, "wal", "00000002.history-*.zst.age")); len(h) != 1 {
		t.Fatalf("history layout: %v", h)
	}
	if err := Fetch(ctx, fcfg, "000000010000000000000009", filepath.Join(t.TempDir(), "x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if err := Push(ctx, pcfg, filepath.Join(t.TempDir(), "postmaster.pid")); err == nil {
		t.Fatal("pushed a file that is not WAL")
	}
}

func TestPushAgainAndConflict(t *testing.T) {
	ctx := context.Background()
	cfg, _ := archive(t, false)
	for _, name := range []string{"000000010000000000000001", "00000003.history"} {
		p, data := walFile(t, name, 64<<10)
		if err := Push(ctx, cfg, p); err != nil {
			t.Fatal(err)
		}
		before := testenv.SnapshotDir(t, cfg.Dir)
		// The same content again: success, nothing written.
		if err := Push(ctx, cfg, p); err != nil {
			t.Fatalf("push %s again: %v", name, err)
		}
		if !maps.Equal(before, testenv.SnapshotDir(t, cfg.Dir)) {
			t.Fatal("second push changed the archive")
		}
		// Changed content under the same name: conflict, archive unchanged.
		data[100] ^= 0xFF
		os.WriteFile(p, data, 0o600)
		err := Push(ctx, cfg, p)
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), name) {
			t.Fatalf("conflicting push of %s: %v", name, err)
		}
		if !maps.Equal(before, testenv.SnapshotDir(t, cfg.Dir)) {
			t.Fatal("conflicting push changed the archive")
		}
	}
}

func TestPushRemovesStaleTemps(t *testing.T) {
	cfg, _ := archive(t, false)
	p, _ := walFile(t, "000000010000000000000001", 1000)
	dir := filepath.Join(cfg.Dir, "wal", "0000000100000000")
	os.MkdirAll(dir, 0o700)
	stale := filepath.Join(dir, ".000000010000000000000001-abc.zst.tmp-1")
	young := filepath.Join(dir, ".000000010000000000000001-abc.zst.tmp-2")
	other := filepath.Join(dir, ".000000010000000000000002-abc.zst.tmp-3")
	for _, f := range []string{stale, young, other} {
		os.WriteFile(f, []byte("partial"), 0o600)
	}
	old := time.Now().Add(-2 * staleAfter)
	os.Chtimes(stale, old, old)
	os.Chtimes(other, old, old)
	if err := Push(context.Background(), cfg, p); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]bool{stale: false, young: true, other: true} {
		if _, err := os.Stat(f); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", filepath.Base(f), err == nil, want)
		}
	}
}

func TestPushRepairsMissingSidecar(t *testing.T) {
	ctx := context.Background()
	cfg, _ := archive(t, false)
	p, _ := walFile(t, "000000010000000000000001", 1000)
	if err := Push(ctx, cfg, p); err != nil {
		t.Fatal(err)
	}
	side, _ := filepath.Glob(filepath.Join(cfg.Dir, "wal", "*", "*.sha256"))
	want, _ := os.ReadFile(side[0])
	os.Remove(side[0]) // a crash between the publishing rename and the sidecar's
	if err := Push(ctx, cfg, p); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(side[0]); !bytes.Equal(got, want) {
		t.Fatalf("sidecar not repaired: %q", got)
	}
}

func TestFetchRejectsCorruption(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		enc    bool
		damage func(path string)
		want   string
	}{
		{"bit flip", false, func(p string) { flip(t, p, 200) }, ""},
		{"bit flip and new sidecar, name catches it", false, func(p string) {
			flip(t, p, 200)
			os.Remove(p + ".sha256")
		}, ""},
		{"age tag", true, func(p string) {
			fi, _ := os.Stat(p)
			flip(t, p, int(fi.Size())-5)
			os.Remove(p + ".sha256")
		}, ""},
		{"truncated", false, func(p string) {
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/2)
		}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			pcfg, fcfg := archive(t, c.enc)
			p, _ := walFile(t, "000000010000000000000001", 256<<10)
			if err := Push(ctx, pcfg, p); err != nil {
				t.Fatal(err)
			}
			stored, _ := filepath.Glob(filepath.Join(pcfg.Dir, "wal", "*", "000000010000000000000001-*[^6]"))
			if len(stored) != 1 {
				t.Fatalf("stored: %v", stored)
			}
			c.damage(stored[0])
			destDir := t.TempDir()
			err := Fetch(ctx, fcfg, "000000010000000000000001", filepath.Join(destDir, "RECOVERYXLOG"))
			if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("fetch of a damaged file: %v", err)
			}
			if ents, _ := os.ReadDir(destDir); len(ents) != 0 {
				t.Fatalf("fetch left %v", ents)
			}
		})
	}
}

func flip(t *testing.T, path string, at int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || at >= len(b) {
		t.Fatalf("flip %s at %d: %v", path, at, err)
	}
	b[at] ^= 0x01
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fakeArchive pushes segments first..last of timeline tli (small fake
// content: only the names matter to Verify and Expire).
func pushSegments(t *testing.T, cfg *Config, tli uint32, first, last uint64) {
	t.Helper()
	for s := first; s <= last; s++ {
		p, _ := walFile(t, segName(tli, s, DefaultSegmentSize), 100)
		if err := Push(context.Background(), cfg, p); err != nil {
			t.Fatal(err)
		}
	}
}

func pushHistory(t *testing.T, cfg *Config, tli uint32, content string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("%08X.history", tli))
	os.WriteFile(p, []byte(content), 0o600)
	if err := Push(context.Background(), cfg, p); err != nil {
		t.Fatal(err)
	}
}

// backup writes a backup record starting in segment startSeg on tli.
func backup(t *testing.T, cfg *Config, tli uint32, startSeg uint64, start time.Time) BaseBackup {
	t.Helper()
	b := BaseBackup{Label: Label(start), Timeline: tli, StartTime: start, StopTime: start.Add(time.Minute),
		StartLSN: LSN(startSeg * DefaultSegmentSize).String(), StopLSN: LSN((startSeg+1)*DefaultSegmentSize - 1).String(),
		StartWAL: segName(tli, startSeg, DefaultSegmentSize), StopWAL: segName(tli, startSeg+1, DefaultSegmentSize),
		WALSegmentSize: DefaultSegmentSize, File: "base.tar.zst"}
	b.Dir = BackupDir(cfg, b.Label)
	os.MkdirAll(b.Dir, 0o700)
	os.WriteFile(filepath.Join(b.Dir, b.File), []byte("tar"), 0o600)
	if err := WriteBackupRecord(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBackupsListsCompleteOnly(t *testing.T) {
	cfg, _ := archive(t, false)
	t0 := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	backup(t, cfg, 1, 5, t0.Add(time.Hour))
	backup(t, cfg, 1, 2, t0)
	os.MkdirAll(BackupDir(cfg, Label(t0.Add(2*time.Hour))), 0o700) // being written
	bs, err := Backups(cfg)
	if err != nil || len(bs) != 2 || bs[0].Label != "20261101T030000Z" || bs[1].StartWAL != "000000010000000000000005" ||
		bs[0].Dir != BackupDir(cfg, "20261101T030000Z") {
		t.Fatalf("Backups = %+v, %v", bs, err)
	}
	if err := WriteBackupRecord(&bs[0]); err == nil {
		t.Fatal("backup.json overwritten")
	}
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	cfg, _ := archive(t, false)
	t0 := time.Now().Add(-time.Hour)
	pushSegments(t, cfg, 1, 1, 12)
	backup(t, cfg, 1, 3, t0)
	rep, err := Verify(ctx, cfg)
	if err != nil || !rep.OK() || rep.From != "000000010000000000000003" || rep.To != "00000001000000000000000C" || rep.Segments != 10 {
		t.Fatalf("complete chain: %+v %v", rep, err)
	}
	// A missing segment in the middle is named.
	del(t, cfg, "000000010000000000000007")
	del(t, cfg, "000000010000000000000008")
	rep, _ = Verify(ctx, cfg)
	if rep.OK() || len(rep.Gaps) != 1 || rep.Gaps[0] != (Gap{"000000010000000000000007", "000000010000000000000008"}) ||
		!strings.Contains(rep.Problem(), "000000010000000000000007") {
		t.Fatalf("gap: %+v %s", rep, rep.Problem())
	}
	// Segments before the oldest backup do not matter.
	pushSegments(t, cfg, 1, 7, 8)
	del(t, cfg, "000000010000000000000001")
	if rep, _ := Verify(ctx, cfg); !rep.OK() {
		t.Fatalf("before the backup: %+v", rep)
	}
	// A file that no longer matches its sidecar.
	stored, _ := filepath.Glob(filepath.Join(cfg.Dir, "wal", "*", "000000010000000000000005-*[^6]"))
	flip(t, stored[0], 3)
	if rep, _ := Verify(ctx, cfg); rep.OK() || len(rep.Corrupt) != 1 || !strings.Contains(rep.Corrupt[0], "000000010000000000000005") {
		t.Fatalf("corrupt: %+v", rep)
	}
}

func del(t *testing.T, cfg *Config, name string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(cfg.Dir, "wal", name[:16], name+"-*"))
	if len(files) != 2 {
		t.Fatalf("%s: %v", name, files)
	}
	for _, f := range files {
		os.Remove(f)
	}
}

// TestVerifyTimelines: timeline 2 branched from 1 inside segment 6, so
// recovery reads 1's segments up to 5 and 2's from 6 on; timeline 1's
// later segments (the old primary's) do not count.
func TestVerifyTimelines(t *testing.T) {
	ctx := context.Background()
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", enc), func(t *testing.T) {
			pcfg, fcfg := archive(t, enc)
			pushSegments(t, pcfg, 1, 1, 9)
			pushHistory(t, pcfg, 2, "1\t0/6000100\tno recovery target specified\n")
			pushSegments(t, pcfg, 2, 6, 10)
			backup(t, pcfg, 1, 2, time.Now())
			for _, cfg := range []*Config{pcfg, fcfg} {
				rep, err := Verify(ctx, cfg)
				if err != nil || !rep.OK() || rep.Segments != 9 || rep.From != "000000010000000000000002" || rep.To != "00000002000000000000000A" || rep.Timeline != 2 {
					t.Fatalf("chain across timelines: %+v %v", rep, err)
				}
				if inferred := len(rep.Notes) > 0; inferred != (enc && cfg == pcfg) {
					t.Fatalf("notes %v", rep.Notes)
				}
			}
			// Timeline 2's first segment missing (timeline 1's copy is there).
			del(t, pcfg, "000000020000000000000007")
			rep, err := Verify(ctx, fcfg)
			if err != nil || rep.OK() || rep.Gaps[0].From != "000000020000000000000007" {
				t.Fatalf("gap on timeline 2: %+v %v", rep, err)
			}
		})
	}
	cfg, _ := archive(t, false)
	pushSegments(t, cfg, 2, 1, 2)
	if _, err := Verify(ctx, cfg); err == nil || !strings.Contains(err.Error(), "00000002.history") {
		t.Fatalf("missing history: %v", err)
	}
}

func TestHistoryParse(t *testing.T) {
	h, err := ParseHistory("00000003.history", []byte("1\t0/3000000\tno recovery target specified\n\n2\t0/5000A80\tbefore 2026-11-01 03:00:00+00\n"))
	if err != nil || len(h) != 2 || h[1].TLI != 2 || h[1].Switch.String() != "0/5000A80" || h[1].Reason != "before 2026-11-01 03:00:00+00" {
		t.Fatalf("%+v %v", h, err)
	}
	if _, err := ParseHistory("00000003.history", []byte("1\t0/3000000\tx\nbad line\n")); err == nil || !strings.Contains(err.Error(), "00000003.history:2") {
		t.Fatalf("bad line: %v", err)
	}
}

func TestExpire(t *testing.T) {
	ctx := context.Background()
	cfg, _ := archive(t, false)
	now := time.Now()
	pushSegments(t, cfg, 1, 1, 20)
	pushHistory(t, cfg, 2, "1\t0/20000000\tx\n") // a timeline with no segment yet
	b1 := backup(t, cfg, 1, 2, now.Add(-72*time.Hour))
	b2 := backup(t, cfg, 1, 8, now.Add(-48*time.Hour))
	b3 := backup(t, cfg, 1, 14, now.Add(-1*time.Hour))
	if _, err := Expire(ctx, cfg, 0, 0, false); err == nil {
		t.Fatal("expire without a rule ran")
	}
	before := testenv.SnapshotDir(t, cfg.Dir)
	res, err := Expire(ctx, cfg, 2, 0, true)
	if err != nil || fmt.Sprint(res.Backups) != "["+b1.Label+"]" || len(res.WALFiles) != 7 || fmt.Sprint(res.Kept) != fmt.Sprint([]string{b2.Label, b3.Label}) {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	if !maps.Equal(before, testenv.SnapshotDir(t, cfg.Dir)) {
		t.Fatal("dry run removed files")
	}
	res, err = Expire(ctx, cfg, 2, 0, false)
	if err != nil || len(res.WALFiles) != 7 {
		t.Fatalf("expire: %+v %v", res, err)
	}
	if bs, _ := Backups(cfg); len(bs) != 2 || bs[0].Label != b2.Label {
		t.Fatalf("backups left: %+v", bs)
	}
	if _, err := os.Stat(b1.Dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there", b1.Dir)
	}
	// What the kept backups need is intact: the chain verifies from b2.
	if rep, err := Verify(ctx, cfg); err != nil || !rep.OK() || rep.From != b2.StartWAL {
		t.Fatalf("after expire: %+v %v", rep, err)
	}
	if h, _ := filepath.Glob(filepath.Join(cfg.Dir, "wal", "00000002.history-*")); len(h) != 2 {
		t.Fatalf("history removed: %v", h)
	}
	// keep_for: b3 is within 2h; b2 is not: only b3 stays.
	res, err = Expire(ctx, cfg, 0, 2*time.Hour, false)
	if err != nil || fmt.Sprint(res.Kept) != "["+b3.Label+"]" || len(res.WALFiles) != 6 {
		t.Fatalf("keep_for: %+v %v", res, err)
	}
	// keep_for alone with every backup older: the newest stays.
	res, err = Expire(ctx, cfg, 0, time.Minute, false)
	if err != nil || fmt.Sprint(res.Kept) != "["+b3.Label+"]" || len(res.Backups) != 0 || len(res.WALFiles) != 0 {
		t.Fatalf("keep_for, all older: %+v %v", res, err)
	}
}

// BenchmarkPush: one segment through Push (zstd + age), as wal-push does
// it minus process start-up. WALBENCH_FILE names a real segment to use.
func BenchmarkPush(b *testing.B) {
	src := os.Getenv("WALBENCH_FILE")
	if src == "" {
		b.Skip("WALBENCH_FILE unset")
	}
	data, err := os.ReadFile(src)
	if err != nil {
		b.Fatal(err)
	}
	k, _ := filepath.Abs(keys)
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		cfg, err := ParseConfig("b.yaml", []byte("dir: "+dir+"\nencrypt:\n  recipients_file: "+k+"/demo.agepub\n"))
		if err != nil {
			b.Fatal(err)
		}
		p := filepath.Join(dir, "000000010000000000000001")
		os.WriteFile(p, data, 0o600)
		if err := Push(context.Background(), cfg, p); err != nil {
			b.Fatal(err)
		}
	}
}
