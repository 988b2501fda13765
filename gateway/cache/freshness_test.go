package cache

import (
	"net/http"
	"testing"
	"time"
)

func TestFreshness(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	date := t0.Format(http.TimeFormat)
	tests := []struct {
		name     string
		header   http.Header
		lifetime time.Duration
		initial  time.Duration
		store    bool
	}{
		{"index", http.Header{"Cache-Control": {"public, max-age=60"}, "Date": {date}}, time.Minute, 0, true},
		{"immutable", http.Header{"Cache-Control": {"public, max-age=300, immutable"}}, 5 * time.Minute, 0, true},
		{"s-maxage wins", http.Header{"Cache-Control": {"max-age=60, s-maxage=10"}}, 10 * time.Second, 0, true},
		{"upper case, quoted", http.Header{"Cache-Control": {`Public, MAX-AGE="30"`}}, 30 * time.Second, 0, true},
		{"age header", http.Header{"Cache-Control": {"max-age=60"}, "Age": {"25"}}, time.Minute, 25 * time.Second, true},
		{"date in the past", http.Header{"Cache-Control": {"max-age=60"}, "Date": {t0.Add(-40 * time.Second).Format(http.TimeFormat)}}, time.Minute, 40 * time.Second, true},
		{"expires", http.Header{"Expires": {t0.Add(time.Hour).Format(http.TimeFormat)}, "Date": {date}}, time.Hour, 0, true},
		{"bad max-age is stale", http.Header{"Cache-Control": {"max-age=soon"}, "Etag": {`"x"`}}, 0, 0, true},
		{"negative max-age is stale", http.Header{"Cache-Control": {"max-age=-60"}, "Etag": {`"x"`}}, 0, 0, true},
		// RFC 9111 section 1.2.2: too large to represent is 2^31.
		{"max-age past int64 is 2^31", http.Header{"Cache-Control": {"max-age=99999999999999999999"}}, 1 << 31 * time.Second, 0, true},
		{"s-maxage past int64 is 2^31", http.Header{"Cache-Control": {"s-maxage=99999999999999999999"}}, 1 << 31 * time.Second, 0, true},
		{"no-cache stored, always revalidated", http.Header{"Cache-Control": {"no-cache, max-age=60"}, "Etag": {`"x"`}}, 0, 0, true},
		{"no-store", http.Header{"Cache-Control": {"no-store, max-age=60"}}, time.Minute, 0, false},
		{"private", http.Header{"Cache-Control": {`private="x", max-age=60`}}, time.Minute, 0, false},
		{"nothing to go on", http.Header{}, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := parseDirectives(tt.header)
			if got := lifetime(tt.header, d); got != tt.lifetime {
				t.Errorf("lifetime %v, want %v", got, tt.lifetime)
			}
			if got := initialAge(tt.header, t0, t0); got != tt.initial {
				t.Errorf("initial age %v, want %v", got, tt.initial)
			}
			resp := &http.Response{StatusCode: 200, Header: tt.header}
			if got := storable(resp, d, rules{authorization: true}, "/x"); got != tt.store {
				t.Errorf("storable %v, want %v", got, tt.store)
			}
		})
	}
	// With Authorization, only explicitly shareable responses are stored.
	req, _ := http.NewRequest("GET", "http://o/x", nil)
	req.Header.Set("Authorization", "Bearer t")
	h := http.Header{"Cache-Control": {"max-age=60"}}
	if storable(&http.Response{StatusCode: 200, Header: h, Request: req}, parseDirectives(h), rules{authorization: true}, "/x") {
		t.Error("stored an authorized response without public/s-maxage")
	}
	h = http.Header{"Cache-Control": {"public, max-age=60"}}
	if !storable(&http.Response{StatusCode: 200, Header: h, Request: req}, parseDirectives(h), rules{authorization: true}, "/x") {
		t.Error("refused an authorized public response")
	}
}

func TestStaleWindows(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f := newFreshness(http.Header{"Cache-Control": {"max-age=60, stale-while-revalidate=30, stale-if-error=600"}}, t0, t0)
	tests := []struct {
		at                  time.Duration
		fresh, swr, onError bool
	}{
		{59 * time.Second, true, true, true},
		{60 * time.Second, false, true, true},
		{90 * time.Second, false, true, true},
		{91 * time.Second, false, false, true},
		{660 * time.Second, false, false, true},
		{661 * time.Second, false, false, false},
	}
	for _, tt := range tests {
		now := t0.Add(tt.at)
		if f.fresh(now) != tt.fresh || f.usableWhileRevalidating(now) != tt.swr || f.usableOnError(now, time.Minute) != tt.onError {
			t.Errorf("at %v: fresh %v swr %v onError %v", tt.at, f.fresh(now), f.usableWhileRevalidating(now), f.usableOnError(now, time.Minute))
		}
	}
}
