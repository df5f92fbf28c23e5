package artifact

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/planrun/planrun/engine"
)

// Transform streams the file input, opened with mode, into a new artifact:
// what the whole-file steps (encrypt, decrypt, compress, decompress) do.
// check, when set, sees the opened input before anything is written. The
// writer counts the stream (progress, bytes in); the reader does not.
func Transform(ctx context.Context, env *engine.Env, input string, ro ReadOptions, mode OpenMode, wo WriteOptions, check func(*Reader) error) (Result, error) {
	if sameFile(input, wo.Output) {
		return Result{}, fmt.Errorf("output %s is the input file", wo.Output)
	}
	r, err := OpenWith(ctx, env, input, ro, mode|Uncounted)
	if err != nil {
		return Result{}, err
	}
	defer r.Close()
	if check != nil {
		if err := check(r); err != nil {
			return Result{}, err
		}
	}
	w, err := Create(ctx, env, wo)
	if err != nil {
		return Result{}, err
	}
	defer w.Abort()
	if _, err := r.WriteTo(w); err != nil {
		return Result{}, fmt.Errorf("%s → %s: %w", input, wo.Output, err)
	}
	return w.Commit()
}

func sameFile(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

// RemoveInput deletes a transformed input and its sidecar, once the new
// artifact is safely committed, and syncs their directory.
func RemoveInput(log *slog.Logger, input string) error {
	if err := os.Remove(input); err != nil {
		return fmt.Errorf("remove_input: %w", err)
	}
	if err := os.Remove(input + ".sha256"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove_input: %w", err)
	}
	log.Info("removed input", "path", input)
	return SyncDir(filepath.Dir(input))
}
