// Command s3server is an S3-compatible object store for tests that run the
// upstream in a container: gofakes3 with its in-memory backend, listening
// on one address, with buckets created at start. test/e2e's cluster test
// builds it with CGO_ENABLED=0 into a FROM-scratch image (nothing pulled)
// and lets the edge nodes' sync containers read exports from it while the
// test uploads them with the AWS CLI, as an upstream publisher would.
//
// Memory is bounded: a request body larger than -max-object is refused
// (413), and the store refuses uploads once it holds -max-total bytes
// (507), so a runaway publisher cannot exhaust the host.
//
// Usage:
//
//	s3server [-listen :9000] [-bucket exports] [-max-object 64MiB] [-max-total 512MiB]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		log.Fatal(err)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("s3server", flag.ContinueOnError)
	listen := fs.String("listen", ":9000", "address to listen on")
	buckets := fs.String("bucket", "exports", "buckets to create at start, comma-separated")
	maxObject := fs.Int64("max-object", 64<<20, "largest request body accepted, in bytes")
	maxTotal := fs.Int64("max-total", 512<<20, "bytes accepted in all uploads together")
	if err := fs.Parse(args); err != nil {
		return err
	}
	backend := s3mem.New()
	for _, b := range strings.Split(*buckets, ",") {
		if b = strings.TrimSpace(b); b == "" {
			continue
		}
		if err := backend.CreateBucket(b); err != nil {
			return fmt.Errorf("bucket %s: %w", b, err)
		}
	}
	faker := gofakes3.New(backend)
	budget := &uploadBudget{left: *maxTotal}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           limit(faker.Server(), *maxObject, budget),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("s3server listening on %s, buckets %s", *listen, *buckets)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// uploadBudget counts the bytes all uploads may still add.
type uploadBudget struct {
	mu   sync.Mutex
	left int64
}

// take reserves n bytes; false when the store is full.
func (b *uploadBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.left {
		return false
	}
	b.left -= n
	return true
}

// limit refuses request bodies over maxObject and uploads beyond the budget.
func limit(next http.Handler, maxObject int64, budget *uploadBudget) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxObject {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if r.Method == http.MethodPut || r.Method == http.MethodPost {
			n := r.ContentLength
			if n < 0 {
				n = maxObject
			}
			if !budget.take(n) {
				http.Error(w, "store full", http.StatusInsufficientStorage)
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxObject)
		next.ServeHTTP(w, r)
	})
}
