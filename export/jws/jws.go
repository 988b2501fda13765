package jws

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"
)

// Algorithm names (the JWS "alg" header values) that Sign produces and Verify
// accepts. No other algorithm is ever accepted.
const (
	// ES256 is ECDSA on P-256 with SHA-256; the signature is R||S, 64 bytes.
	ES256 = "ES256"
	// EdDSA is pure Ed25519 (RFC 8037).
	EdDSA = "EdDSA"
)

// typJOSE is the "typ" header Sign writes: a compact-serialized JWS.
const typJOSE = "JOSE"

// MaxSignatureSize bounds the size of a detached JWS that Verify and
// VerifyFile accept. Real ones are a few hundred bytes.
const MaxSignatureSize = 64 << 10

var b64 = base64.RawURLEncoding

// Errors that callers can test for with errors.Is.
var (
	// ErrSignatureInvalid means the JWS is well formed but does not prove
	// that a trusted key signed this payload: the payload or the signature
	// was altered, or another key made it.
	ErrSignatureInvalid = errors.New("signature invalid")

	// ErrUnknownKey means no key of the trusted set can have made the
	// signature (its kid is not in the set, or alg does not fit the key).
	// Errors wrapping it also wrap ErrSignatureInvalid.
	ErrUnknownKey = errors.New("no trusted key")

	// ErrMalformed means the input is not a detached compact JWS this
	// package accepts: bad syntax, an algorithm other than ES256 or EdDSA,
	// a crit or b64 header, or an attached payload.
	ErrMalformed = errors.New("malformed signature")
)

// Header is the protected header of a JWS.
type Header struct {
	// Alg is the algorithm: ES256 or EdDSA.
	Alg string `json:"alg"`
	// Kid identifies the signing key; Sign defaults it to the key's
	// RFC 7638 thumbprint.
	Kid string `json:"kid,omitempty"`
	// Typ is the media type of the JWS; Sign writes "JOSE".
	Typ string `json:"typ,omitempty"`
}

// PublicKey is a trusted verification key.
type PublicKey struct {
	// KeyID is matched against the JWS "kid" header. It may be empty; see
	// Verify for how keys are chosen.
	KeyID string
	// Key is an *ecdsa.PublicKey on P-256 or an ed25519.PublicKey (a
	// private key of those types is accepted too and its public half used).
	Key crypto.PublicKey
}

// Sign returns a detached compact JWS over the bytes from payload's current
// position to EOF, without a trailing newline.
//
// key is an *ecdsa.PrivateKey on P-256 (or any crypto.Signer with such a
// public key, e.g. a hardware key), giving ES256, or an ed25519.PrivateKey,
// giving EdDSA. kid is the key id written into the header; if empty, the
// RFC 7638 thumbprint of the public key is used.
//
// Memory use is bounded whatever the payload size. ES256 reads payload once;
// EdDSA reads it twice, seeking back in between, and fails rather than sign
// if the bytes differ between the two passes.
func Sign(payload io.ReadSeeker, key crypto.Signer, kid string) ([]byte, error) {
	jws, err := sign(payload, key, kid)
	if err != nil {
		return nil, fmt.Errorf("jws: sign: %w", err)
	}
	return jws, nil
}

// SignFile is Sign over the content of the file at path.
func SignFile(path string, key crypto.Signer, kid string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("jws: sign: %w", err)
	}
	defer f.Close()
	jws, err := sign(f, key, kid)
	if err != nil {
		return nil, fmt.Errorf("jws: sign %s: %w", path, err)
	}
	return jws, nil
}

func sign(payload io.ReadSeeker, key crypto.Signer, kid string) ([]byte, error) {
	if key == nil {
		return nil, errors.New("no signing key")
	}
	_, alg, err := normalizePublic(key)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		if kid, err = Thumbprint(key.Public()); err != nil {
			return nil, err
		}
	}
	hdr, err := json.Marshal(Header{Alg: alg, Kid: kid, Typ: typJOSE})
	if err != nil {
		return nil, err
	}
	protected := b64.EncodeToString(hdr)

	var sig []byte
	switch alg {
	case ES256:
		sig, err = signES256(key, protected, payload)
	case EdDSA:
		priv, ok := key.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("EdDSA signing needs an ed25519.PrivateKey, not %T: streaming Ed25519 needs the seed", key)
		}
		sig, err = signEd25519Stream(priv, seekingSigningInput(protected, payload))
	}
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(protected)+2+b64.EncodedLen(len(sig)))
	out = append(out, protected...)
	out = append(out, '.', '.')
	return b64.AppendEncode(out, sig), nil
}

// writeSigningInput writes the JWS signing input,
// protected || '.' || BASE64URL(payload), streaming the payload.
func writeSigningInput(w io.Writer, protected string, payload io.Reader) error {
	if _, err := io.WriteString(w, protected+"."); err != nil {
		return err
	}
	enc := base64.NewEncoder(b64, w)
	if _, err := io.Copy(enc, payload); err != nil {
		return fmt.Errorf("read payload: %w", err)
	}
	return enc.Close()
}

