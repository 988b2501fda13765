package gateway

import (
	"testing"
)

// TestSiteHonoursClientCacheControl: with the site's
// honourClientCacheControl a client's Cache-Control: no-cache makes the
// request go to the origin (a revalidation, or its own request while the
// first fill is still being stored), on both engines, past the fast hit
// paths; without it the stored copy answers.
func TestSiteHonoursClientCacheControl(t *testing.T) {
	forEngines(t, func(t *testing.T, engine string) {
		for _, honour := range []bool{false, true} {
			dir := t.TempDir()
			h := newHarness(t, harnessOpts{engine: engine, edit: func(c *Config) {
				withCache(dir, "")(c)
				c.Gateway.Sites[0].HonourClientCacheControl = honour
			}})
			alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
			noCache := map[string]string{"Authorization": basic("alice", "alice-pw"), "Cache-Control": "no-cache"}
			for i, req := range []map[string]string{alice, alice, noCache} {
				r := h.get(hostPrimary, indexPath, req)
				if r.err != nil || r.status != 200 {
					t.Fatalf("request %d: %d %v", i, r.status, r.err)
				}
				got := r.header.Get("X-Cache-Status")
				switch {
				case i == 0 && got != "MISS", i == 1 && got != "HIT":
					t.Errorf("honour %v, request %d: %q", honour, i, got)
				case i == 2 && !honour && got != "HIT":
					t.Errorf("no-cache not honoured: %q, want HIT", got)
				case i == 2 && honour && got == "HIT":
					t.Errorf("no-cache honoured: HIT, want the origin asked")
				}
			}
			want := 1
			if honour {
				want = 2
			}
			if n := countPath(h.upstream.paths(), indexPath); n != want {
				t.Errorf("honour %v: the origin saw the index %d times, want %d", honour, n, want)
			}
		}
	})
}
