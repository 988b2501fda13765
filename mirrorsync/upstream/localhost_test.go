package upstream_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

// TestSyncFromLocalhostName: an upstream named mirror-upstream.localhost
// (RFC 6761 §6.3) is dialled on loopback, whatever DNS says about it, so
// sync works against the demo's *.localhost URLs; plain http:// is allowed
// for it as for 127.0.0.1.
func TestSyncFromLocalhostName(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	up := httptest.NewServer(newOrigin(t, src).Handler())
	defer up.Close()
	base := strings.Replace(up.URL, "127.0.0.1", "mirror-upstream.localhost", 1)
	s := newSource(t, base, nil)
	res, err := run(t, dst, s)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Published || res.FilesDownloaded == 0 {
		t.Fatalf("sync from %s: %+v", base, res)
	}
	sourcetest.CheckPublished(t, dst, fx)
}