// seekingSigningInput returns a message writer for the two-pass Ed25519
// signer: every call after the first seeks payload back to where it was on
// the first call.
func seekingSigningInput(protected string, payload io.ReadSeeker) func(io.Writer) error {
	var start int64
	calls := 0
	return func(w io.Writer) error {
		var err error
		if calls == 0 {
			start, err = payload.Seek(0, io.SeekCurrent)
		} else {
			_, err = payload.Seek(start, io.SeekStart)
		}
		calls++
		if err != nil {
			return fmt.Errorf("EdDSA reads the payload twice and it cannot seek: %w", err)
		}
		return writeSigningInput(w, protected, payload)
	}
}

func signES256(key crypto.Signer, protected string, payload io.Reader) ([]byte, error) {
	h := sha256.New()
	if err := writeSigningInput(h, protected, payload); err != nil {
		return nil, err
	}
	der, err := key.Sign(rand.Reader, h.Sum(nil), crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("ES256: %w", err)
	}
	// crypto.Signer returns ASN.1 DER; JWS wants fixed-size R||S.
	var rs struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &rs)
	if err != nil || len(rest) != 0 || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 ||
		rs.R.BitLen() > 256 || rs.S.BitLen() > 256 {
		return nil, errors.New("ES256: signer returned a malformed ECDSA signature")
	}
	sig := make([]byte, 64)
	rs.R.FillBytes(sig[:32])
	rs.S.FillBytes(sig[32:])
	return sig, nil
}

// Verify checks a detached compact JWS (sig) over payload, read once to EOF,
// against the trusted keys, and returns its protected header.
//
// The key is chosen by the JWS kid: if any key has a KeyID, a kid that none
// of them carries is rejected. A JWS without kid, or a key set without ids,
// needs exactly one key (of the JWS's algorithm) to be a candidate. alg must
// be ES256 or EdDSA and fit the key's type.
//
// Errors wrap ErrSignatureInvalid when the signature does not prove that a
// trusted key signed these bytes, and ErrMalformed when sig is not a JWS this
// package accepts. On error the Header is zero.
func Verify(sig []byte, payload io.Reader, keys []PublicKey) (Header, error) {
	h, err := verify(sig, payload, keys)
	if err != nil {
		return Header{}, fmt.Errorf("jws: %w", err)
	}
	return h, nil
}

// VerifyFile is Verify with the JWS read from sigPath and the payload from
// payloadPath. Errors name the payload file.
func VerifyFile(sigPath, payloadPath string, keys []PublicKey) (Header, error) {
	sig, err := readLimited(sigPath, MaxSignatureSize)
	if err != nil {
		return Header{}, fmt.Errorf("jws: verify %s: read signature: %w", payloadPath, err)
	}
	f, err := os.Open(payloadPath)
	if err != nil {
		return Header{}, fmt.Errorf("jws: verify: %w", err)
	}
	defer f.Close()
	h, err := verify(sig, f, keys)
	if err != nil {
		return Header{}, fmt.Errorf("jws: verify %s against %s: %w", payloadPath, sigPath, err)
	}
	return h, nil
}

func verify(sig []byte, payload io.Reader, keys []PublicKey) (Header, error) {
	hdr, protected, rawSig, err := parseCompact(sig)
	if err != nil {
		return Header{}, err
	}
	key, err := selectKey(hdr, keys)
	if err != nil {
		return Header{}, err
	}
	pub, _, _ := normalizePublic(key.Key) // selectKey checked it
	if len(rawSig) != 64 {
		return Header{}, fmt.Errorf("%w: %s signature is %d bytes, want 64", ErrMalformed, hdr.Alg, len(rawSig))
	}
	var ok bool
	switch hdr.Alg {
	case ES256:
		h := sha256.New()
		if err := writeSigningInput(h, protected, payload); err != nil {
			return Header{}, err
		}
		r := new(big.Int).SetBytes(rawSig[:32])
		s := new(big.Int).SetBytes(rawSig[32:])
		ok = ecdsa.Verify(pub.(*ecdsa.PublicKey), h.Sum(nil), r, s)
	case EdDSA:
		ok, err = verifyEd25519Stream(pub.(ed25519.PublicKey), rawSig, func(w io.Writer) error {
			return writeSigningInput(w, protected, payload)
		})
		if err != nil {
			return Header{}, err
		}
	}
	if !ok {
		return Header{}, fmt.Errorf("%w: payload or signature altered, or signed by another key (alg=%s, key %s)",
			ErrSignatureInvalid, hdr.Alg, keyName(key))
	}
	return hdr, nil
}

func keyName(k PublicKey) string {
	if k.KeyID != "" {
		return fmt.Sprintf("kid=%q", k.KeyID)
	}
	if tp, err := Thumbprint(k.Key); err == nil {
		return "with thumbprint " + tp
	}
	return "without kid"
}

