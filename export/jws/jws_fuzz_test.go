package jws

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// Fuzz targets for the untrusted half of this package: a detached JWS and
// its protected header come from the upstream a mirror syncs from. They
// hold Verify to: never a panic; only ES256 and EdDSA, matching the
// trusted key's type, are ever accepted (never "none", HMAC or a header
// with crit or b64); every error is ErrMalformed or ErrSignatureInvalid;
// and a signature over fuzzed bytes verifies while any single-byte change
// of those bytes fails. The keys are testKeys (jws_test.go), generated once
// per run.

// fuzzKeys is the trusted set: both test keys under their thumbprints.
func fuzzKeys(f *testing.F) []PublicKey {
	f.Helper()
	var keys []PublicKey
	for _, alg := range []string{ES256, EdDSA} {
		tp, err := Thumbprint(testKeys[alg].Public())
		if err != nil {
			f.Fatal(err)
		}
		keys = append(keys, PublicKey{KeyID: tp, Key: testKeys[alg].Public()})
	}
	return keys
}

// FuzzVerify verifies arbitrary JWS bytes over arbitrary payloads.
func FuzzVerify(f *testing.F) {
	keys := fuzzKeys(f)
	payload := []byte(`{"schemaVersion":1}`)
	for _, alg := range []string{ES256, EdDSA} {
		sig, err := Sign(bytes.NewReader(payload), testKeys[alg], "")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sig, payload)
		f.Add(append(sig, '\n'), payload)
		f.Add(bytes.Replace(sig, []byte(".."), []byte(".e30."), 1), payload)
	}
	for _, h := range []string{
		`{"alg":"none"}`, `{"alg":"HS256"}`, `{"alg":"ES256","crit":["b64"],"b64":false}`,
		`{"alg":"EdDSA","alg":"ES256"}`, `{"alg":"ES256","jwk":{"kty":"oct"}}`, `{"alg":"es256"}`,
	} {
		f.Add([]byte(b64.EncodeToString([]byte(h))+".."+b64.EncodeToString(make([]byte, 64))), payload)
	}
	f.Add([]byte(".."), []byte{})
	f.Add([]byte("e30..."), []byte{})
	f.Fuzz(func(t *testing.T, sig, payload []byte) {
		h, err := Verify(sig, bytes.NewReader(payload), keys)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSignatureInvalid) {
				t.Fatalf("error is neither ErrMalformed nor ErrSignatureInvalid: %v", err)
			}
			if h != (Header{}) {
				t.Fatalf("error %v with a non-zero header %+v", err, h)
			}
			return
		}
		if h.Alg != ES256 && h.Alg != EdDSA {
			t.Fatalf("accepted alg %q", h.Alg)
		}
		// Only a real signature verifies: then every one-byte change of
		// the payload must fail (checked on a few positions).
		for _, i := range []int{0, len(payload) / 2, len(payload) - 1} {
			if i < 0 {
				continue
			}
			mut := bytes.Clone(payload)
			mut[i] ^= 0x01
			if _, err := Verify(sig, bytes.NewReader(mut), keys); !errors.Is(err, ErrSignatureInvalid) {
				t.Fatalf("payload changed at %d still verifies (err %v)", i, err)
			}
		}
	})
}

// FuzzHeader signs arbitrary protected headers correctly (forge) and checks
// that Verify accepts exactly the headers the policy allows, by a reference
// written without parseHeader: a JSON object with no repeated member, alg
// ES256 or EdDSA fitting the key, kid absent or naming the key, typ a
// string if present, no crit and no b64 member.
func FuzzHeader(f *testing.F) {
	keys := fuzzKeys(f)
	for _, s := range []struct {
		hdr   string
		ecdsa bool
	}{
		{`{"alg":"ES256","typ":"JOSE"}`, true},
		{`{"alg":"EdDSA"}`, false},
		{`{"alg":"EdDSA","kid":"` + keys[1].KeyID + `","typ":"JOSE"}`, false},
		{`{"alg":"ES256","kid":"` + keys[0].KeyID + `"}`, true},
		{`{"alg":"ES256","kid":"` + keys[1].KeyID + `"}`, true},
		{`{"alg":"EdDSA","kid":"other"}`, false},
		{`{"alg":"none"}`, true},
		{`{"alg":"None"}`, false},
		{`{"alg":"HS256"}`, true},
		{`{"alg":""}`, true},
		{`{"alg":null}`, true},
		{`{"alg":["ES256"]}`, true},
		{`{"alg":"ES256","alg":"none"}`, true},
		{`{"alg":"ES256","al\u0067":"ES256"}`, true},
		{`{"Alg":"ES256"}`, true},
		{`{"alg":"ES256","crit":[]}`, true},
		{`{"alg":"ES256","b64":true}`, true},
		{`{"alg":"ES256","jku":"https://evil/"}`, true},
		{`{"alg":"ES256"} `, true},
		{`{"alg":"ES256"}{}`, true},
		{`{"alg":"ES256",}`, true},
		{`{"alg":"ES256\u0000"}`, true},
		{"{\"alg\":\"ES256\",\"kid\":\"\xff\"}", true},
		{`{"alg":"EdDSA","typ":1}`, false},
		{`[]`, true},
		{``, true},
	} {
		f.Add(s.hdr, s.ecdsa, []byte("payload"))
	}
	f.Fuzz(func(t *testing.T, hdr string, ecdsa bool, payload []byte) {
		alg := EdDSA
		if ecdsa {
			alg = ES256
		}
		sig := forge(t, hdr, testKeys[alg], payload)
		h, err := Verify([]byte(sig), bytes.NewReader(payload), keys)
		want, why := referenceHeader([]byte(hdr), alg, keys)
		switch {
		case err == nil && !want:
			t.Fatalf("accepted header %q (%s alg key): the reference refuses it: %s", hdr, alg, why)
		case err != nil && want:
			t.Fatalf("refused header %q (%s key): %v; the reference accepts it", hdr, alg, err)
		case err == nil && h.Alg != alg:
			t.Fatalf("accepted header %q as alg %q, signed with %s", hdr, h.Alg, alg)
		case err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSignatureInvalid):
			t.Fatalf("header %q: error is neither ErrMalformed nor ErrSignatureInvalid: %v", hdr, err)
		}
	})
}

