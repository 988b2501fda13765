package jws

import (
	"crypto/ed25519"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"io"

	"filippo.io/edwards25519"
)

// Pure Ed25519 (RFC 8032 section 5.1) over a message that is streamed rather
// than held in memory. crypto/ed25519 needs the whole message as a []byte;
// these functions take a writeMsg callback that writes the message into the
// hash it is given, so the message may be many GiB.
//
// The results are exactly those of crypto/ed25519.Sign and Verify (the tests
// check this): the same deterministic signature, and the same cofactorless
// check with canonical S.

// errMessageChanged is returned when the two signing passes did not see the
// same message. Releasing S in that case could leak the private key: the
// nonce r came from one message and the challenge k from another, and two
// such signatures with the same r solve for the secret scalar.
var errMessageChanged = errors.New("payload changed while it was being signed; no signature made")

// signEd25519Stream signs the message that writeMsg writes. writeMsg is
// called twice and must write the same bytes both times.
func signEd25519Stream(priv ed25519.PrivateKey, writeMsg func(io.Writer) error) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("ed25519 private key has the wrong length")
	}
	// RFC 8032 5.1.5: h = SHA-512(seed); s = clamp(h[:32]); prefix = h[32:].
	h := sha512.Sum512(priv.Seed())
	s, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		return nil, err
	}
	prefix := h[32:]
	pub := new(edwards25519.Point).ScalarBaseMult(s).Bytes()
	// crypto/ed25519 keeps the public key in the second half of the private
	// key and would hash that; refuse a key whose halves disagree rather
	// than sign with a public key that is not ours.
	if subtle.ConstantTimeCompare(pub, priv[32:]) != 1 {
		return nil, errors.New("ed25519 private key is corrupt: its public half does not match its seed")
	}

	// Pass 1: r = SHA-512(prefix || M) mod L; R = [r]B.
	hr := sha512.New()
	hr.Write(prefix)
	if err := writeMsg(hr); err != nil {
		return nil, err
	}
	rDigest := hr.Sum(nil)
	r, err := edwards25519.NewScalar().SetUniformBytes(rDigest)
	if err != nil {
		return nil, err
	}
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()

	// Pass 2: k = SHA-512(R || A || M) mod L, recomputing SHA-512(prefix || M)
	// alongside to prove M did not change between the passes.
	hk := sha512.New()
	hk.Write(R)
	hk.Write(pub)
	hr.Reset()
	hr.Write(prefix)
	if err := writeMsg(io.MultiWriter(hk, hr)); err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(hr.Sum(nil), rDigest) != 1 {
		return nil, errMessageChanged
	}
	k, err := edwards25519.NewScalar().SetUniformBytes(hk.Sum(nil))
	if err != nil {
		return nil, err
	}

	// S = (k * s + r) mod L; signature = R || S.
	S := edwards25519.NewScalar().MultiplyAdd(k, s, r)
	sig := make([]byte, 0, ed25519.SignatureSize)
	sig = append(sig, R...)
	return append(sig, S.Bytes()...), nil
}

// verifyEd25519Stream reports whether sig is a valid Ed25519 signature by pub
// of the message that writeMsg writes (called once, and only if pub and sig
// are well formed). The error is writeMsg's.
func verifyEd25519Stream(pub ed25519.PublicKey, sig []byte, writeMsg func(io.Writer) error) (bool, error) {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false, nil
	}
	A, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return false, nil
	}
	// RFC 8032 5.1.7: S must be canonical (S < L), else malleable.
	S, err := edwards25519.NewScalar().SetCanonicalBytes(sig[32:])
	if err != nil {
		return false, nil
	}
	h := sha512.New()
	h.Write(sig[:32])
	h.Write(pub)
	if err := writeMsg(h); err != nil {
		return false, err
	}
	k, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		return false, err
	}
	// [S]B == R + [k]A, checked as in crypto/ed25519: R' = [S]B - [k]A and
	// compare encodings (which also rejects a non-canonical R).
	minusA := new(edwards25519.Point).Negate(A)
	Rc := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, minusA, S)
	return subtle.ConstantTimeCompare(sig[:32], Rc.Bytes()) == 1, nil
}
