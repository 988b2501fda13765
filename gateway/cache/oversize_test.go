package cache

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// TestOversizeObjectNotSpooled: a response whose Content-Length is above
// MaxObjectSize is passed through without a fill: no temporary file is
// written to the cache directory while it streams (the disk bound holds:
// a 10 GB object must not land on a cache disk sized for 1 GB objects),
// nothing is stored, and the next request goes to the origin again. The
// origin holds the second half of the body until the test has looked at
// the cache directory, so the check runs while the response is in
// flight. Before, the mutation cache-max-object-size (the Content-Length
// check dropped from the store decision) survived: the fill spooled the
// whole body to disk and only discarded it at the end.
func TestOversizeObjectNotSpooled(t *testing.T) {
	const max = 4 << 10
	// Sizes whose first half is more than the proxy's 4 KiB response
	// buffer, so that the client sees bytes while the origin waits.
	for _, size := range []int{16 << 10, 64 << 10} {
		t.Run(itoa(size>>10)+"KiB", func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			body := pattern(size, 3)
			o.set("/big", object{body: body, cacheControl: immutableCC})
			release := make(chan struct{})
			o.hook = func(w http.ResponseWriter, r *http.Request, obj object) {
				w.WriteHeader(http.StatusOK)
				w.Write(obj.body[:len(obj.body)/2])
				w.(http.Flusher).Flush()
				<-release
				w.Write(obj.body[len(obj.body)/2:])
			}
			dir := t.TempDir()
			c := testCache(t, dir, o, func(cfg *Config) { cfg.MaxObjectSize = max; cfg.MemoryMaxObjectSize = 1 << 10 })
			p := proxy(t, c, o)
			cl := client(t)
			resp, err := cl.Get(p.URL + "/big")
			if err != nil {
				close(release)
				t.Fatal(err)
			}
			defer resp.Body.Close()
			first := make([]byte, 1<<10)
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				close(release)
				t.Fatalf("reading the first KiB: %v", err)
			}
			// The response is in flight (the origin waits): nothing of it
			// may be on the cache's disk.
			files := storedFiles(t, dir)
			close(release)
			if len(files) != 0 {
				t.Errorf("an object above MaxObjectSize (%d > %d bytes) is spooled to the cache directory: %v", size, max, files)
			}
			rest, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(append(first, rest...), body) {
				t.Fatalf("the client got %d bytes (%v), want the whole %d", len(first)+len(rest), err, size)
			}
			nothingStored(t, c, dir, "for an object above MaxObjectSize")
			o.hook = nil
			if r := mustGet(t, cl, p.URL+"/big"); r.cache == "HIT" || !bytes.Equal(r.body, body) {
				t.Errorf("second request: cache %q, %d bytes; want the origin's %d bytes, not a HIT", r.cache, len(r.body), len(body))
			}
			if n := o.gets.Load(); n != 2 {
				t.Errorf("the origin sent %d bodies, want 2", n)
			}
		})
	}
}

func itoa(n int) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		if n /= 10; n == 0 {
			return string(b)
		}
	}
}
