package main

// TEMPORARY stub until the store branch is merged.

import (
	"io"

	"github.com/planrun/planrun/engine/store"
)

func cmdRuns(st *store.Store, args []string, stdout, stderr io.Writer) int   { return 0 }
func cmdShow(st *store.Store, args []string, stdout, stderr io.Writer) int   { return 0 }
func cmdStatus(st *store.Store, args []string, stdout, stderr io.Writer) int { return 0 }
