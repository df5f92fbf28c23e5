package restic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
)

// BackupSummary is the last line (message_type "summary") of
// `restic backup --json`; 0.14 reports snapshot_id as the 8-hex short id.
type BackupSummary struct {
	MessageType         string  `json:"message_type"`
	FilesNew            int64   `json:"files_new"`
	FilesChanged        int64   `json:"files_changed"`
	FilesUnmodified     int64   `json:"files_unmodified"`
	DirsNew             int64   `json:"dirs_new"`
	DirsChanged         int64   `json:"dirs_changed"`
	DirsUnmodified      int64   `json:"dirs_unmodified"`
	DataAdded           int64   `json:"data_added"`
	TotalFilesProcessed int64   `json:"total_files_processed"`
	TotalBytesProcessed int64   `json:"total_bytes_processed"`
	TotalDuration       float64 `json:"total_duration"`
	SnapshotID          string  `json:"snapshot_id"`
}

// message is any line of `restic backup --json`.
type message struct {
	MessageType string `json:"message_type"`
	BytesDone   int64  `json:"bytes_done"`
	Item        string `json:"item"`
	During      string `json:"during"`
	Message     string `json:"message"` // exit_error (0.17+)
	Error       struct {
		Message string `json:"message"`
	} `json:"error"`
}

// BackupParser consumes `restic backup --json` lines (feed it through
// lines.Writer); read Summary and Errors after restic ended.
type BackupParser struct {
	mu       sync.Mutex
	Summary  *BackupSummary
	Errors   []string
	Progress func(int64)
}

const MaxReportedErrors = 50

// Line consumes one line of output.
func (r *BackupParser) Line(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return
	}
	var m message
	if json.Unmarshal(b, &m) != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch m.MessageType {
	case "status":
		if r.Progress != nil && m.BytesDone > 0 {
			r.Progress(m.BytesDone)
		}
	case "summary":
		var s BackupSummary
		if json.Unmarshal(b, &s) == nil {
			r.Summary = &s
		}
	case "error", "exit_error":
		msg := m.Error.Message
		if m.MessageType == "exit_error" {
			msg = m.Message
		}
		if m.Item != "" {
			msg = m.Item + ": " + msg
		}
		if len(r.Errors) < MaxReportedErrors {
			r.Errors = append(r.Errors, msg)
		}
	}
}

// Snapshot is one element of `restic snapshots --json` (and of
// forget's keep/remove lists).
type Snapshot struct {
	Time     string   `json:"time"`
	Paths    []string `json:"paths"`
	Hostname string   `json:"hostname"`
	Tags     []string `json:"tags"`
	ID       string   `json:"id"`
	ShortID  string   `json:"short_id"`
}

func (s Snapshot) Output() map[string]any {
	tags := s.Tags
	if tags == nil {
		tags = []string{}
	}
	return map[string]any{"id": s.ID, "short_id": s.ShortID, "time": s.Time, "host": s.Hostname, "paths": s.Paths, "tags": tags}
}

// forgetGroup is one group of `restic forget --json`.
type forgetGroup struct {
	Keep   []Snapshot `json:"keep"`
	Remove []Snapshot `json:"remove"`
}

// firstJSONArray decodes the first line starting with '[' into v: forget
// --prune prints its prune report as text after the JSON.
func firstJSONArray(out []byte, v any) error {
	for _, line := range bytes.Split(out, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] == '[' {
			return json.Unmarshal(line, v)
		}
	}
	return errors.New("no JSON output")
}

// ParseForget returns the removed and kept snapshot ids.
func ParseForget(out []byte) (removed, kept []string, err error) {
	var groups []forgetGroup
	if len(bytes.TrimSpace(out)) == 0 {
		return []string{}, []string{}, nil // restic 0.14 prints nothing when there is no snapshot
	}
	if err := firstJSONArray(out, &groups); err != nil {
		return nil, nil, fmt.Errorf("restic forget --json: %w", err)
	}
	removed, kept = []string{}, []string{}
	for _, g := range groups {
		for _, s := range g.Remove {
			removed = append(removed, s.ID)
		}
		for _, s := range g.Keep {
			kept = append(kept, s.ID)
		}
	}
	return removed, kept, nil
}

func ParseSnapshots(out []byte) ([]Snapshot, error) {
	var snaps []Snapshot
	if err := firstJSONArray(out, &snaps); err != nil {
		return nil, fmt.Errorf("restic snapshots --json: %w", err)
	}
	return snaps, nil
}

// initRe matches init's text output (0.14) as well as the id of
// the JSON form (newer: {"message_type":"initialized","id":...}).
var initRe = regexp.MustCompile(`created restic repository ([0-9a-f]+)|"id":"([0-9a-f]+)"`)

func ParseInitID(out string) string {
	m := initRe.FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	if m[1] != "" {
		return m[1]
	}
	return m[2]
}