// referenceHeader reports whether a JWS with protected header hdr, signed
// by the alg key of keys, must verify.
func referenceHeader(hdr []byte, alg string, keys []PublicKey) (bool, string) {
	var m map[string]any
	if err := json.Unmarshal(hdr, &m); err != nil {
		return false, "not a JSON object: " + err.Error()
	}
	if m == nil {
		return false, "null"
	}
	// Count the members: a repeated one (in any spelling that decodes to
	// the same name) makes the map smaller than the member list.
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.Token() // {
	n := 0
	for dec.More() {
		if _, err := dec.Token(); err != nil {
			return false, "bad member name"
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return false, "bad member value"
		}
		n++
	}
	if n != len(m) {
		return false, "repeated member"
	}
	if _, ok := m["crit"]; ok {
		return false, "crit"
	}
	if _, ok := m["b64"]; ok {
		return false, "b64"
	}
	if a, _ := m["alg"].(string); a != alg {
		return false, "alg is not " + alg
	}
	for _, k := range []string{"kid", "typ"} {
		if v, ok := m[k]; ok && v != nil {
			if _, isStr := v.(string); !isStr {
				return false, k + " is not a string"
			}
		}
	}
	if kid, _ := m["kid"].(string); kid != "" {
		want := keys[0].KeyID
		if alg == EdDSA {
			want = keys[1].KeyID
		}
		if kid != want {
			return false, "kid names another key"
		}
	}
	return true, ""
}

// FuzzSignVerify signs fuzzed payload bytes with each algorithm: the
// signature verifies, and a one-byte change of the payload (at a fuzzed
// position, to a fuzzed value), one byte more, one byte less, or a
// one-byte change of the signature makes Verify fail with
// ErrSignatureInvalid (or ErrMalformed for a signature no longer base64url).
func FuzzSignVerify(f *testing.F) {
	keys := fuzzKeys(f)
	f.Add([]byte(""), uint32(0), byte(0))
	f.Add([]byte("x"), uint32(0), byte('y'))
	f.Add([]byte(`{"schemaVersion":1,"advisories":[]}`+"\n"), uint32(7), byte(0))
	f.Add(bytes.Repeat([]byte{0xff}, 300), uint32(299), byte(0xfe))
	f.Fuzz(func(t *testing.T, payload []byte, pos uint32, b byte) {
		for _, alg := range []string{ES256, EdDSA} {
			sig, err := Sign(bytes.NewReader(payload), testKeys[alg], "")
			if err != nil {
				t.Fatal(err)
			}
			h, err := Verify(sig, bytes.NewReader(payload), keys)
			if err != nil || h.Alg != alg {
				t.Fatalf("%s: own signature does not verify: header %+v, %v", alg, h, err)
			}
			var changed [][]byte
			if len(payload) > 0 {
				mut := bytes.Clone(payload)
				i := int(pos % uint32(len(payload)))
				if mut[i] == b {
					b ^= 0xff
				}
				mut[i] = b
				changed = append(changed, mut, payload[:len(payload)-1])
			}
			changed = append(changed, append(bytes.Clone(payload), b))
			for _, c := range changed {
				if _, err := Verify(sig, bytes.NewReader(c), keys); !errors.Is(err, ErrSignatureInvalid) {
					t.Fatalf("%s: signature over %q verifies %q (err %v)", alg, payload, c, err)
				}
			}
			// One byte of the signature part changed.
			dot := bytes.LastIndexByte(sig, '.')
			raw, err := b64.DecodeString(string(sig[dot+1:]))
			if err != nil {
				t.Fatal(err)
			}
			raw[int(pos)%len(raw)] ^= b | 1
			bad := append(bytes.Clone(sig[:dot+1]), b64.EncodeToString(raw)...)
			if _, err := Verify(bad, bytes.NewReader(payload), keys); !errors.Is(err, ErrSignatureInvalid) {
				t.Fatalf("%s: altered signature %q verifies (err %v)", alg, bad, err)
			}
		}
	})
}
