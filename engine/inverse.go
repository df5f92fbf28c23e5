package engine

import "errors"

// ErrNoRestore, wrapped in an error from Inverse.With, says that this
// artifact is not restored by planrun restore (a Qdrant full-storage
// snapshot is restored by starting the server on it): the restore lists
// it as not restored, with the reason, and goes on with the others.
var ErrNoRestore = errors.New("not restored by planrun restore")

// Inverse declares, next to a backup step type, how its artifacts are
// restored: the restore step type and the mapping from what the backup
// recorded to that type's params. planrun restore and planrun drill build
// a plan from a manifest with it and run that plan through the same
// loader and runner as any plan.
type Inverse struct {
	Type string // the restore step type, e.g. pg_restore for pg_dump
	// ScratchType, when set, is used instead of Type for scratch restores:
	// for data that cannot be restored into a throwaway target (RabbitMQ
	// definitions into a live broker), a step that reads and measures it.
	ScratchType string
	// With returns the restore step's params for one artifact. The
	// operator's overrides (the plan's restore: section) are merged over
	// them afterwards.
	With func(a ArtifactRecord, t RestoreTarget) (map[string]any, error)
	// Targets are the restore type's params that name or replace what is
	// restored into (database, collection, directory, drop flags). In a
	// scratch restore the operator's overrides of them are not applied:
	// the restore section serves both modes, and a drill must never reach
	// the original targets.
	Targets []string
	// NotAFile says the backup's records name no file (a restic snapshot:
	// Path is the repository, SHA256 is empty): no sha256 check of the
	// artifact precedes the restore; the restore step authenticates what
	// it reads itself.
	NotAFile bool
}

// RestoreTarget is where one derived restore step goes.
type RestoreTarget struct {
	// Input is the artifact to read, located from the manifest.
	Input string
	// Scratch restores into throwaway targets (a scratch database or
	// collection named with ScratchSuffix, a directory under Dir) that
	// the restore step removes when done unless Keep is set.
	Scratch       bool
	ScratchSuffix string
	Keep          bool
	// Dir is the directory file restores extract into: a private scratch
	// directory, or the operator's target.
	Dir string
	// IdentityFile and PassphraseFile decrypt encrypted artifacts.
	IdentityFile   string
	PassphraseFile string
}
