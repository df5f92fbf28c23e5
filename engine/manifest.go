package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// ArtifactRecord is one file a step wrote, as the manifest lists it. Steps
// report it through Env.RecordArtifact (the artifact writer does so for
// every artifact it commits); the runner keeps the records of successful
// attempts. Nothing in it is secret: encryption is described by public
// recipients, never by identities or passphrases.
type ArtifactRecord struct {
	StepID   string `json:"step_id"`
	StepType string `json:"step_type"`
	Path     string `json:"path"`
	// RelPath is Path relative to the directory of the manifest file that
	// lists it, so a manifest restored somewhere else (a fresh host, a
	// restic restore into a staging dir) still finds its artifacts.
	RelPath     string      `json:"rel_path,omitempty"`
	Size        int64       `json:"size"`
	SHA256      string      `json:"sha256"`
	BytesIn     int64       `json:"bytes_in,omitempty"`
	Compression string      `json:"compression"` // zstd | gzip | none
	Encryption  *Encryption `json:"encryption,omitempty"`
	Created     time.Time   `json:"created"`
	// Source says where the data came from (kind, host, port, database,
	// collection, paths, server_version, ...): what an inverse needs to
	// restore it, without secrets.
	Source map[string]string `json:"source,omitempty"`
	// Tools are the versions of the programs that produced it.
	Tools map[string]string `json:"tools,omitempty"`
	// Counts are source-side measurements taken consistently with the
	// data, keyed as the backup names the data: "rows:public.users",
	// "documents:kaleem.users", "points:kaleem", "queues", "files",
	// "bytes". A drill compares a restore's counts with these.
	Counts map[string]int64 `json:"counts,omitempty"`
}

// Encryption describes how an artifact is encrypted (public facts only).
type Encryption struct {
	Method     string   `json:"method"`               // age-x25519 | age-scrypt
	Recipients []string `json:"recipients,omitempty"` // age1... public keys
}

// ManifestFormat identifies the manifest's JSON layout.
const ManifestFormat = "planrun-manifest/1"

// Manifest lists every artifact of one backup run: stored with the run and
// written as an artifact of its own, so it travels off-site with the data.
type Manifest struct {
	Format     string           `json:"format"`
	RunID      string           `json:"run_id"`
	Plan       string           `json:"plan"`
	PlanFile   string           `json:"plan_file,omitempty"`
	PlanSHA256 string           `json:"plan_sha256,omitempty"`
	Host       string           `json:"host,omitempty"`
	Started    time.Time        `json:"started"`
	Artifacts  []ArtifactRecord `json:"artifacts"`
	// File is where this manifest was read from (not serialised).
	File string `json:"-"`
}

// RecordArtifact reports an artifact the step has written. The runner
// fills StepID/StepType and keeps it if the attempt succeeds; the step may
// still add Source, Tools and Counts to a until its Run returns.
func (e *Env) RecordArtifact(a *ArtifactRecord) {
	if e == nil || a == nil {
		return
	}
	if a.Created.IsZero() {
		a.Created = time.Now().UTC()
	}
	e.artifacts = append(e.artifacts, a)
}

// Artifacts returns what this attempt has recorded so far.
func (e *Env) Artifacts() []*ArtifactRecord {
	if e == nil {
		return nil
	}
	return e.artifacts
}

// RunInfo describes the run a step belongs to (for a manifest).
func (e *Env) RunInfo() Manifest {
	if e == nil || e.runInfo == nil {
		return Manifest{Format: ManifestFormat, RunID: e.RunID, Plan: e.PlanName}
	}
	return e.runInfo()
}

// ReadManifest reads and checks a manifest file.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: not a planrun manifest: %w", path, err)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("manifest %s: format %q, want %q", path, m.Format, ManifestFormat)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	m.File = abs
	return &m, nil
}

// Locate returns where artifact a is found: next to the manifest file it
// was read from (RelPath) when present there, else its recorded Path.
func (m *Manifest) Locate(a ArtifactRecord) string {
	if m.File != "" && a.RelPath != "" {
		p := filepath.Join(filepath.Dir(m.File), a.RelPath)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return a.Path
}

// ForStep returns the artifacts a step wrote, in the order written.
func (m *Manifest) ForStep(stepID string) []ArtifactRecord {
	var out []ArtifactRecord
	for _, a := range m.Artifacts {
		if a.StepID == stepID {
			out = append(out, a)
		}
	}
	return out
}

// StepIDs returns the ids of the steps that wrote artifacts, in order.
func (m *Manifest) StepIDs() []string {
	var ids []string
	seen := map[string]bool{}
	for _, a := range m.Artifacts {
		if !seen[a.StepID] {
			seen[a.StepID] = true
			ids = append(ids, a.StepID)
		}
	}
	return ids
}

// CountDiff is one measurement that differs between backup and restore.
type CountDiff struct {
	Key      string `json:"key"`
	Backup   int64  `json:"backup"`
	Restored int64  `json:"restored"`
	Missing  bool   `json:"missing,omitempty"` // the restore did not measure it
}

func (d CountDiff) String() string {
	if d.Missing {
		return fmt.Sprintf("%s: backup %d, not found in the restore", d.Key, d.Backup)
	}
	return fmt.Sprintf("%s: backup %d, restored %d", d.Key, d.Backup, d.Restored)
}

// CompareCounts compares a restore's counts with the backup's: every key
// measured at backup time must be present and equal. Extra keys in the
// restore (e.g. tables the restore target already had) are not compared.
func CompareCounts(backup map[string]int64, restored map[string]int64) []CountDiff {
	keys := make([]string, 0, len(backup))
	for k := range backup {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var diffs []CountDiff
	for _, k := range keys {
		got, ok := restored[k]
		switch {
		case !ok:
			diffs = append(diffs, CountDiff{Key: k, Backup: backup[k], Missing: true})
		case got != backup[k]:
			diffs = append(diffs, CountDiff{Key: k, Backup: backup[k], Restored: got})
		}
	}
	return diffs
}

// CountsOf reads a step output holding counts (map[string]int64 or the
// map[string]any an expression or JSON round trip makes of it).
func CountsOf(v any) (map[string]int64, bool) {
	switch m := v.(type) {
	case map[string]int64:
		return m, true
	case map[string]any:
		out := make(map[string]int64, len(m))
		for k, e := range m {
			switch n := e.(type) {
			case int64:
				out[k] = n
			case int:
				out[k] = int64(n)
			case float64:
				out[k] = int64(n)
			default:
				return nil, false
			}
		}
		return out, true
	}
	return nil, false
}
