package jws_test

import (
	"errors"
	"fmt"
	"log"
	"strings"

	"github.com/stella-ops/stella-mirror/export/jws"
)

// ExampleSign signs a payload with a fresh Ed25519 key and verifies the
// detached signature. Sign and Verify stream the payload, so the same code
// works for a file of many GiB (see SignFile and VerifyFile).
func ExampleSign() {
	key, err := jws.GenerateKey(jws.EdDSA)
	if err != nil {
		log.Fatal(err)
	}
	kid, err := jws.Thumbprint(key.Public())
	if err != nil {
		log.Fatal(err)
	}

	payload := `{"schemaVersion":1}`
	sig, err := jws.Sign(strings.NewReader(payload), key, kid)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("detached:", strings.Contains(string(sig), ".."))

	trusted := []jws.PublicKey{{KeyID: kid, Key: key.Public()}}
	hdr, err := jws.Verify(sig, strings.NewReader(payload), trusted)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("verified:", hdr.Alg, hdr.Typ, hdr.Kid == kid)

	_, err = jws.Verify(sig, strings.NewReader(`{"schemaVersion":2}`), trusted)
	fmt.Println("tampered:", errors.Is(err, jws.ErrSignatureInvalid))
	// Output:
	// detached: true
	// verified: EdDSA JOSE true
	// tampered: true
}
