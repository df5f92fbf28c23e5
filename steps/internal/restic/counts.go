package restic

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Counts are what a snapshot holds, keyed like tar's counts so a drill
// compares backup and restore directly: files (regular files, what
// restic's total_files_processed counts), dirs (every directory of the
// snapshot's tree, including the parents of the backed-up paths, as
// restic's dirs_new+dirs_changed+dirs_unmodified count them) and bytes
// (the regular files' sizes, total_bytes_processed). Symlinks and special
// files are counted by neither side.
func (s *BackupSummary) Counts() map[string]int64 {
	return map[string]int64{
		"files": s.TotalFilesProcessed,
		"dirs":  s.DirsNew + s.DirsChanged + s.DirsUnmodified,
		"bytes": s.TotalBytesProcessed,
	}
}

// MeasureRestored counts a snapshot restored under target the way
// BackupSummary.Counts counts it at backup time: paths are the
// snapshot's (absolute) paths, which restic restores under target with
// their parent directories.
func MeasureRestored(target string, paths []string) (map[string]int64, error) {
	target = filepath.Clean(target)
	under := target + string(filepath.Separator)
	if target == string(filepath.Separator) {
		under = target // restored in place
	}
	dirs := map[string]bool{}
	var files, size int64
	for _, p := range paths {
		root := filepath.Join(target, p)
		for d := filepath.Dir(root); d != target && strings.HasPrefix(d, under); d = filepath.Dir(d) {
			dirs[d] = true
		}
		err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch {
			case e.IsDir():
				dirs[path] = true
			case e.Type().IsRegular():
				info, err := e.Info()
				if err != nil {
					return err
				}
				files++
				size += info.Size()
			}
			return nil
		})
		if err != nil {
			if os.IsNotExist(err) {
				return nil, fmt.Errorf("the snapshot's path %s was not restored under %s", p, target)
			}
			return nil, err
		}
	}
	return map[string]int64{"files": files, "dirs": int64(len(dirs)), "bytes": size}, nil
}