// parseCompact splits and decodes a detached compact JWS, enforcing the
// header policy.
func parseCompact(sig []byte) (hdr Header, protected string, rawSig []byte, err error) {
	if len(sig) > MaxSignatureSize {
		return Header{}, "", nil, fmt.Errorf("%w: %d bytes, more than the %d a detached JWS can need", ErrMalformed, len(sig), MaxSignatureSize)
	}
	parts := strings.Split(string(bytes.Trim(sig, " \t\r\n")), ".")
	if len(parts) != 3 {
		return Header{}, "", nil, fmt.Errorf("%w: %d dot-separated parts, want 3 (header..signature)", ErrMalformed, len(parts))
	}
	if parts[1] != "" {
		return Header{}, "", nil, fmt.Errorf("%w: payload part is not empty: not a detached JWS", ErrMalformed)
	}
	if parts[0] == "" {
		return Header{}, "", nil, fmt.Errorf("%w: empty header", ErrMalformed)
	}
	hdrJSON, err := b64.Strict().DecodeString(parts[0])
	if err != nil {
		return Header{}, "", nil, fmt.Errorf("%w: header is not base64url: %v", ErrMalformed, err)
	}
	rawSig, err = b64.Strict().DecodeString(parts[2])
	if err != nil {
		return Header{}, "", nil, fmt.Errorf("%w: signature is not base64url: %v", ErrMalformed, err)
	}
	hdr, err = parseHeader(hdrJSON)
	if err != nil {
		return Header{}, "", nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	return hdr, parts[0], rawSig, nil
}

// parseHeader decodes the protected header, rejecting duplicate members,
// any crit or b64 member, and algorithms other than ES256 and EdDSA. Other
// members (including embedded keys) are ignored.
func parseHeader(data []byte) (Header, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return Header{}, errors.New("not a JSON object")
	}
	var h Header
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Header{}, fmt.Errorf("bad JSON: %w", err)
		}
		name, _ := tok.(string)
		if seen[name] {
			return Header{}, fmt.Errorf("duplicate member %q", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return Header{}, fmt.Errorf("bad JSON: %w", err)
		}
		var dst *string
		switch name {
		case "alg":
			dst = &h.Alg
		case "kid":
			dst = &h.Kid
		case "typ":
			dst = &h.Typ
		case "crit":
			return Header{}, fmt.Errorf("crit %s: no header extension is supported", raw)
		case "b64":
			return Header{}, errors.New("b64 present: only the standard base64url-encoded payload is accepted")
		default:
			continue
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return Header{}, fmt.Errorf("%s is not a string", name)
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return Header{}, errors.New("bad JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return Header{}, errors.New("data after the JSON object")
	}
	switch h.Alg {
	case ES256, EdDSA:
	case "":
		return Header{}, errors.New("no alg")
	default:
		return Header{}, fmt.Errorf("alg %q is not accepted (want ES256 or EdDSA)", h.Alg)
	}
	return h, nil
}

// selectKey picks the trusted key for a JWS header; see Verify.
func selectKey(hdr Header, keys []PublicKey) (PublicKey, error) {
	if len(keys) == 0 {
		return PublicKey{}, errors.New("no verification keys given")
	}
	for _, k := range keys {
		if _, _, err := normalizePublic(k.Key); err != nil {
			return PublicKey{}, fmt.Errorf("verification key %q: %w", k.KeyID, err)
		}
	}
	cands := keys
	if hdr.Kid != "" && hasKeyIDs(keys) {
		cands = nil
		for _, k := range keys {
			if k.KeyID == hdr.Kid {
				cands = append(cands, k)
			}
		}
		if len(cands) == 0 {
			return PublicKey{}, fmt.Errorf("%w: %w: kid %q is not in the key set", ErrSignatureInvalid, ErrUnknownKey, hdr.Kid)
		}
	}
	if len(cands) > 1 {
		var fit []PublicKey
		for _, k := range cands {
			if _, alg, _ := normalizePublic(k.Key); alg == hdr.Alg {
				fit = append(fit, k)
			}
		}
		switch len(fit) {
		case 0:
			return PublicKey{}, fmt.Errorf("%w: %w: no %s key for kid %q", ErrSignatureInvalid, ErrUnknownKey, hdr.Alg, hdr.Kid)
		case 1:
		default:
			why := fmt.Sprintf("its kid %q does not tell them apart", hdr.Kid)
			if hdr.Kid == "" {
				why = "it has no kid"
			}
			return PublicKey{}, fmt.Errorf("%d trusted %s keys could have made this signature and %s; give each key a distinct id", len(fit), hdr.Alg, why)
		}
		cands = fit
	}
	key := cands[0]
	if _, alg, _ := normalizePublic(key.Key); alg != hdr.Alg {
		return PublicKey{}, fmt.Errorf("%w: %w: alg %s does not fit key %s, an %s key", ErrSignatureInvalid, ErrUnknownKey, hdr.Alg, keyName(key), alg)
	}
	return key, nil
}

func hasKeyIDs(keys []PublicKey) bool {
	for _, k := range keys {
		if k.KeyID != "" {
			return true
		}
	}
	return false
}

// readLimited reads a small file, failing if it is larger than limit.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}
