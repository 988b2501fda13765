package cache

import (
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// headerOrigin is a test origin that answers every request with status
// and the header fields fields(path) gives, and a body that counts the
// requests.
func headerOrigin(t *testing.T, clk *clock, status func(path string) int, fields func(path string) http.Header) (*origin, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		for k, v := range fields(r.URL.Path) {
			w.Header()[k] = v
		}
		if w.Header().Get("Date") == "" {
			w.Header().Set("Date", clk.Now().Format(http.TimeFormat))
		}
		w.WriteHeader(status(r.URL.Path))
		fmt.Fprintf(w, "answer %d", i)
	}))
	return &origin{Server: srv, clock: clk}, &n
}

// TestAgeBounded: an upstream Date far in the past makes the age 2^31
// seconds at most (RFC 9111 section 1.2.2), never a value that wraps
// around: the response is stale, not fresh forever, and every answer's
// Age is between 0 and 2147483648. Before, the age saturated
// time.Duration, the resident time then wrapped it negative, and a
// no-cache response was a HIT with "Age: -9223372036".
func TestAgeBounded(t *testing.T) {
	clk := newClock()
	fields := map[string]http.Header{
		"/year1-no-cache": {"Date": {"Mon, 01 Jan 0001 00:00:00 GMT"}, "Cache-Control": {"no-cache"}, "Etag": {`"x"`}},
		"/year1-max-age":  {"Date": {"Mon, 01 Jan 0001 00:00:00 GMT"}, "Cache-Control": {"max-age=60"}},
		"/year1700":       {"Date": {"Fri, 01 Jan 1700 00:00:00 GMT"}, "Cache-Control": {"max-age=600"}},
		"/age-huge":       {"Age": {"99999999999999999999"}, "Cache-Control": {"max-age=600"}},
		"/age-max-int64":  {"Age": {"9223372036854775807"}, "Cache-Control": {"max-age=600"}},
	}
	o, _ := headerOrigin(t, clk, func(string) int { return http.StatusOK }, func(p string) http.Header { return fields[p] })
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	for path := range fields {
		for i := range 3 {
			r := mustGet(t, cl, p.URL+path)
			c.bg.Wait()
			age, err := strconv.ParseInt(r.header.Get("Age"), 10, 64)
			if err != nil || age < 0 || age > maxAgeValue {
				t.Errorf("%s, answer %d: Age %q, want 0 to %d", path, i, r.header.Get("Age"), int64(maxAgeValue))
			}
			if r.cache == "HIT" {
				t.Errorf("%s, answer %d: HIT of a response older than its lifetime", path, i)
			}
			clk.Advance(time.Second)
		}
	}
	f := freshness{initialAge: 1<<63 - 1, responseAt: clk.Now(), lifetime: time.Hour}
	if f.fresh(clk.Now().Add(time.Hour)) || f.age(clk.Now().Add(time.Hour)) != time.Duration(maxAgeValue)*time.Second {
		t.Errorf("saturated initial age: age %v, fresh %v", f.age(clk.Now().Add(time.Hour)), f.fresh(clk.Now().Add(time.Hour)))
	}
}
