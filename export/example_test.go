package export_test

import (
	"fmt"

	"github.com/stella-ops/stella-mirror/export"
)

func ExampleParseIndex() {
	data := []byte(`{"schemaVersion":1,"exportId":"20261122T000000Z","generatedAt":"2026-11-22T00:00:00Z",
	 "domains":[{"domainId":"primary","advisoryCount":2,
	  "manifest":{"path":"mirror/primary/manifest.json","sizeBytes":512,"digest":"sha256:` + fmt.Sprintf("%064x", 1) + `"},
	  "bundle":{"path":"mirror/primary/bundle.json","sizeBytes":4096,"digest":"sha256:` + fmt.Sprintf("%064x", 2) + `",
	   "signature":{"path":"mirror/primary/bundle.json.jws","algorithm":"ES256","keyId":"k1","signedAt":"2026-11-22T00:00:00Z"}}}]}`)
	ix, err := export.ParseIndex(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	d := ix.Domain("primary")
	fmt.Println(ix.ExportID, d.Bundle.Path, d.Bundle.Signature.Algorithm)
	// Output: 20261122T000000Z mirror/primary/bundle.json ES256
}

func ExampleDigest() {
	fmt.Println(export.Digest([]byte("abc")))
	// Output: sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
}
