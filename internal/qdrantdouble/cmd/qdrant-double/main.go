// Command qdrant-double serves the Qdrant HTTP API TEST DOUBLE
// (internal/qdrantdouble) so end-to-end tests can run it as a process in
// place of a real Qdrant, which is not available in the test environment.
//
//	qdrant-double -addr 127.0.0.1:6333 [-storage-snapshot FILE] [-snapshot-delay 200ms]
//
// The api key, if any, comes from QDRANT__SERVICE__API_KEY (Qdrant's own
// variable), never from argv. -storage-snapshot loads a full-storage
// snapshot at start-up, like `qdrant --storage-snapshot`.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/planrun/planrun/internal/qdrantdouble"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6333", "listen address (port 0: pick a free one)")
	storageSnapshot := flag.String("storage-snapshot", "", "full-storage snapshot to load at start-up")
	delay := flag.Duration("snapshot-delay", 0, "how long snapshot creation takes")
	padding := flag.Int("snapshot-padding", 0, "incompressible bytes added to each snapshot")
	flag.Parse()

	srv := qdrantdouble.New(qdrantdouble.Options{
		APIKey: os.Getenv("QDRANT__SERVICE__API_KEY"), SnapshotDelay: *delay, SnapshotPadding: *padding,
	})
	if *storageSnapshot != "" {
		f, err := os.Open(*storageSnapshot)
		if err != nil {
			log.Fatal(err)
		}
		err = srv.LoadStorageSnapshot(f)
		f.Close()
		if err != nil {
			log.Fatalf("%s: %v", *storageSnapshot, err)
		}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// The first line tells a parent process where to connect.
	fmt.Printf("qdrant-double (TEST DOUBLE of the Qdrant HTTP API) listening on http://%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, srv.Handler()))
}
