// Package walarchive is planrun's PostgreSQL WAL archive: the store that
// `planrun wal-push` (archive_command), `planrun wal-fetch`
// (restore_command), `planrun wal-verify` and the pg_basebackup,
// pitr-restore, wal-verify and wal-expire steps share.
//
// Layout under Config.Dir (every file written by the artifact writer:
// compressed, optionally age-encrypted, temp name → fsync → rename → dir
// fsync, with a `<file>.sha256` sidecar of the bytes on disk):
//
//	wal/<TTTTTTTTXXXXXXXX>/<walfile>-<sha256 of raw>.<comp>[.age]   segments, .partial and .backup files
//	wal/<TTTTTTTT>.history-<sha256 of raw>.<comp>[.age]              timeline history files
//	base/<label>/base.tar.<comp>[.age]                                 a base backup (pg_basebackup -Ft, one tablespace)
//	base/<label>/backup.json                                           its BaseBackup record, written last
//
// <comp> is zst, gz or raw. The sha256 of the raw (uncompressed, clear)
// content is in the name so that pushing a file again can be compared with
// what is stored without a decryption key: the database host holds only
// age recipients. A base backup without backup.json is incomplete and is
// ignored by everything that lists backups. <label> is the backup's start
// time in UTC, 20060102T150405Z, so names sort by time.
package walarchive

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/planrun/planrun/steps/internal/artifact"
)

// ConfigEnv names the environment variable that gives the config file when
// --config is not given.
const ConfigEnv = "PLANRUN_WAL_CONFIG"

// Config is the archive config file (YAML), shared by wal-push/wal-fetch
// and the plan steps (their `archive_config:` param names it).
type Config struct {
	Dir      string                `yaml:"dir" required:"true" doc:"archive directory: holds wal/ and base/"`
	Compress string                `yaml:"compress" enum:"zstd|gzip|none" default:"zstd" doc:"compression of segments and base backups"`
	Level    int                   `yaml:"level" doc:"compression level (zstd 1-22, default 3; gzip 1-9)"`
	Encrypt  *artifact.EncryptSpec `yaml:"encrypt" doc:"age encryption (recipients: the database host needs no decryption key)"`
	// ReadOptions (identity_file / passphrase_file) are needed only where
	// WAL is fetched or a backup restored.
	artifact.ReadOptions `yaml:",inline"`
	// File is where the config was read from (not a YAML key).
	File string `yaml:"-"`
}

// ErrNotFound is returned by Fetch when the archive has no such file:
// wal-fetch then exits 1 quietly, which is how recovery learns where the
// archive ends.
var ErrNotFound = errors.New("not in the archive")

// ErrConflict is returned by Push when the archive already holds the file
// with different content; the stored file is left as it was.
var ErrConflict = errors.New("already archived with different content")

// Push stores the WAL file at path (a segment, .partial, .backup or
// .history file, named as PostgreSQL names it) durably in the archive. The
// same name with the same content again is a success (nothing written);
// different content is ErrConflict.
func Push(ctx context.Context, cfg *Config, path string) error { return push(ctx, cfg, path) }

// Fetch writes the clear content of the archived WAL file name to dest
// (via a temporary file and rename), verifying the sidecar and the raw
// sha256 of its name. ErrNotFound if it is not archived.
func Fetch(ctx context.Context, cfg *Config, name, dest string) error {
	return fetch(ctx, cfg, name, dest)
}

// BaseBackup is the record of one complete base backup (backup.json).
type BaseBackup struct {
	Label          string    `json:"label"`
	Timeline       uint32    `json:"timeline"`
	StartLSN       string    `json:"start_lsn"` // "0/2000028"
	StopLSN        string    `json:"stop_lsn"`
	StartWAL       string    `json:"start_wal"` // segment holding StartLSN
	StopWAL        string    `json:"stop_wal"`  // segment holding StopLSN
	StartTime      time.Time `json:"start_time"`
	StopTime       time.Time `json:"stop_time"` // the earliest time a recovery from it can stop at
	WALSegmentSize int64     `json:"wal_segment_size"`
	WALIncluded    bool      `json:"wal_included"` // -X fetch: the tar holds the WAL to reach consistency
	ServerVersion  int       `json:"server_version_num"`
	SystemID       string    `json:"system_identifier"`
	File           string    `json:"file"` // base.tar.<comp>[.age], relative to the backup's directory
	Size           int64     `json:"size"`
	SHA256         string    `json:"sha256"`
	Compression    string    `json:"compression"`
	Encrypted      bool      `json:"encrypted"`
	// Dir is the backup's directory (not serialised).
	Dir string `json:"-"`
}

// BackupDir is where a new backup with this label goes.
func BackupDir(cfg *Config, label string) string { return filepath.Join(cfg.Dir, "base", label) }

// Label is the label of a backup started at t.
func Label(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// WriteBackupRecord writes b as backup.json in b.Dir (atomically, last: its
// presence marks the backup complete).
func WriteBackupRecord(b *BaseBackup) error { return writeBackupRecord(b) }

// Backups lists the complete base backups, oldest first.
func Backups(cfg *Config) ([]BaseBackup, error) { return backups(cfg) }

// LSN is a PostgreSQL write-ahead log location.
type LSN uint64

// ParseLSN parses "16/B374D848".
func ParseLSN(s string) (LSN, error) { return parseLSN(s) }

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// SegmentName is the name of the WAL segment of timeline tli that holds lsn.
func SegmentName(tli uint32, lsn LSN, segSize int64) string {
	return segName(tli, uint64(lsn)/uint64(segSize), segSize)
}

// HistoryEntry is one line of a timeline history file: timeline TLI was
// left for the next one at Switch.
type HistoryEntry struct {
	TLI    uint32
	Switch LSN
	Reason string
}

// History reads the archived history of timeline tli (nil for timeline 1).
func History(ctx context.Context, cfg *Config, tli uint32) ([]HistoryEntry, error) {
	return history(ctx, cfg, tli)
}

// Gap is a run of missing segments in the archive.
type Gap struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	From     string   `json:"from"` // first and last segment of the checked chain
	To       string   `json:"to"`
	Segments int      `json:"segments"` // segments present in it
	Gaps     []Gap    `json:"gaps"`
	Corrupt  []string `json:"corrupt"`          // files whose sidecar does not match (with why)
	Timeline uint32   `json:"timeline"`         // the newest timeline, whose history the chain follows
	Backup   string   `json:"backup,omitempty"` // label of the backup the chain starts at
	Notes    []string `json:"notes,omitempty"`
}

// Verify checks that the archive holds an unbroken chain of segments from
// the oldest complete base backup's StartWAL to the newest archived
// segment, following timeline switches recorded in history files, and
// that every file in the chain matches its sidecar.
func Verify(ctx context.Context, cfg *Config) (*VerifyReport, error) { return verify(ctx, cfg) }

// ExpireResult lists what Expire removed (or would remove, dry run).
type ExpireResult struct {
	Backups  []string `json:"backups"`   // labels
	WALFiles []string `json:"wal_files"` // archive-relative paths
	Kept     []string `json:"kept"`      // labels of the kept backups
}

// Expire keeps the newest keep backups (and those younger than keepFor when
// keepFor > 0) and removes the others and every WAL file older than the
// oldest kept backup's StartWAL (history files are kept). It never removes
// WAL a kept backup needs.
func Expire(ctx context.Context, cfg *Config, keep int, keepFor time.Duration, dryRun bool) (*ExpireResult, error) {
	return expire(ctx, cfg, keep, keepFor, dryRun)
}
