// Command hc-double serves the Healthchecks.io Pinging API TEST DOUBLE
// (internal/hcdouble) for end-to-end tests:
//
//	hc-double -addr 127.0.0.1:0 -addr-file /tmp/hc.addr -dump /tmp/hc.json
//
// It prints its base URL ("http://127.0.0.1:PORT") on stdout (and to
// -addr-file), serves GET /_hcdouble/pings (JSON of what it received) and
// POST /_hcdouble/reset, and writes the JSON dump to -dump on SIGTERM or
// SIGINT before exiting. -script 503,503 makes the first pings fail.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/planrun/planrun/internal/hcdouble"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hc-double:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0: pick a free port)")
	addrFile := flag.String("addr-file", "", "write the base URL to this file once listening")
	dump := flag.String("dump", "", "write the received pings as JSON to this file on exit")
	script := flag.String("script", "", "comma-separated status codes for the first pings (e.g. 503,503)")
	limit := flag.Int("body-limit", hcdouble.DefaultBodyLimit, "Ping-Body-Limit to advertise")
	flag.Parse()

	h := hcdouble.New()
	h.SetBodyLimit(*limit)
	if *script != "" {
		var codes []int
		for _, s := range strings.Split(*script, ",") {
			c, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || c < 100 || c > 599 {
				return fmt.Errorf("-script: %q is not an HTTP status", s)
			}
			codes = append(codes, c)
		}
		h.Script(codes...)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	fmt.Println(base)
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(base+"\n"), 0o644); err != nil {
			return err
		}
	}

	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if *dump != "" {
		data, err := json.MarshalIndent(h.Pings(), "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(*dump, append(data, '\n'), 0o644)
	}
	return nil
}
