package faults

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
)

// reader is the verifying reader: it reads ROOT/latest again and again and
// checks the whole set it names against the export the source published
// under that id, byte for byte (every file present, every digest right).
// A set that is incomplete, altered or mixes two exports counts as bad.
type reader struct {
	root string

	mu    sync.Mutex
	known map[string]*fixture.Result

	sets  atomic.Int64 // complete sets verified
	empty atomic.Int64 // reads before anything was published
	gone  atomic.Int64 // sets pruned while being read (then re-read)
	bad   atomic.Int64
	first atomic.Pointer[string] // the first bad set, described
}

func newReader(root string) *reader {
	return &reader{root: root, known: map[string]*fixture.Result{}}
}

// add tells the reader what the export of res.ExportID must hold; call it
// before sync can see the export.
func (r *reader) add(res *fixture.Result) {
	r.mu.Lock()
	r.known[res.ExportID] = res
	r.mu.Unlock()
}

// run reads until stop is closed, then signals done.
func (r *reader) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-stop:
			return
		default:
		}
		r.once()
		// Pacing, not synchronisation: leave the two cores to the runs.
		time.Sleep(time.Millisecond)
	}
}

// once verifies the set ROOT/latest names now.
func (r *reader) once() {
	target, err := os.Readlink(filepath.Join(r.root, export.LatestLink))
	if errors.Is(err, fs.ErrNotExist) {
		r.empty.Add(1)
		return
	}
	if err != nil {
		r.fail(fmt.Sprintf("readlink latest: %v", err))
		return
	}
	id := filepath.Base(target)
	dir := filepath.Join(r.root, id)
	r.mu.Lock()
	want := r.known[id]
	r.mu.Unlock()
	if want == nil {
		r.fail(fmt.Sprintf("latest -> %q, an export the source never published", target))
		return
	}
	for _, f := range want.Files {
		d, n, err := export.DigestFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err == nil && d == f.Digest && n == f.SizeBytes {
			continue
		}
		if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) {
			r.gone.Add(1) // pruned after later publishes: latest names another set now
			return
		}
		r.fail(fmt.Sprintf("latest -> %s: %s: digest %s size %d (%v), want %s %d", id, f.Path, d, n, err, f.Digest, f.SizeBytes))
		return
	}
	r.sets.Add(1)
}

func (r *reader) fail(msg string) {
	r.bad.Add(1)
	r.first.CompareAndSwap(nil, &msg)
}

// firstBad describes the first bad set seen, or "".
func (r *reader) firstBad() string {
	if p := r.first.Load(); p != nil {
		return *p
	}
	return ""
}
