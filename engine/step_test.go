package engine_test

import (
	"context"
	"testing"

	"github.com/planrun/planrun/engine"
)

// A type declared Monitor must take the params the engine sets on a
// monitor; a mistake is caught when the registry is built.
func TestMonitorTypeNeedsTheMonitorParams(t *testing.T) {
	run := func(ctx context.Context, env *engine.Env, p *echoParams) (engine.Outputs, error) { return nil, nil }
	defer func() {
		if recover() == nil {
			t.Fatal("a Monitor type without signal/exit_code/body params was accepted")
		}
	}()
	engine.Def[echoParams]{Name: "not-a-monitor", Monitor: true, Run: run}.Type()
}
