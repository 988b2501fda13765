package tlsconf

import (
	"errors"
	"testing"
)

// TestOnResultMapsCertmagicEvents: certmagic's cert_obtained and
// cert_failed events become OnResult calls (name, renewal, error); other
// events are not reported.
func TestOnResultMapsCertmagicEvents(t *testing.T) {
	boom := errors.New("urn:ietf:params:acme:error:rateLimited")
	type call struct {
		name    string
		renewal bool
		err     error
	}
	for _, tc := range []struct {
		name  string
		event string
		data  map[string]any
		want  []call
	}{
		{"obtained", "cert_obtained", map[string]any{"identifier": "a.example", "renewal": false}, []call{{"a.example", false, nil}}},
		{"renewed", "cert_obtained", map[string]any{"identifier": "a.example", "renewal": true}, []call{{"a.example", true, nil}}},
		{"renewal failed", "cert_failed", map[string]any{"identifier": "a.example", "renewal": true, "error": boom}, []call{{"a.example", true, boom}}},
		{"failed without error", "cert_failed", map[string]any{"identifier": "b.example"}, []call{{"b.example", false, errors.New("x")}}},
		{"other event", "cert_obtaining", map[string]any{"identifier": "a.example"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []call
			onResult(func(n string, r bool, err error) { got = append(got, call{n, r, err}) }, tc.event, tc.data)
			if len(got) != len(tc.want) {
				t.Fatalf("calls %v, want %v", got, tc.want)
			}
			for i := range got {
				g, w := got[i], tc.want[i]
				if g.name != w.name || g.renewal != w.renewal || (g.err == nil) != (w.err == nil) {
					t.Errorf("call %d = %+v, want %+v", i, g, w)
				}
				if w.err == boom && !errors.Is(g.err, boom) {
					t.Errorf("error %v, want %v", g.err, boom)
				}
			}
		})
	}
}
