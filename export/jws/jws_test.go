package jws

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testKeys holds one key per algorithm, generated once per test binary run.
var testKeys = func() map[string]crypto.Signer {
	m := map[string]crypto.Signer{}
	for _, alg := range []string{ES256, EdDSA} {
		k, err := GenerateKey(alg)
		if err != nil {
			panic(err)
		}
		m[alg] = k
	}
	return m
}()

func mustKey(t *testing.T, alg string) crypto.Signer {
	t.Helper()
	k, err := GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustThumbprint(t *testing.T, k any) string {
	t.Helper()
	tp, err := Thumbprint(k)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// trusted returns the key set holding key's public half under its thumbprint.
func trusted(t *testing.T, key crypto.Signer) []PublicKey {
	return []PublicKey{{KeyID: mustThumbprint(t, key), Key: key.Public()}}
}

// forge builds a detached JWS with an arbitrary protected header, correctly
// signed by key over payload, so that verification failures come from the
// header policy and not from the signature.
func forge(t *testing.T, header string, key crypto.Signer, payload []byte) string {
	t.Helper()
	protected := b64.EncodeToString([]byte(header))
	var sig []byte
	var err error
	switch k := key.(type) {
	case ed25519.PrivateKey:
		sig, err = signEd25519Stream(k, func(w io.Writer) error {
			return writeSigningInput(w, protected, bytes.NewReader(payload))
		})
	default:
		sig, err = signES256(key, protected, bytes.NewReader(payload))
	}
	if err != nil {
		t.Fatal(err)
	}
	return protected + ".." + b64.EncodeToString(sig)
}

func TestRoundTrip(t *testing.T) {
	payloads := map[string][]byte{
		"empty":  {},
		"one":    {'x'},
		"json":   []byte(`{"schemaVersion":1,"advisories":[]}` + "\n"),
		"binary": testMessage(100_003, 1),
	}
	for _, alg := range []string{ES256, EdDSA} {
		for name, payload := range payloads {
			t.Run(alg+"/"+name, func(t *testing.T) {
				key := testKeys[alg]
				jws, err := Sign(bytes.NewReader(payload), key, "")
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				parts := strings.Split(string(jws), ".")
				if len(parts) != 3 || parts[1] != "" {
					t.Fatalf("not a detached compact JWS: %q", jws)
				}
				var hdr map[string]any
				hj, _ := b64.DecodeString(parts[0])
				if err := json.Unmarshal(hj, &hdr); err != nil {
					t.Fatal(err)
				}
				wantHdr := map[string]any{"alg": alg, "kid": mustThumbprint(t, key), "typ": "JOSE"}
				if len(hdr) != 3 || hdr["alg"] != wantHdr["alg"] || hdr["kid"] != wantHdr["kid"] || hdr["typ"] != "JOSE" {
					t.Errorf("header = %v, want %v", hdr, wantHdr)
				}
				if sig, _ := b64.DecodeString(parts[2]); len(sig) != 64 {
					t.Errorf("signature is %d bytes, want 64", len(sig))
				}

				got, err := Verify(jws, bytes.NewReader(payload), trusted(t, key))
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if got != (Header{Alg: alg, Kid: mustThumbprint(t, key), Typ: "JOSE"}) {
					t.Errorf("Verify header = %+v", got)
				}
			})
		}
	}
}

func TestSignFileVerifyFile(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "bundle.json")
			if err := os.WriteFile(data, []byte(`{"a":1}`), 0o644); err != nil {
				t.Fatal(err)
			}
			key := testKeys[alg]
			jws, err := SignFile(data, key, "prod-2026")
			if err != nil {
				t.Fatalf("SignFile: %v", err)
			}
			sigPath := data + ".jws"
			// A trailing newline, as an editor or echo would add, is accepted.
			if err := os.WriteFile(sigPath, append(jws, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			keys := []PublicKey{{KeyID: "prod-2026", Key: key.Public()}}
			h, err := VerifyFile(sigPath, data, keys)
			if err != nil {
				t.Fatalf("VerifyFile: %v", err)
			}
			if h.Kid != "prod-2026" || h.Alg != alg {
				t.Errorf("header = %+v", h)
			}

			if err := os.WriteFile(data, []byte(`{"a":2}`), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = VerifyFile(sigPath, data, keys)
			if !errors.Is(err, ErrSignatureInvalid) || !strings.Contains(err.Error(), data) {
				t.Errorf("VerifyFile on tampered file = %v; want ErrSignatureInvalid naming %s", err, data)
			}

			missing := filepath.Join(dir, "missing")
			if _, err := SignFile(missing, key, ""); err == nil || !strings.Contains(err.Error(), missing) {
				t.Errorf("SignFile(missing) = %v; want an error naming the file", err)
			}
			if _, err := VerifyFile(missing, data, keys); err == nil || !strings.Contains(err.Error(), missing) {
				t.Errorf("VerifyFile(missing sig) = %v; want an error naming the file", err)
			}
		})
	}
}

// TestSignFromOffset checks that Sign covers the bytes from the reader's
// current position, for both passes of EdDSA.
func TestSignFromOffset(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			r := bytes.NewReader([]byte("HEADERpayload"))
			r.Seek(6, io.SeekStart)
			jws, err := Sign(r, testKeys[alg], "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Verify(jws, strings.NewReader("payload"), trusted(t, testKeys[alg])); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

type noSeek struct{ io.Reader }

func (noSeek) Seek(int64, int) (int64, error) { return 0, errors.New("illegal seek") }

func TestSignErrors(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tests := []struct {
		name    string
		payload io.ReadSeeker
		key     crypto.Signer
	}{
		{"nil key", strings.NewReader("x"), nil},
		{"P-384 key", strings.NewReader("x"), p384},
		{"EdDSA needs seek", noSeek{strings.NewReader("x")}, testKeys[EdDSA]},
		{"opaque Ed25519 signer", strings.NewReader("x"), opaqueSigner{testKeys[EdDSA]}},
		{"read error", noSeek{io.MultiReader(strings.NewReader("x"), errReader{})}, testKeys[ES256]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			jws, err := Sign(tc.payload, tc.key, "")
			if err == nil || jws != nil {
				t.Fatalf("Sign = %q, %v; want an error", jws, err)
			}
			if !strings.HasPrefix(err.Error(), "jws: sign: ") {
				t.Errorf("error %q lacks the context prefix", err)
			}
		})
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("i/o error") }

// opaqueSigner hides the concrete key type, like a hardware key would.
type opaqueSigner struct{ crypto.Signer }

func TestSignOpaqueECDSASigner(t *testing.T) {
	key := opaqueSigner{testKeys[ES256]}
	jws, err := Sign(strings.NewReader("hsm"), key, "")
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if _, err := Verify(jws, strings.NewReader("hsm"), trusted(t, testKeys[ES256])); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestVerifyRejectsTamperingAndWrongKeys(t *testing.T) {
	payload := testMessage(4096, 7)
	for _, alg := range []string{ES256, EdDSA} {
		key := testKeys[alg]
		jws, err := Sign(bytes.NewReader(payload), key, "")
		if err != nil {
			t.Fatal(err)
		}
		other := mustKey(t, alg)
		otherAlg := EdDSA
		if alg == EdDSA {
			otherAlg = ES256
		}
		tampered := func(i int) []byte {
			p := append([]byte(nil), payload...)
			p[i] ^= 0x01
			return p
		}
		parts := strings.Split(string(jws), ".")
		rawSig, _ := b64.DecodeString(parts[2])
		rawSig[40] ^= 0x01
		sigFlipped := []byte(parts[0] + ".." + b64.EncodeToString(rawSig))
		tests := []struct {
			name    string
			jws     []byte
			payload []byte
			keys    []PublicKey
			unknown bool // also ErrUnknownKey
		}{
			{"tampered first byte", jws, tampered(0), trusted(t, key), false},
			{"tampered last byte", jws, tampered(len(payload) - 1), trusted(t, key), false},
			{"truncated payload", jws, payload[:len(payload)-1], trusted(t, key), false},
			{"appended byte", jws, append(append([]byte(nil), payload...), 0), trusted(t, key), false},
			{"flipped signature bit", sigFlipped, payload, trusted(t, key), false},
			{"wrong key without kid", jws, payload, []PublicKey{{Key: other.Public()}}, false},
			{"wrong key under the signer's kid", jws, payload,
				[]PublicKey{{KeyID: mustThumbprint(t, key), Key: other.Public()}}, false},
			{"wrong key with its own kid", jws, payload, trusted(t, other), true},
			{"key of the other algorithm", jws, payload, []PublicKey{{Key: testKeys[otherAlg].Public()}}, true},
		}
		for _, tc := range tests {
			t.Run(alg+"/"+tc.name, func(t *testing.T) {
				h, err := Verify(tc.jws, bytes.NewReader(tc.payload), tc.keys)
				if !errors.Is(err, ErrSignatureInvalid) {
					t.Fatalf("Verify = %v; want ErrSignatureInvalid", err)
				}
				if errors.Is(err, ErrMalformed) {
					t.Errorf("error %v also claims ErrMalformed", err)
				}
				if errors.Is(err, ErrUnknownKey) != tc.unknown {
					t.Errorf("errors.Is(%v, ErrUnknownKey) = %v, want %v", err, !tc.unknown, tc.unknown)
				}
				if h != (Header{}) {
					t.Errorf("header %+v returned with an error", h)
				}
				if !strings.HasPrefix(err.Error(), "jws: ") {
					t.Errorf("error %q lacks the context prefix", err)
				}
			})
		}
	}
}

// countingReader records whether the payload was read at all.
type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) { c.reads++; return c.r.Read(p) }

func TestVerifyRejectsMalformed(t *testing.T) {
	payload := []byte(`{"bundle":true}`)
	es, ed := testKeys[ES256], testKeys[EdDSA]
	esKid := mustThumbprint(t, es)
	keys := trusted(t, es)
	good, err := Sign(bytes.NewReader(payload), es, "")
	if err != nil {
		t.Fatal(err)
	}
	goodParts := strings.Split(string(good), ".")
	hmacSig := func(protected string) string {
		// The classic confusion attack: HMAC keyed with the public key.
		pemKey, _ := MarshalPublicKeyPEM(es.Public())
		m := hmac.New(sha256.New, pemKey)
		m.Write([]byte(protected + "." + b64.EncodeToString(payload)))
		return protected + ".." + b64.EncodeToString(m.Sum(nil))
	}
	hdr := func(s string) string { return b64.EncodeToString([]byte(s)) }
	attacker := mustKey(t, ES256)
	attackerJWK := `{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}`

	tests := []struct {
		name string
		jws  string
		want error // ErrMalformed or ErrSignatureInvalid
	}{
		{"empty", "", ErrMalformed},
		{"whitespace", " \n", ErrMalformed},
		{"one part", goodParts[0], ErrMalformed},
		{"two parts", goodParts[0] + "." + goodParts[2], ErrMalformed},
		{"four parts", string(good) + ".x", ErrMalformed},
		{"non-empty payload part (attached JWS)",
			goodParts[0] + "." + b64.EncodeToString(payload) + "." + goodParts[2], ErrMalformed},
		{"alg none", hdr(`{"alg":"none"}`) + "..", ErrMalformed},
		{"alg none with kid", hdr(`{"alg":"none","kid":"`+esKid+`"}`) + "..", ErrMalformed},
		{"alg NONE", hdr(`{"alg":"NONE"}`) + "..", ErrMalformed},
		{"HS256 keyed with the public key", hmacSig(hdr(`{"alg":"HS256","kid":"` + esKid + `"}`)), ErrMalformed},
		{"HS512", hmacSig(hdr(`{"alg":"HS512"}`)), ErrMalformed},
		{"RS256", hdr(`{"alg":"RS256"}`) + ".." + goodParts[2], ErrMalformed},
		{"ES384", hdr(`{"alg":"ES384"}`) + ".." + goodParts[2], ErrMalformed},
		{"Ed25519 as alg name", hdr(`{"alg":"Ed25519"}`) + ".." + goodParts[2], ErrMalformed},
		{"lower-case es256", hdr(`{"alg":"es256"}`) + ".." + goodParts[2], ErrMalformed},
		{"missing alg", forge(t, `{"kid":"`+esKid+`"}`, es, payload), ErrMalformed},
		{"alg not a string", forge(t, `{"alg":["ES256"]}`, es, payload), ErrMalformed},
		{"kid not a string", forge(t, `{"alg":"ES256","kid":1}`, es, payload), ErrMalformed},
		{"duplicate alg", forge(t, `{"alg":"ES256","alg":"none"}`, es, payload), ErrMalformed},
		{"crit", forge(t, `{"alg":"ES256","kid":"`+esKid+`","crit":["exp"],"exp":1}`, es, payload), ErrMalformed},
		{"crit empty", forge(t, `{"alg":"ES256","crit":[]}`, es, payload), ErrMalformed},
		{"b64 false with crit", forge(t, `{"alg":"ES256","b64":false,"crit":["b64"]}`, es, payload), ErrMalformed},
		{"b64 false", forge(t, `{"alg":"ES256","b64":false}`, es, payload), ErrMalformed},
		{"b64 true", forge(t, `{"alg":"ES256","b64":true}`, es, payload), ErrMalformed},
		{"header not JSON", forge(t, `alg=ES256`, es, payload), ErrMalformed},
		{"header JSON array", forge(t, `["alg","ES256"]`, es, payload), ErrMalformed},
		{"header trailing data", forge(t, `{"alg":"ES256"}{}`, es, payload), ErrMalformed},
		{"header base64 with padding", goodParts[0] + "=.." + goodParts[2], ErrMalformed},
		{"header standard base64 alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(
			b64.EncodeToString([]byte(`{"alg":"ES256","kid":"??>"}`))) + ".." + goodParts[2], ErrMalformed},
		{"header bad base64", "!!!.." + goodParts[2], ErrMalformed},
		{"empty header", ".." + goodParts[2], ErrMalformed},
		{"signature bad base64", goodParts[0] + "..***", ErrMalformed},
		{"signature with padding", goodParts[0] + ".." + goodParts[2] + "==", ErrMalformed},
		{"signature empty", goodParts[0] + "..", ErrMalformed},
		{"signature ASN.1 sized", goodParts[0] + ".." + b64.EncodeToString(make([]byte, 71)), ErrMalformed},
		{"oversized", goodParts[0] + ".." + strings.Repeat("A", MaxSignatureSize), ErrMalformed},
		{"alg/key mismatch: EdDSA header, ES256 key", forge(t, `{"alg":"EdDSA","kid":"`+esKid+`"}`, ed, payload), ErrSignatureInvalid},
		{"alg/key mismatch: no kid", forge(t, `{"alg":"EdDSA"}`, ed, payload), ErrSignatureInvalid},
		{"embedded jwk is not trusted", forge(t, `{"alg":"ES256","kid":"`+esKid+`","jwk":`+attackerJWK+`}`, attacker, payload), ErrSignatureInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &countingReader{r: bytes.NewReader(payload)}
			h, err := Verify([]byte(tc.jws), r, keys)
			t.Log(err)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %+v, %v; want %v", h, err, tc.want)
			}
			if tc.want == ErrMalformed && errors.Is(err, ErrSignatureInvalid) {
				t.Errorf("error %v also claims ErrSignatureInvalid", err)
			}
			if tc.want == ErrMalformed && r.reads > 0 {
				t.Errorf("payload read although the JWS is malformed")
			}
		})
	}
}

