package mirrorsync_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

// testKey signs every test export; otherKey is an untrusted key.
var (
	testKey  = fixture.DerivedKey(7)
	otherKey = fixture.DerivedKey(8)
)

func testKID(t testing.TB) string {
	t.Helper()
	kid, err := jws.Thumbprint(testKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

func trusted() []jws.PublicKey {
	return []jws.PublicKey{{Key: testKey.Public().(ed25519.PublicKey)}}
}

func staticKeys(keys []jws.PublicKey) func(context.Context) ([]jws.PublicKey, error) {
	return func(context.Context) ([]jws.PublicKey, error) { return keys, nil }
}

// writeSource writes a small signed export (seed selects id and content)
// into root and points root/latest at it.
func writeSource(t testing.TB, root string, seed uint64, domains ...string) *fixture.Result {
	t.Helper()
	if len(domains) == 0 {
		domains = []string{"primary", "community"}
	}
	res, err := fixture.Write(root, fixture.Options{
		Domains: domains, BundleSize: 24 << 10, VEXSize: 4 << 10, Seed: seed,
		Key: testKey, SetLatest: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// latestOf returns the target of dst/latest ("" when absent).
func latestOf(dst string) string {
	t, _ := os.Readlink(filepath.Join(dst, export.LatestLink))
	return t
}

// mutateBundle changes one byte of domain's bundle in export id of root
// without changing its size, re-signs it and updates the manifest and the
// index, as an exporter re-publishing in place would. It returns the new
// bundle digest.
func mutateBundle(t testing.TB, root, id, domain string) string {
	t.Helper()
	dir := filepath.Join(root, id)
	bundlePath := filepath.Join(dir, filepath.FromSlash(export.BundlePath(domain)))
	data, err := os.ReadFile(bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	i := len(data) / 2
	for data[i] < 'a' || data[i] > 'y' {
		i++
	}
	data[i]++
	writeFile(t, bundlePath, data)
	sig, err := jws.SignFile(bundlePath, testKey, testKID(t))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, bundlePath+export.SignatureSuffix, sig)
	digest := export.Digest(data)
	signedAt := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

	mPath := filepath.Join(dir, filepath.FromSlash(export.ManifestPath(domain)))
	var m export.Manifest
	readJSON(t, mPath, &m)
	m.Bundle.Digest = digest
	m.Bundle.Signature.SignedAt = signedAt
	mData := writeJSON(t, mPath, m)

	ixPath := filepath.Join(dir, filepath.FromSlash(export.IndexPath))
	var ix export.Index
	readJSON(t, ixPath, &ix)
	d := ix.Domain(domain)
	d.Bundle.Digest = digest
	d.Bundle.Signature.SignedAt = signedAt
	d.Manifest.Digest = export.Digest(mData)
	d.Manifest.SizeBytes = int64(len(mData))
	writeJSON(t, ixPath, ix)
	return digest
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

func writeJSON(t testing.TB, path string, v any) []byte {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, '\n')
	writeFile(t, path, data)
	return data
}

// baseOptions returns options syncing src into dst with the test key.
func baseOptions(dst string, src mirrorsync.Source) mirrorsync.Options {
	return mirrorsync.Options{Root: dst, Source: src, Keys: staticKeys(trusted())}
}
