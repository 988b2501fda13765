package jws

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"filippo.io/edwards25519"
)

// writeBytes returns a writeMsg callback for a message held in memory.
func writeBytes(msg []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(msg)
		return err
	}
}

func testMessage(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	msg := make([]byte, n)
	for i := range msg {
		msg[i] = byte(r.Uint32())
	}
	return msg
}

// TestEd25519StreamMatchesStdlib is the proof that the streaming signer is
// pure Ed25519: byte-identical to crypto/ed25519.Sign, accepted by
// crypto/ed25519.Verify, and our verifier accepts the stdlib's signatures.
func TestEd25519StreamMatchesStdlib(t *testing.T) {
	sizes := []int{0, 1, 63, 64, 65, 1000, 1<<20 + 7}
	for keyNo := range 3 {
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[31] = byte(keyNo), 0xA5
		priv := ed25519.NewKeyFromSeed(seed)
		pub := priv.Public().(ed25519.PublicKey)
		for _, n := range sizes {
			t.Run(fmt.Sprintf("key%d/%dB", keyNo, n), func(t *testing.T) {
				msg := testMessage(n, uint64(n+keyNo))
				want := ed25519.Sign(priv, msg)
				got, err := signEd25519Stream(priv, writeBytes(msg))
				if err != nil {
					t.Fatalf("signEd25519Stream: %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("streaming signature differs from crypto/ed25519.Sign\n got %x\nwant %x", got, want)
				}
				if !ed25519.Verify(pub, msg, got) {
					t.Fatal("crypto/ed25519.Verify rejects the streaming signature")
				}
				ok, err := verifyEd25519Stream(pub, want, writeBytes(msg))
				if err != nil || !ok {
					t.Fatalf("verifyEd25519Stream rejects a crypto/ed25519 signature: ok=%v err=%v", ok, err)
				}
			})
		}
	}
}

func TestEd25519StreamVerifyRejects(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	pub := priv.Public().(ed25519.PublicKey)
	otherPub := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32)).Public().(ed25519.PublicKey)
	msg := []byte("the message")
	sig := ed25519.Sign(priv, msg)

	// S + L is the same scalar mod L but non-canonical; RFC 8032 requires
	// rejecting it (signature malleability).
	nonCanonical := append([]byte(nil), sig...)
	l, _ := edwards25519.NewScalar().SetCanonicalBytes(sig[32:])
	copy(nonCanonical[32:], addL(l.Bytes()))

	flip := func(b []byte, i int) []byte {
		c := append([]byte(nil), b...)
		c[i] ^= 1
		return c
	}
	tests := []struct {
		name string
		pub  ed25519.PublicKey
		sig  []byte
		msg  []byte
	}{
		{"tampered message", pub, sig, []byte("the messagE")},
		{"truncated message", pub, sig, msg[:len(msg)-1]},
		{"other key", otherPub, sig, msg},
		{"flipped R", pub, flip(sig, 0), msg},
		{"flipped S", pub, flip(sig, 40), msg},
		{"non-canonical S", pub, nonCanonical, msg},
		{"short signature", pub, sig[:63], msg},
		{"short key", pub[:31], sig, msg},
		{"invalid point", ed25519.PublicKey(bytes.Repeat([]byte{0xff}, 32)), sig, msg},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// crypto/ed25519 panics on a short key; only ask it about the rest.
			if len(tc.pub) == ed25519.PublicKeySize && ed25519.Verify(tc.pub, tc.msg, tc.sig) {
				t.Fatal("test case is wrong: crypto/ed25519 accepts it")
			}
			ok, err := verifyEd25519Stream(tc.pub, tc.sig, writeBytes(tc.msg))
			if err != nil || ok {
				t.Fatalf("verifyEd25519Stream = %v, %v; want false, nil", ok, err)
			}
		})
	}
}

// addL returns the little-endian 32-byte encoding of s + L (s < 2^253 - L so
// it fits).
func addL(s []byte) []byte {
	L := []byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	out := make([]byte, 32)
	carry := 0
	for i := range 32 {
		v := int(s[i]) + int(L[i]) + carry
		out[i], carry = byte(v), v>>8
	}
	return out
}

func TestEd25519StreamSignRefusesChangedMessage(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	calls := 0
	write := func(w io.Writer) error {
		calls++
		_, err := fmt.Fprintf(w, "version %d", calls) // differs per pass
		return err
	}
	sig, err := signEd25519Stream(priv, write)
	if !errors.Is(err, errMessageChanged) || sig != nil {
		t.Fatalf("signEd25519Stream = %x, %v; want nil, errMessageChanged", sig, err)
	}
}

func TestEd25519StreamSignRejectsCorruptKey(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{10}, 32))
	corrupt := append(append(ed25519.PrivateKey{}, priv.Seed()...), other[32:]...)
	if _, err := signEd25519Stream(corrupt, writeBytes([]byte("m"))); err == nil {
		t.Fatal("signed with a private key whose public half does not match its seed")
	}
	if _, err := signEd25519Stream(priv[:63], writeBytes([]byte("m"))); err == nil {
		t.Fatal("signed with a short private key")
	}
}

func TestEd25519StreamPropagatesReadError(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	boom := errors.New("disk on fire")
	fail := func(io.Writer) error { return boom }
	if _, err := signEd25519Stream(priv, fail); !errors.Is(err, boom) {
		t.Errorf("sign error = %v, want %v", err, boom)
	}
	sig := ed25519.Sign(priv, nil)
	if _, err := verifyEd25519Stream(priv.Public().(ed25519.PublicKey), sig, fail); !errors.Is(err, boom) {
		t.Errorf("verify error = %v, want %v", err, boom)
	}
}

// TestEd25519Expansion pins the RFC 8032 key expansion against the stdlib:
// the clamped scalar times B is the public key.
func TestEd25519Expansion(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	h := sha512.Sum512(priv.Seed())
	s, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		t.Fatal(err)
	}
	if got := new(edwards25519.Point).ScalarBaseMult(s).Bytes(); !bytes.Equal(got, priv[32:]) {
		t.Fatalf("[s]B = %x, want public key %x", got, priv[32:])
	}
}
