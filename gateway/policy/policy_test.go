package policy

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	p := New([]string{"primary"})
	long := strings.Repeat("e", 128)
	tests := []struct {
		path   string
		kind   Kind
		domain string
		export string
	}{
		{"/concelier/exports/index.json", Index, "", ""},
		{"/concelier/exports/mirror/primary/manifest.json", Download, "primary", ""},
		{"/concelier/exports/mirror/primary/bundle.json", Download, "primary", ""},
		{"/concelier/exports/mirror/primary/bundle.json.jws", Download, "primary", ""},
		{"/excititor/mirror/primary/index", Index, "primary", ""},
		{"/excititor/mirror/primary/export/k1.json", Download, "primary", ""},
		{"/excititor/mirror/primary/export/k1.json/signature", Download, "primary", ""},
		// another domain
		{"/concelier/exports/mirror/community/bundle.json", Refused, "", ""},
		{"/excititor/mirror/community/index", Refused, "", ""},
		// other spellings of another domain's path
		{"/concelier/exports/mirror/%63ommunity/bundle.json", Refused, "", ""},
		{"/concelier/exports/mirror/primary/../community/bundle.json", Refused, "", ""},
		{"/concelier/exports/mirror/primary/%2e%2e/community/bundle.json", Refused, "", ""},
		{"/concelier/exports/mirror/primary%2f..%2fcommunity/bundle.json", Refused, "", ""},
		{"/concelier/exports/mirror/primary/./bundle.json", Refused, "", ""},
		{"/concelier/exports/mirror//primary/bundle.json", Refused, "", ""},
		{"/concelier/exports/mirror/primary/bundle.json/", Refused, "", ""},
		{"/concelier/exports/mirror/primary\\..\\community/bundle.json", Refused, "", ""},
		{"/concelier/exports/mirror/Primary/bundle.json", Refused, "", ""},
		// not the contract
		{"/", Refused, "", ""},
		{"", Refused, "", ""},
		{"/metrics", Refused, "", ""},
		{"/health/ready", Refused, "", ""},
		{"/concelier/exports/mirror/primary/other.json", Refused, "", ""},
		{"/concelier/exports/mirror/primary", Refused, "", ""},
		{"/excititor/mirror/primary/export/", Refused, "", ""},
		{"/excititor/mirror/primary/export/k/other", Refused, "", ""},
		{"/excititor/mirror/primary/other", Refused, "", ""},
		{"concelier/exports/index.json", Refused, "", ""},
		// export-pinned twins: the index for every site, files of its own domains
		{"/concelier/exports/20261122T000000Z/index.json", Index, "", "20261122T000000Z"},
		{"/concelier/exports/e1/mirror/primary/manifest.json", Download, "primary", "e1"},
		{"/concelier/exports/e1/mirror/primary/bundle.json", Download, "primary", "e1"},
		{"/concelier/exports/e1/mirror/primary/bundle.json.jws", Download, "primary", "e1"},
		{"/concelier/exports/" + long + "/mirror/primary/bundle.json", Download, "primary", long},
		{"/concelier/exports/" + long + "/index.json", Index, "", long},
		{"/concelier/exports/e1/mirror/community/bundle.json", Refused, "", ""},
		{"/concelier/exports/e1/mirror/Primary/bundle.json", Refused, "", ""},
		{"/concelier/exports/e1/mirror/primary/other.json", Refused, "", ""},
		{"/concelier/exports/e1/mirror/primary", Refused, "", ""},
		{"/concelier/exports/e1/mirror/index.json", Refused, "", ""},
		{"/concelier/exports/e1/primary/bundle.json", Refused, "", ""},
		{"/concelier/exports/e1/other.json", Refused, "", ""},
		{"/concelier/exports/e1", Refused, "", ""},
		{"/concelier/exports/e1/", Refused, "", ""},
		{"/concelier/exports/e1/index.json/", Refused, "", ""},
		{"/concelier/exports/e1//mirror/primary/bundle.json", Refused, "", ""},
		{"/concelier/exports/e1/mirror/primary/./bundle.json", Refused, "", ""},
		{"/concelier/exports/e1/mirror/primary/../community/bundle.json", Refused, "", ""},
		{"/concelier/exports/e1/mirror/%70rimary/bundle.json", Refused, "", ""},
		{"/excititor/mirror/e1/primary/index", Refused, "", ""},
		// traversal and other non-ids in the id's place
		{"/concelier/exports/../index.json", Refused, "", ""},
		{"/concelier/exports/../mirror/primary/bundle.json", Refused, "", ""},
		{"/concelier/exports/./index.json", Refused, "", ""},
		{"/concelier/exports/%2e%2e/index.json", Refused, "", ""},
		{"/concelier/exports/%2E%2E/mirror/primary/bundle.json", Refused, "", ""},
		{"/concelier/exports/..%2f..%2fsecret/index.json", Refused, "", ""},
		{"/concelier/exports/e1%2Fmirror/primary/bundle.json", Refused, "", ""},
		{"/concelier/exports/e1%2fmirror%2fprimary%2fbundle.json", Refused, "", ""},
		{"/concelier/exports/.staging/index.json", Refused, "", ""},
		{"/concelier/exports/.staging/mirror/primary/bundle.json", Refused, "", ""},
		{"/concelier/exports/.hidden/index.json", Refused, "", ""},
		{"/concelier/exports/.trash/mirror/primary/manifest.json", Refused, "", ""},
		{"/concelier/exports/mirror/index.json", Refused, "", ""},
		{"/concelier/exports/mirror/mirror/primary/bundle.json", Refused, "", ""},
		{"/concelier/exports/index.json/index.json", Refused, "", ""},
		{"/concelier/exports/index.json/mirror/primary/bundle.json", Refused, "", ""},
		{"/concelier/exports/latest/index.json", Refused, "", ""},
		{"/concelier/exports/latest/mirror/primary/bundle.json", Refused, "", ""},
		{"/concelier/exports/" + long + "e/index.json", Refused, "", ""},
		{"/concelier/exports/" + long + "e/mirror/primary/bundle.json", Refused, "", ""},
		{"/concelier/exports/" + strings.Repeat("a", 100000) + "/index.json", Refused, "", ""},
		{"/concelier/exports/e1\\..\\x/index.json", Refused, "", ""},
		{"/concelier/exports/e%00/index.json", Refused, "", ""},
		{"/concelier/exports/e1;x/index.json", Refused, "", ""},
		{"/concelier/exports/e1/mirror/primary/bundle.json?x", Refused, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got := p.Check(tt.path)
			if got.Kind != tt.kind || got.Domain != tt.domain || got.Export != tt.export {
				t.Fatalf("Check(%q) = %+v, want kind %d domain %q export %q", tt.path, got, tt.kind, tt.domain, tt.export)
			}
		})
	}
	for _, path := range []string{"/concelier/exports/mirror/primary/bundle.json", "/concelier/exports/e1/mirror/primary/bundle.json"} {
		if (&Policy{}).Check(path).Kind != Refused {
			t.Fatalf("zero policy allowed the domain path %s", path)
		}
	}
}

