package policy_test

import (
	"crypto/sha256"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/gateway/policy"
	"github.com/stella-ops/stella-mirror/origin/origintest"
)

// shape is one path shape of the mirror contract with a "{d}" where the
// domain goes, and "{e}" where an export id goes.
type shape struct {
	path   string
	kind   policy.Kind
	shared bool // the same for every site (no domain in the path)
}

// shapes lists every path shape the contract has, unversioned and
// export-pinned (Excititor has no pinned twin).
var shapes = []shape{
	{"/concelier/exports/index.json", policy.Index, true},
	{"/concelier/exports/mirror/{d}/manifest.json", policy.Download, false},
	{"/concelier/exports/mirror/{d}/bundle.json", policy.Download, false},
	{"/concelier/exports/mirror/{d}/bundle.json.jws", policy.Download, false},
	{"/concelier/exports/{e}/index.json", policy.Index, true},
	{"/concelier/exports/{e}/mirror/{d}/manifest.json", policy.Download, false},
	{"/concelier/exports/{e}/mirror/{d}/bundle.json", policy.Download, false},
	{"/concelier/exports/{e}/mirror/{d}/bundle.json.jws", policy.Download, false},
	{"/excititor/mirror/{d}/index", policy.Index, false},
	{"/excititor/mirror/{d}/export/{k}", policy.Download, false},
	{"/excititor/mirror/{d}/export/{k}/signature", policy.Download, false},
}

const (
	exportID  = "20260101T000000Z"
	exportKey = "openvex-20260101t000000z.json"
)

func expand(s, domain string) string {
	return strings.NewReplacer("{d}", domain, "{e}", exportID, "{k}", exportKey).Replace(s)
}

// TestCheckEveryShapeOwnAndOtherDomain: every path shape × the site's own
// domain / another site's domain / a domain no site has: only the own
// domain (and the shared indexes) is admitted, with that domain and, for
// the pinned shapes, that export id.
func TestCheckEveryShapeOwnAndOtherDomain(t *testing.T) {
	p := policy.New([]string{"primary", "extra"})
	for _, sh := range shapes {
		for _, d := range []string{"primary", "extra", "community", "nosuch", "primaryx", "prim"} {
			path := expand(sh.path, d)
			own := d == "primary" || d == "extra"
			t.Run(path, func(t *testing.T) {
				got := p.Check(path)
				want := policy.Decision{}
				if sh.shared || own {
					want.Kind = sh.kind
					if !sh.shared {
						want.Domain = d
					}
					if strings.Contains(sh.path, "{e}") {
						want.Export = exportID
					}
				}
				if got != want {
					t.Fatalf("Check(%q) = %+v, want %+v", path, got, want)
				}
			})
		}
	}
}

// TestAdmittedPathsServeOwnDomain is differential: a real origin serves an
// export of three domains; for every path shape, with every domain (and
// every other domain's export key), each path the policy of a
// single-domain site admits must be answered with bytes that belong to
// the admitted domain (byte-identical to a file under that domain's
// directory) or to the shared index; nothing of another domain.
func TestAdmittedPathsServeOwnDomain(t *testing.T) {
	root := filepath.Join(t.TempDir(), "exports")
	domains := []string{"primary", "community", "third"}
	if _, err := fixture.Write(root, fixture.Options{
		Domains: domains, BundleSize: 8 << 10, VEXSize: 4 << 10, SetLatest: true, ExportID: exportID,
	}); err != nil {
		t.Fatal(err)
	}
	// owner: the domain of every file's content ("" for the Concelier index).
	owner := map[[32]byte][]string{}
	dir := filepath.Join(root, exportID)
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		d := ""
		if len(parts) >= 3 {
			d = parts[1] // mirror/<d>/… or excititor/<d>/…
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		owner[h] = append(owner[h], d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(origintest.New(t, root).Handler())
	defer srv.Close()
	client := srv.Client()

	for _, site := range domains {
		p := policy.New([]string{site})
		admitted, served := 0, 0
		for _, sh := range shapes {
			for _, d := range domains {
				path := expand(sh.path, d)
				dec := p.Check(path)
				if dec.Kind == policy.Refused {
					continue
				}
				admitted++
				if dec.Domain != "" && dec.Domain != site {
					t.Errorf("site %s: Check(%q) admitted domain %q", site, path, dec.Domain)
				}
				resp, err := client.Get(srv.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusOK {
					t.Errorf("site %s: %s admitted but the origin answered %d", site, path, resp.StatusCode)
					continue
				}
				served++
				if sh.shared {
					// The shared index names every domain; it is nobody's.
					if !strings.Contains(string(body), `"domains"`) && !strings.Contains(string(body), "mirror") {
						t.Errorf("site %s: %s is not an index: %.200s", site, path, body)
					}
					continue
				}
				owners := owner[sha256.Sum256(body)]
				if !contains(owners, site) {
					t.Errorf("site %s: %s (admitted as domain %q) served bytes of domains %v, not of %s",
						site, path, dec.Domain, owners, site)
				}
			}
		}
		// Own-domain paths of every shape once, the shared indexes once
		// per domain tried.
		want := 0
		for _, sh := range shapes {
			if sh.shared {
				want += len(domains)
			} else {
				want++
			}
		}
		if admitted != want || served != admitted {
			t.Errorf("site %s: %d paths admitted, %d served, want %d of each", site, admitted, served, want)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
