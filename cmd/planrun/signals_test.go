package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/planrun/planrun/internal/hcdouble"
)

// Monitor receivers for the fault scripts (testdata/script/signals_*.txtar):
// the Healthchecks TEST DOUBLE (internal/hcdouble, following the
// documented Pinging API) and a webhook receiver recording the JSON the
// scripts' webhook monitor sends. Both run in the test process; the
// planrun processes reach them over 127.0.0.1.

type hookReceiver struct {
	mu   sync.Mutex
	got  []string // "signal:exit_code"
	bads []string // bodies that were not the expected JSON
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var m struct {
		Signal   string `json:"signal"`
		ExitCode int    `json:"exit_code"`
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Method != http.MethodPost || json.Unmarshal(b, &m) != nil || m.Signal == "" {
		h.bads = append(h.bads, string(b))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.got = append(h.got, fmt.Sprintf("%s:%d", m.Signal, m.ExitCode))
	w.WriteHeader(http.StatusNoContent)
}

// take returns what was received since the last take.
func (h *hookReceiver) take() ([]string, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	got, bads := h.got, h.bads
	h.got, h.bads = nil, nil
	return got, bads
}

type receivers struct {
	hc   *hcdouble.Handler
	hook *hookReceiver
}

var (
	receiversMu sync.Mutex
	receiversOf = map[*testscript.TestScript]*receivers{}
)

// receivers: start both receivers and set HC_URL and HOOK_URL.
func cmdReceivers(ts *testscript.TestScript, neg bool, args []string) {
	rc := &receivers{hc: hcdouble.New(), hook: &hookReceiver{}}
	hc, hook := httptest.NewServer(rc.hc), httptest.NewServer(rc.hook)
	ts.Defer(func() {
		hc.Close()
		hook.Close()
		receiversMu.Lock()
		delete(receiversOf, ts)
		receiversMu.Unlock()
	})
	receiversMu.Lock()
	receiversOf[ts] = rc
	receiversMu.Unlock()
	ts.Setenv("HC_URL", hc.URL+"/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278")
	ts.Setenv("HOOK_URL", hook.URL+"/hook")
}

// signals hc|hook [SIGNAL...]: exactly these signals arrived since the
// last check, in order (hc: start, success, fail, log or exit:<code>;
// hook: <signal>:<exit_code>); then forget them.
func cmdSignals(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: signals hc|hook [SIGNAL...]")
	}
	receiversMu.Lock()
	rc := receiversOf[ts]
	receiversMu.Unlock()
	if rc == nil {
		ts.Fatalf("signals: run receivers first")
	}
	var got []string
	switch args[0] {
	case "hc":
		for _, p := range rc.hc.Pings() {
			s := p.Signal
			if p.ExitCode != nil {
				s = fmt.Sprintf("exit:%d", *p.ExitCode)
			}
			if p.Status != http.StatusOK {
				s += fmt.Sprintf("(answered %d)", p.Status)
			}
			got = append(got, s)
		}
		rc.hc.Reset()
	case "hook":
		var bads []string
		got, bads = rc.hook.take()
		if len(bads) > 0 {
			ts.Fatalf("webhook receiver got bodies it cannot read: %q", bads)
		}
	default:
		ts.Fatalf("signals: unknown receiver %q", args[0])
	}
	want := args[1:]
	if strings.Join(got, " ") != strings.Join(want, " ") {
		ts.Fatalf("%s received [%s], want [%s]", args[0], strings.Join(got, " "), strings.Join(want, " "))
	}
}
