package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// largeBody streams a deterministic object of n MiB without holding it.
func largeBody(w io.Writer, fromMiB, toMiB int) error {
	chunk := pattern(1<<20, 42)
	for i := fromMiB; i < toMiB; i++ {
		chunk[0] = byte(i)
		if _, err := w.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

// TestLargeObjectMemoryBounded: 50 clients streaming a 64 MiB object
// from a fill in progress keep the heap far below the object's size (the
// bytes live in the file, each reader holds one copy buffer).
func TestLargeObjectMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 3.2 GB")
	}
	const (
		sizeMiB = 64
		readers = 50
		size    = sizeMiB << 20
	)
	h := sha256.New()
	largeBody(h, 0, sizeMiB)
	sum := hex.EncodeToString(h.Sum(nil))

	release := make(chan struct{})
	var gets int
	var getsMu sync.Mutex
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		getsMu.Lock()
		gets++
		getsMu.Unlock()
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Header().Set("ETag", `"`+sum+`"`)
		w.Header().Set("Cache-Control", immutableCC)
		if largeBody(w, 0, sizeMiB/2) != nil {
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		largeBody(w, sizeMiB/2, sizeMiB)
	}))
	defer o.Close()
	c, err := New(Config{Dir: t.TempDir(), MaxSize: 1 << 30, MaxObjectSize: 1 << 30},
		&http.Transport{ResponseHeaderTimeout: 30 * time.Second}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	halfway := make(chan struct{}, readers)
	measured := make(chan struct{})
	type out struct {
		n   int64
		sum string
		err error
	}
	outs := make(chan out, readers)
	for i := range readers {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, o.URL+"/bundle.json", nil)
			resp, err := c.RoundTrip(req)
			if err != nil {
				halfway <- struct{}{}
				outs <- out{err: err}
				return
			}
			defer resp.Body.Close()
			var hh hash.Hash
			w := io.Discard
			if i < 3 { // digest a few; all are length-checked
				hh = sha256.New()
				w = hh
			}
			buf := make([]byte, 32<<10)
			n, err := io.CopyBuffer(w, io.LimitReader(resp.Body, 16<<20), buf)
			halfway <- struct{}{}
			<-measured
			if err == nil {
				var m int64
				m, err = io.CopyBuffer(w, resp.Body, buf)
				n += m
			}
			o := out{n: n, err: err}
			if hh != nil {
				o.sum = hex.EncodeToString(hh.Sum(nil))
			}
			outs <- o
		}()
	}
	for range readers {
		<-halfway
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	close(measured)
	close(release)
	for range readers {
		o := <-outs
		if o.err != nil || o.n != size || (o.sum != "" && o.sum != sum) {
			t.Errorf("reader: %v, %d bytes, digest ok %v", o.err, o.n, o.sum == "" || o.sum == sum)
		}
	}
	t.Logf("heap in use with %d readers of a %d MiB fill: %.1f MiB", readers, sizeMiB, float64(ms.HeapInuse)/(1<<20))
	if ms.HeapInuse > size/2 {
		t.Errorf("heap in use %d bytes while streaming, want far below the object size %d", ms.HeapInuse, size)
	}
	getsMu.Lock()
	defer getsMu.Unlock()
	if gets != 1 {
		t.Errorf("origin fetched %d times, want 1", gets)
	}
}
