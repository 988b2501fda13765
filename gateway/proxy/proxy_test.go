package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
)

func TestClientIP(t *testing.T) {
	cdn := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name, peer, xff string
		trusted         []netip.Prefix
		want            string
	}{
		{"untrusted peer ignores XFF", "203.0.113.5:1234", "198.51.100.1", cdn, "203.0.113.5"},
		{"no trusted proxies", "10.1.1.1:1234", "198.51.100.1", nil, "10.1.1.1"},
		{"trusted peer: last untrusted hop", "10.1.1.1:1234", "6.6.6.6, 198.51.100.1", cdn, "198.51.100.1"},
		{"trusted chain skipped", "10.1.1.1:1234", "198.51.100.1, 10.2.2.2", cdn, "198.51.100.1"},
		{"all hops trusted: the peer", "10.1.1.1:1234", "10.2.2.2", cdn, "10.1.1.1"},
		{"garbage hop: the peer", "10.1.1.1:1234", "198.51.100.1, not-an-ip", cdn, "10.1.1.1"},
		{"v6 peer trusted", "[fd00::1]:443", "2001:db8::7", cdn, "2001:db8::7"},
		{"v4-mapped peer", "[::ffff:10.1.1.1]:1", "198.51.100.9", cdn, "198.51.100.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.peer
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			if got := ClientIP(r, tt.trusted); got != tt.want {
				t.Fatalf("ClientIP = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewRejectsBadOrigin(t *testing.T) {
	for _, o := range []Options{{}, {Origin: mustURL("ftp://x")}, {Origin: mustURL("/relative")}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%v) succeeded", o.Origin)
		}
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