func TestVerifyKeySelection(t *testing.T) {
	payload := []byte("p")
	es, ed, es2 := testKeys[ES256], testKeys[EdDSA], mustKey(t, ES256)
	withKid := func(kid string, k crypto.Signer) string {
		j, err := Sign(bytes.NewReader(payload), k, kid)
		if err != nil {
			t.Fatal(err)
		}
		return string(j)
	}
	noKid := func(k crypto.Signer) string {
		alg, _ := Algorithm(k)
		return forge(t, `{"alg":"`+alg+`","typ":"JOSE"}`, k, payload)
	}
	pk := func(kid string, k crypto.Signer) PublicKey { return PublicKey{KeyID: kid, Key: k.Public()} }
	rsaLike := PublicKey{KeyID: "odd", Key: []byte("not a key")}

	tests := []struct {
		name    string
		jws     string
		keys    []PublicKey
		wantErr error // nil: success; errAny: some error
	}{
		{"kid selects among several", withKid("b", es), []PublicKey{pk("a", ed), pk("b", es), pk("c", es2)}, nil},
		{"kid selects a private key entry", withKid("a", ed), []PublicKey{{KeyID: "a", Key: ed}}, nil},
		{"kid not in key set", withKid("zz", es), []PublicKey{pk("a", es)}, ErrUnknownKey},
		{"kid not in mixed key set", withKid("zz", es), []PublicKey{pk("", es), pk("a", es2)}, ErrUnknownKey},
		{"kid names the wrong key", withKid("c", es), []PublicKey{pk("b", es), pk("c", es2)}, ErrSignatureInvalid},
		{"kid ignored by a key set without ids", withKid("whatever", es), []PublicKey{pk("", es)}, nil},
		{"key set without ids, chosen by alg", withKid("x", ed), []PublicKey{pk("", es), pk("", ed)}, nil},
		{"key set without ids, ambiguous", withKid("x", es), []PublicKey{pk("", es), pk("", es2)}, errAny},
		{"no kid, one key with an id", noKid(es), []PublicKey{pk("a", es)}, nil},
		{"no kid, chosen by alg", noKid(ed), []PublicKey{pk("a", es), pk("b", ed)}, nil},
		{"no kid, ambiguous", noKid(es), []PublicKey{pk("a", es), pk("b", es2)}, errAny},
		{"duplicate kids", withKid("a", es), []PublicKey{pk("a", es), pk("a", es2)}, errAny},
		{"duplicate kids, distinct algs", withKid("a", es), []PublicKey{pk("a", ed), pk("a", es)}, nil},
		{"empty key set", withKid("a", es), nil, errAny},
		{"unsupported key in set", withKid("a", es), []PublicKey{pk("a", es), rsaLike}, errAny},
		{"nil key in set", withKid("a", es), []PublicKey{{KeyID: "a"}}, errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify([]byte(tc.jws), bytes.NewReader(payload), tc.keys)
			t.Log(err)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Verify: %v", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("Verify = %v; want %v", err, tc.wantErr)
			}
			if errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrSignatureInvalid) {
				t.Errorf("ErrUnknownKey without ErrSignatureInvalid: %v", err)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestVerifyPropagatesReadError(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			jws, err := Sign(strings.NewReader("x"), testKeys[alg], "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = Verify(jws, errReader{}, trusted(t, testKeys[alg]))
			if err == nil || errors.Is(err, ErrSignatureInvalid) || errors.Is(err, ErrMalformed) {
				t.Fatalf("Verify with failing reader = %v; want a read error, not a verdict", err)
			}
		})
	}
}
