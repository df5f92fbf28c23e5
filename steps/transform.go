package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// transform streams one file into a new artifact: the whole-file steps
// (encrypt, decrypt, compress, decompress) differ only in how they read
// the input and what the writer adds.
func transform(ctx context.Context, env *engine.Env, input string, ro artifact.ReadOptions, mode artifact.OpenMode, wo artifact.WriteOptions) (artifact.Result, error) {
	return transformChecked(ctx, env, input, ro, mode, wo, nil)
}

// transformChecked is transform with a check of the opened input before anything is written.
func transformChecked(ctx context.Context, env *engine.Env, input string, ro artifact.ReadOptions, mode artifact.OpenMode, wo artifact.WriteOptions, check func(*artifact.Reader) error) (artifact.Result, error) {
	if same(input, wo.Output) {
		return artifact.Result{}, fmt.Errorf("output %s is the input file", wo.Output)
	}
	r, err := artifact.OpenWith(ctx, env, input, ro, mode)
	if err != nil {
		return artifact.Result{}, err
	}
	defer r.Close()
	if check != nil {
		if err := check(r); err != nil {
			return artifact.Result{}, err
		}
	}
	w, err := artifact.Create(ctx, env, wo)
	if err != nil {
		return artifact.Result{}, err
	}
	defer w.Abort()
	if _, err := r.WriteTo(w); err != nil {
		return artifact.Result{}, fmt.Errorf("%s → %s: %w", input, wo.Output, err)
	}
	return w.Commit()
}

func same(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

// removeInput deletes a transformed input and its sidecar after the new
// artifact is safely committed.
func removeInput(env *engine.Env, input string) error {
	if err := os.Remove(input); err != nil {
		return fmt.Errorf("remove_input: %w", err)
	}
	if err := os.Remove(input + ".sha256"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove_input: %w", err)
	}
	env.Log.Info("removed input", "path", input)
	return artifact.SyncDir(filepath.Dir(input))
}

func isNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
