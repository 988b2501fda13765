package export

import "testing"

// TestUnpinURL: UnpinURL inverts PinURL for every pinned Concelier path,
// and refuses everything else (the unversioned paths, reserved or invalid
// ids, other products); UnversionedFile accepts exactly the domain files.
func TestUnpinURL(t *testing.T) {
	for _, p := range []string{IndexURL, "/concelier/exports/mirror/primary/manifest.json",
		"/concelier/exports/mirror/primary/bundle.json", "/concelier/exports/mirror/primary/bundle.json.jws"} {
		pinned, ok := PinURL(p, "20261130T100000Z")
		if !ok {
			t.Fatalf("PinURL(%s) failed", p)
		}
		u, id, ok := UnpinURL(pinned)
		if !ok || u != p || id != "20261130T100000Z" {
			t.Errorf("UnpinURL(%s) = %q, %q, %v; want %q", pinned, u, id, ok, p)
		}
	}
	for _, p := range []string{IndexURL, "/concelier/exports/mirror/primary/bundle.json", "/concelier/exports/latest/index.json",
		"/concelier/exports/index.json/mirror/x", "/concelier/exports/..%2f/index.json", "/concelier/exports/e1/other",
		"/excititor/mirror/primary/index", "/concelier/exports/.staging/index.json"} {
		if u, id, ok := UnpinURL(p); ok {
			t.Errorf("UnpinURL(%s) = %q, %q, true; want false", p, u, id)
		}
	}
	for p, want := range map[string]bool{
		"/concelier/exports/mirror/primary/manifest.json":     true,
		"/concelier/exports/mirror/primary/bundle.json.jws":   true,
		"/concelier/exports/mirror//bundle.json":              false,
		"/concelier/exports/mirror/primary/index.json":        false,
		"/concelier/exports/e1/mirror/primary/bundle.json":    false,
		"/concelier/exports/mirror/primary/bundle.json?x=1":   false,
		"/concelier/exports/mirror/primary/sub/manifest.json": false,
	} {
		if got := UnversionedFile(p); got != want {
			t.Errorf("UnversionedFile(%s) = %v, want %v", p, got, want)
		}
	}
}
