package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	if err := copyAhead(w, r); err != nil {
		return artifact.Result{}, fmt.Errorf("%s → %s: %w", input, wo.Output, err)
	}
	return w.Commit()
}

// copyAhead copies a file-backed reader to w with the reading (and any
// decryption/decompression in r) on its own goroutine, a few buffers
// ahead, so that reading overlaps compression, encryption, hashing and
// writing: on two cores that is the difference between the age CLI's
// speed and half of it.
func copyAhead(w io.Writer, r io.Reader) error {
	const nbuf, size = 4, 1 << 20
	free := make(chan []byte, nbuf)
	for i := 0; i < nbuf; i++ {
		free <- make([]byte, size)
	}
	type chunk struct {
		b   []byte
		err error
	}
	full := make(chan chunk, nbuf)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(full)
		for {
			var b []byte
			select {
			case b = <-free:
			case <-stop:
				return
			}
			n, err := io.ReadFull(r, b)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			if n > 0 || err != nil {
				full <- chunk{b[:n], err}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }() // the reader never outlives us
	for c := range full {
		if len(c.b) > 0 {
			if _, err := w.Write(c.b); err != nil {
				return err
			}
		}
		if c.err == io.EOF {
			return nil
		}
		if c.err != nil {
			return c.err
		}
		free <- c.b[:cap(c.b)]
	}
	return nil
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
