package cache

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// slowOrigin serves one large immutable object: the first chunk at once,
// the rest only when release is closed. It reports every request whose
// context was cancelled while it waited.
type slowOrigin struct {
	*httptest.Server
	first, rest []byte
	mu          sync.Mutex
	release     chan struct{} // guarded by mu
	holdHeader  bool          // wait for release before the first byte; guarded by mu
	cancelled   chan struct{} // one value per request cancelled while held
	requests    atomic.Int64
}

func newSlowOrigin(t *testing.T) *slowOrigin {
	o := &slowOrigin{first: pattern(32<<10, 1), rest: pattern(4<<20, 2),
		cancelled: make(chan struct{}, 16)}
	whole := append(append([]byte{}, o.first...), o.rest...)
	etag := etagOf(whole)
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.requests.Add(1)
		o.mu.Lock()
		release, holdHeader := o.release, o.holdHeader
		o.mu.Unlock()
		if holdHeader {
			select {
			case <-release:
			case <-r.Context().Done():
				o.cancelled <- struct{}{}
				return
			}
		}
		w.Header().Set("Cache-Control", immutableCC)
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Length", strconv.Itoa(len(whole)))
		w.Write(o.first)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			o.cancelled <- struct{}{}
			return
		}
		w.Write(o.rest)
	}))
	t.Cleanup(o.Close)
	return o
}

// gate makes later requests wait for the returned channel's close.
func (o *slowOrigin) gate() chan struct{} {
	ch := make(chan struct{})
	o.mu.Lock()
	o.release = ch
	o.mu.Unlock()
	return ch
}

func (o *slowOrigin) body() []byte { return append(append([]byte{}, o.first...), o.rest...) }

// startGet sends a GET and returns its response once the first chunk has
// arrived (the body not read further).
func startGet(t *testing.T, cl *http.Client, u string) *http.Response {
	t.Helper()
	resp, err := cl.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
		t.Fatalf("GET %s: first bytes: %v", u, err)
	}
	return resp
}

// waitFor polls cond (bounded) and fails with what when it never holds.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFlights waits (bounded) for the cache's flight goroutines to end.
func waitFlights(t *testing.T, c *Cache) {
	t.Helper()
	done := make(chan struct{})
	go func() { c.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a fill is still running after 30s")
	}
}

func (c *Cache) waitersOf(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.flights[key]; f != nil {
		return f.waiters
	}
	return -1
}

func (c *Cache) stored(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[key] != nil
}

// totalFDs is the number of this process's open descriptors.
func totalFDs(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		testenv.Missing(t, "no /proc/self/fd: %v", err)
	}
	return len(des)
}

