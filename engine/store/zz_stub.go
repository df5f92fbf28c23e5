package store

// TEMPORARY stub until the store branch is merged.

import (
	"context"

	"github.com/planrun/planrun/engine"
)

type Store struct{}

func Open(path string) (*Store, error)                                           { return &Store{}, nil }
func (s *Store) Close() error                                                    { return nil }
func (s *Store) StartRun(ctx context.Context, r engine.RunRecord) error          { return nil }
func (s *Store) RecordAttempt(ctx context.Context, a engine.AttemptRecord) error { return nil }
func (s *Store) FinishRun(ctx context.Context, r engine.RunRecord) error         { return nil }
