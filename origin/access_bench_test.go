package origin

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/origin/authority/authoritytest"
)

// BenchmarkIndexBearer is BenchmarkIndex with a required, valid bearer
// token from a real issuer: after the first request the verified token
// comes from the cache, so the difference to BenchmarkIndex is the cost of
// access control per request.
func BenchmarkIndexBearer(b *testing.B) {
	root := b.TempDir()
	writeExport(b, root, "e1", treeOpts{})
	pointLatest(b, root, "e1")
	iss := authoritytest.NewIssuer(b)
	req := httptest.NewRequest(http.MethodGet, "/concelier/exports/index.json", nil)
	req.Header.Set("Authorization", "Bearer "+iss.Sign(b, iss.Token(time.Now(), "bench-client", testAudience, ScopeConcelier)))
	benchServeE1(b, authConfig(root, iss), req)
}