// TestFillCancelledWhenClientsGone: a client that starts a large MISS and
// disconnects cancels the upstream request (the origin sees its request
// context end), also when it leaves before the origin's headers;
// nothing is stored, the abandonment is counted (not as a
// fill failure), and the next request is a MISS again. Then, with two
// clients on one fill, the first one leaving changes nothing for the
// second: it gets every byte, the origin is not cancelled, and the object
// is stored (the next request is a HIT). A client that leaves satisfied
// (a range of the first bytes) does not stop the fill. Afterwards no descriptor or
// goroutine is left behind.
func TestFillCancelledWhenClientsGone(t *testing.T) {
	o := newSlowOrigin(t)
	dir := t.TempDir()
	clk := newClock()
	c := testCache(t, dir, &origin{Server: o.Server, clock: clk}, nil)
	p := proxy(t, c, &origin{Server: o.Server})
	cl := client(t)
	const key = "/bundle.json"
	u := p.URL + key
	closeIdle := func() {
		cl.CloseIdleConnections()
		c.upstream.(*http.Transport).CloseIdleConnections()
		p.CloseClientConnections()
	}
	fdBase, goBase := totalFDs(t), runtime.NumGoroutine()

	t.Run("sole client gone", func(t *testing.T) {
		release := o.gate()
		resp := startGet(t, cl, u)
		if got := resp.Header.Get(Header); got != "MISS" {
			t.Fatalf("X-Cache-Status %q, want MISS", got)
		}
		resp.Body.Close() // the body is not read to the end: the connection is closed
		select {
		case <-o.cancelled:
		case <-time.After(30 * time.Second):
			t.Fatal("the upstream request was not cancelled after its only client went away")
		}
		waitFlights(t, c)
		if c.stored(key) {
			t.Fatal("an abandoned fill was stored")
		}
		if files := storedFiles(t, dir); len(files) != 0 {
			t.Fatalf("files left in the cache directory: %v", files)
		}
		if n := testutil.ToFloat64(c.m.fillsAbandoned); n != 1 {
			t.Fatalf("fills_abandoned_total %v, want 1", n)
		}
		if n := testutil.ToFloat64(c.m.fillFailures); n != 0 {
			t.Fatalf("fill_failures_total %v, want 0: an abandoned fill is no origin failure", n)
		}
		close(release) // from now on the origin sends whole bodies
		r := mustGet(t, cl, u)
		if r.cache != "MISS" || !bytes.Equal(r.body, o.body()) {
			t.Fatalf("next request: %q, %d bytes; want a MISS with the whole body", r.cache, len(r.body))
		}
		waitFlights(t, c)
	})

	t.Run("one of two clients gone", func(t *testing.T) {
		c.Purge(key)
		release := o.gate()
		reqs := o.requests.Load()
		first := startGet(t, cl, u)
		second := startGet(t, cl, u)
		if a, b := first.Header.Get(Header), second.Header.Get(Header); a != "MISS" || b != "HIT" {
			t.Fatalf("X-Cache-Status %q %q, want MISS HIT (one fill)", a, b)
		}
		if n := c.waitersOf(key); n != 2 {
			t.Fatalf("the fill has %d waiters, want 2", n)
		}
		first.Body.Close()
		waitFor(t, 30*time.Second, "the first client's departure never reached the fill",
			func() bool { return c.waitersOf(key) == 1 })
		select {
		case <-o.cancelled:
			t.Fatal("the upstream request was cancelled while a client still waited")
		default:
		}
		close(release)
		rest, err := io.ReadAll(second.Body)
		second.Body.Close()
		if err != nil || !bytes.Equal(append(o.body()[:1024:1024], rest...), o.body()) {
			t.Fatalf("the remaining client got %d more bytes, err %v; want the whole body", len(rest), err)
		}
		waitFlights(t, c)
		if r := mustGet(t, cl, u); r.cache != "HIT" || !bytes.Equal(r.body, o.body()) {
			t.Fatalf("after the fill: %q, %d bytes; want a HIT", r.cache, len(r.body))
		}
		if n := o.requests.Load() - reqs; n != 1 {
			t.Fatalf("the origin was asked %d times, want 1", n)
		}
	})

	t.Run("sole client gone before the headers", func(t *testing.T) {
		c.Purge(key)
		release := o.gate()
		o.mu.Lock()
		o.holdHeader = true
		o.mu.Unlock()
		defer func() {
			o.mu.Lock()
			o.holdHeader = false
			o.mu.Unlock()
		}()
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		errc := make(chan error, 1)
		go func() {
			resp, err := cl.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		waitFor(t, 30*time.Second, "the request never joined a flight", func() bool { return c.waitersOf(key) == 1 })
		cancel()
		if err := <-errc; err == nil {
			t.Fatal("the cancelled request got an answer")
		}
		select {
		case <-o.cancelled:
		case <-time.After(30 * time.Second):
			t.Fatal("the upstream request was not cancelled after its only client went away before the headers")
		}
		close(release)
		waitFlights(t, c)
		if c.stored(key) {
			t.Fatal("an abandoned flight stored an object")
		}
	})

	t.Run("range client satisfied", func(t *testing.T) {
		c.Purge(key)
		release := o.gate()
		r := mustGet(t, cl, u, "Range", "bytes=0-99")
		if r.status != http.StatusPartialContent || r.cache != "MISS" || !bytes.Equal(r.body, o.body()[:100]) {
			t.Fatalf("range: %d %q, %d bytes; want 206 MISS with 100 bytes", r.status, r.cache, len(r.body))
		}
		waitFor(t, 30*time.Second, "the range client never left the fill",
			func() bool { return c.waitersOf(key) == 0 })
		close(release)
		waitFlights(t, c)
		if !c.stored(key) {
			t.Fatal("a fill whose only client left satisfied (a range) was not stored")
		}
		if n := testutil.ToFloat64(c.m.fillsAbandoned); n != 2 {
			t.Fatalf("fills_abandoned_total %v, want still 2", n)
		}
	})

	// No leak: once the connections are closed, descriptors and
	// goroutines return to where they were before the requests.
	waitFor(t, 30*time.Second, "descriptors or goroutines did not return to their baseline", func() bool {
		closeIdle()
		return totalFDs(t) <= fdBase && runtime.NumGoroutine() <= goBase
	})
	if n := openFDs(t, dir); n != 0 {
		t.Fatalf("%d cache files open", n)
	}
	if !strings.Contains(strings.Join(storedFiles(t, dir), " "), ".body") {
		t.Fatal("the second fill was not stored")
	}
}
