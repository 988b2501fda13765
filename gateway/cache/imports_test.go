package cache

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// engines are the server engines the cache must not depend on: the
// engines hand the cache requests (RoundTrip, LookupHit, ServeHit), never
// the other way round.
var engines = []string{
	"github.com/valyala/fasthttp",
	"github.com/stella-ops/stella-mirror/internal/fastserve",
	"github.com/stella-ops/stella-mirror/internal/serve",
	"golang.org/x/net/http2",
}

// TestNoServerEngineImports: the cache package, with everything it
// imports, is free of any server engine (go list -deps).
func TestNoServerEngineImports(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		testenv.Missing(t, "no go command: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !strings.Contains(string(out), "net/http\n") {
		t.Fatalf("go list -deps listed %d packages, without net/http: the check proves nothing", len(deps))
	}
	for _, d := range deps {
		for _, e := range engines {
			if d == e || strings.HasPrefix(d, e+"/") {
				t.Errorf("the cache depends on the server engine %s", d)
			}
		}
	}
}
