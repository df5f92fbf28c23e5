package steps

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
)

// resticBackupSummary is the last line (message_type "summary") of
// `restic backup --json`; 0.14 reports snapshot_id as the 8-hex short id.
type resticBackupSummary struct {
	MessageType         string  `json:"message_type"`
	FilesNew            int64   `json:"files_new"`
	FilesChanged        int64   `json:"files_changed"`
	FilesUnmodified     int64   `json:"files_unmodified"`
	DirsNew             int64   `json:"dirs_new"`
	DataAdded           int64   `json:"data_added"`
	TotalFilesProcessed int64   `json:"total_files_processed"`
	TotalBytesProcessed int64   `json:"total_bytes_processed"`
	TotalDuration       float64 `json:"total_duration"`
	SnapshotID          string  `json:"snapshot_id"`
}

// resticMessage is any line of `restic backup --json`.
type resticMessage struct {
	MessageType string `json:"message_type"`
	BytesDone   int64  `json:"bytes_done"`
	Item        string `json:"item"`
	During      string `json:"during"`
	Message     string `json:"message"` // exit_error (0.17+)
	Error       struct {
		Message string `json:"message"`
	} `json:"error"`
}

// resticBackupParser consumes `restic backup --json` lines.
type resticBackupParser struct {
	mu       sync.Mutex
	summary  *resticBackupSummary
	errors   []string
	progress func(int64)
}

const maxReportedErrors = 50

func (r *resticBackupParser) line(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return
	}
	var m resticMessage
	if json.Unmarshal(b, &m) != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch m.MessageType {
	case "status":
		if r.progress != nil && m.BytesDone > 0 {
			r.progress(m.BytesDone)
		}
	case "summary":
		var s resticBackupSummary
		if json.Unmarshal(b, &s) == nil {
			r.summary = &s
		}
	case "error", "exit_error":
		msg := m.Error.Message
		if m.MessageType == "exit_error" {
			msg = m.Message
		}
		if m.Item != "" {
			msg = m.Item + ": " + msg
		}
		if len(r.errors) < maxReportedErrors {
			r.errors = append(r.errors, msg)
		}
	}
}

// resticSnapshot is one element of `restic snapshots --json` (and of
// forget's keep/remove lists).
type resticSnapshot struct {
	Time     string   `json:"time"`
	Paths    []string `json:"paths"`
	Hostname string   `json:"hostname"`
	Tags     []string `json:"tags"`
	ID       string   `json:"id"`
	ShortID  string   `json:"short_id"`
}

func (s resticSnapshot) output() map[string]any {
	tags := s.Tags
	if tags == nil {
		tags = []string{}
	}
	return map[string]any{"id": s.ID, "short_id": s.ShortID, "time": s.Time, "host": s.Hostname, "paths": s.Paths, "tags": tags}
}

// resticForgetGroup is one group of `restic forget --json`.
type resticForgetGroup struct {
	Keep   []resticSnapshot `json:"keep"`
	Remove []resticSnapshot `json:"remove"`
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

// parseForget returns the removed and kept snapshot ids.
func parseForget(out []byte) (removed, kept []string, err error) {
	var groups []resticForgetGroup
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

func parseSnapshots(out []byte) ([]resticSnapshot, error) {
	var snaps []resticSnapshot
	if err := firstJSONArray(out, &snaps); err != nil {
		return nil, fmt.Errorf("restic snapshots --json: %w", err)
	}
	return snaps, nil
}

// resticInitRe matches init's text output (0.14) as well as the id of
// the JSON form (newer: {"message_type":"initialized","id":...}).
var resticInitRe = regexp.MustCompile(`created restic repository ([0-9a-f]+)|"id":"([0-9a-f]+)"`)

func parseInitID(out string) string {
	m := resticInitRe.FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	if m[1] != "" {
		return m[1]
	}
	return m[2]
}