// BenchmarkCheck measures the policy on the paths of the hot path.
func BenchmarkCheck(b *testing.B) {
	p := New([]string{"primary", "community"})
	for _, path := range []string{
		"/concelier/exports/index.json",
		"/concelier/exports/mirror/primary/bundle.json",
		"/concelier/exports/20261122T000000Z/mirror/primary/bundle.json",
	} {
		b.Run(strings.ReplaceAll(path[1:], "/", "_"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if p.Check(path).Kind == Refused {
					b.Fatal("refused")
				}
			}
		})
	}
}

// TestCanonicalExhaustive compares canonical with its plain definition on
// every string of up to 7 bytes over an alphabet that exercises every rule.
func TestCanonicalExhaustive(t *testing.T) {
	reference := func(path string) bool {
		if len(path) < 2 || path[0] != '/' || path[len(path)-1] == '/' {
			return false
		}
		for i := 0; i < len(path); i++ {
			c := path[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_./", c) >= 0) {
				return false
			}
		}
		for _, seg := range strings.Split(path[1:], "/") {
			if seg == "" || seg == "." || seg == ".." {
				return false
			}
		}
		return true
	}
	const alphabet = "/.a%_"
	buf := make([]byte, 0, 7)
	var walk func()
	n := 0
	walk = func() {
		n++
		if s := string(buf); canonical(s) != reference(s) {
			t.Fatalf("canonical(%q) = %v, want %v", s, canonical(s), reference(s))
		}
		if len(buf) == cap(buf) {
			return
		}
		for i := range len(alphabet) {
			buf = append(buf, alphabet[i])
			walk()
			buf = buf[:len(buf)-1]
		}
	}
	walk()
	if n != 97656 { // 1 + 5 + … + 5^7
		t.Fatalf("walked %d strings", n)
	}
}

// TestCheckAllocatesNothing: the policy runs on every request.
func TestCheckAllocatesNothing(t *testing.T) {
	p := New([]string{"primary"})
	for _, path := range []string{"/concelier/exports/index.json", "/concelier/exports/mirror/primary/bundle.json",
		"/concelier/exports/e1/mirror/primary/bundle.json", "/concelier/exports/../index.json"} {
		if n := testing.AllocsPerRun(100, func() { p.Check(path) }); n != 0 {
			t.Errorf("Check(%q): %v allocations", path, n)
		}
	}
}
