package policy

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

// FuzzCheck feeds Check arbitrary request paths for a site with fuzzed
// domains and holds it to a reference model written independently of
// policy.go: split the path into segments, and admit only the contract's
// shapes with every segment made of [A-Za-z0-9._-] and not "." or "..".
// Whatever Check admits must also be canonical in every sense a later
// decoder could care about: it decodes to itself, path.Clean leaves it
// alone, and it holds no backslash, percent sign, NUL or doubled slash.
func FuzzCheck(f *testing.F) {
	for _, s := range []struct{ path, domains string }{
		{"/concelier/exports/index.json", "primary"},
		{"/concelier/exports/mirror/primary/manifest.json", "primary"},
		{"/concelier/exports/mirror/primary/bundle.json", "primary,community"},
		{"/concelier/exports/mirror/primary/bundle.json.jws", "primary"},
		{"/excititor/mirror/primary/index", "primary"},
		{"/excititor/mirror/primary/export/k1.json", "primary"},
		{"/excititor/mirror/primary/export/k1.json/signature", "primary"},
		{"/excititor/mirror/primary/export/.../signature", "primary"},
		{"/concelier/exports/mirror/community/bundle.json", "primary"},
		{"/concelier/exports/mirror/%63ommunity/bundle.json", "primary"},
		{"/concelier/exports/mirror/primary/../community/bundle.json", "primary"},
		{"/concelier/exports/mirror/primary/%2e%2e/community/bundle.json", "primary"},
		{"/concelier/exports/mirror/primary%2f..%2fcommunity/bundle.json", "primary"},
		{"/concelier/exports/mirror/primary/%2E%2E/community/bundle.json", "primary"},
		{"/concelier/exports/mirror/primary/./bundle.json", "primary"},
		{"/concelier/exports/mirror//primary/bundle.json", "primary"},
		{"//concelier/exports/index.json", ""},
		{"/concelier/exports/mirror/primary/bundle.json/", "primary"},
		{"/concelier/exports/mirror/primary\\..\\community/bundle.json", "primary"},
		{"/concelier/exports/mirror/Primary/bundle.json", "primary"},
		{"/concelier/exports/mirror/primary/bundle.json\x00", "primary"},
		{"/concelier/exports/mirror/primary/bundle.json;x", "primary"},
		{"/concelier/exports/mirror/primäry/bundle.json", "primäry"},
		{"/excititor/mirror/../mirror/primary/index", "primary"},
		{"/excititor/mirror/primary/export/..", "primary"},
		{"/excititor/mirror/primary/export/k/../../../../etc/passwd", "primary"},
		{"/concelier/exports/mirror/./bundle.json", "."},
		{"/concelier/exports/mirror/../bundle.json", ".."},
		{"/concelier/exports/mirror/a/b/bundle.json", "a/b"},
		{"/concelier/exports/mirror//bundle.json", ""},
		{"/", "primary"},
		{"", "primary"},
		{"concelier/exports/index.json", ""},
		// Export-pinned paths.
		{"/concelier/exports/20260101T000000Z/index.json", "primary"},
		{"/concelier/exports/20260101T000000Z/mirror/primary/manifest.json", "primary"},
		{"/concelier/exports/e-1_x.y/mirror/primary/bundle.json.jws", "primary,community"},
		{"/concelier/exports/20260101T000000Z/mirror/community/bundle.json", "primary"},
		{"/concelier/exports/latest/index.json", "primary"},
		{"/concelier/exports/mirror/mirror/primary/bundle.json", "primary"},
		{"/concelier/exports/index.json/index.json", "primary"},
		{"/concelier/exports/.staging/mirror/primary/bundle.json", "primary"},
		{"/concelier/exports/../mirror/primary/bundle.json", "primary"},
		{"/concelier/exports/%2e%2e/index.json", "primary"},
		{"/concelier/exports/" + strings.Repeat("a", 129) + "/index.json", "primary"},
		{"/concelier/exports/" + strings.Repeat("a", 128) + "/index.json", "primary"},
		{"/concelier/exports/20260101T000000Z/mirror/primary/other.json", "primary"},
	} {
		f.Add(s.path, s.domains)
	}
	f.Fuzz(func(t *testing.T, p, domainList string) {
		domains := strings.Split(domainList, ",")
		got := New(domains).Check(p)
		want := reference(p, domains)
		if got != want {
			t.Fatalf("Check(%q) with domains %q = %+v, reference model says %+v", p, domains, got, want)
		}
		if got.Kind == Refused {
			if got.Domain != "" {
				t.Fatalf("Check(%q) refused but names domain %q", p, got.Domain)
			}
			return
		}
		if u, err := url.PathUnescape(p); err != nil || u != p {
			t.Fatalf("admitted %q decodes to %q (%v): a second spelling", p, u, err)
		}
		if path.Clean(p) != p || strings.ContainsAny(p, "\\%\x00") || strings.Contains(p, "//") {
			t.Fatalf("admitted non-canonical path %q", p)
		}
		for _, seg := range strings.Split(p, "/")[1:] {
			if seg == ".." || seg == "." {
				t.Fatalf("admitted %q with segment %q", p, seg)
			}
		}
		if got.Export != "" && !strings.HasPrefix(p, "/concelier/exports/"+got.Export+"/") {
			t.Fatalf("admitted %q as export %q, which is not its id segment", p, got.Export)
		}
		sharedIndex := p == "/concelier/exports/index.json" || got.Export != "" && p == "/concelier/exports/"+got.Export+"/index.json"
		switch {
		case got.Domain == "" && !sharedIndex:
			t.Fatalf("admitted %q without a domain, and it is not the shared index or a pinned one", p)
		case got.Domain != "" && !contains(domains, got.Domain):
			t.Fatalf("admitted %q for domain %q, not one of the site's %q", p, got.Domain, domains)
		}
		// A zero policy admits only the shared index and pinned indexes.
		if z := (&Policy{}).Check(p); z.Kind != Refused && !sharedIndex {
			t.Fatalf("zero policy admitted %q", p)
		}
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// reference is the contract's path table, written as segment patterns.
func reference(p string, domains []string) Decision {
	if !strings.HasPrefix(p, "/") {
		return Decision{}
	}
	segs := strings.Split(p[1:], "/")
	for _, s := range segs {
		if !safeSegment(s) {
			return Decision{}
		}
	}
	isDomain := func(d string) bool { return contains(domains, d) }
	concelierFile := func(f string) bool { return f == "manifest.json" || f == "bundle.json" || f == "bundle.json.jws" }
	switch {
	case len(segs) == 4 && segs[0] == "concelier" && segs[1] == "exports" && exportID(segs[2]) && segs[3] == "index.json":
		return Decision{Kind: Index, Export: segs[2]}
	case len(segs) == 6 && segs[0] == "concelier" && segs[1] == "exports" && exportID(segs[2]) && segs[3] == "mirror" &&
		isDomain(segs[4]) && concelierFile(segs[5]):
		return Decision{Kind: Download, Domain: segs[4], Export: segs[2]}
	case len(segs) == 3 && segs[0] == "concelier" && segs[1] == "exports" && segs[2] == "index.json":
		return Decision{Kind: Index}
	case len(segs) == 5 && segs[0] == "concelier" && segs[1] == "exports" && segs[2] == "mirror" && isDomain(segs[3]):
		switch segs[4] {
		case "manifest.json", "bundle.json", "bundle.json.jws":
			return Decision{Kind: Download, Domain: segs[3]}
		}
	case len(segs) == 4 && segs[0] == "excititor" && segs[1] == "mirror" && isDomain(segs[2]) && segs[3] == "index":
		return Decision{Kind: Index, Domain: segs[2]}
	case len(segs) >= 5 && len(segs) <= 6 && segs[0] == "excititor" && segs[1] == "mirror" && isDomain(segs[2]) && segs[3] == "export":
		if len(segs) == 6 && segs[5] != "signature" {
			return Decision{}
		}
		return Decision{Kind: Download, Domain: segs[2]}
	}
	return Decision{}
}

// exportID is the layout's rule for an export id, given a safe segment:
// at most 128 bytes, no leading ".", not a name the unversioned URLs or
// the "latest" link use.
func exportID(s string) bool {
	switch s {
	case "latest", "mirror", "index.json":
		return false
	}
	return len(s) <= 128 && s[0] != '.'
}

// safeSegment: non-empty, not "." or "..", only [A-Za-z0-9._-].
func safeSegment(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
