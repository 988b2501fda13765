// Package jws signs and verifies files with detached JSON Web Signatures
// (RFC 7515 appendix F): the compact serialization with an empty payload part,
// BASE64URL(header) + ".." + BASE64URL(signature), stored next to the file it
// signs (for example bundle.json and bundle.json.jws).
//
// The signing input is the standard one (b64 is never used):
// BASE64URL(protected header) || "." || BASE64URL(payload bytes), so any JOSE
// library can verify the signature after reattaching the payload. The
// protected header is {"alg":...,"kid":...,"typ":"JOSE"}.
//
// Two algorithms exist, and verification accepts nothing else:
//
//   - ES256: ECDSA P-256 with SHA-256, the signature being the fixed 64-byte
//     R||S of RFC 7518 section 3.4 (not ASN.1).
//   - EdDSA: pure Ed25519 (RFC 8037, RFC 8032; not Ed25519ph).
//
// Memory use does not depend on the file size: the payload is streamed
// through a base64url encoder into the hash. ES256 reads the payload once.
// Ed25519 signing needs the message twice (RFC 8032 derives the nonce from
// it before hashing it again), so Sign reads an io.ReadSeeker in two passes
// and refuses to release a signature if the payload changed between them;
// Ed25519 verification reads it once. The streaming Ed25519 produces exactly
// the bytes crypto/ed25519.Sign would.
//
// Verification is deliberately strict: it accepts only ES256 and EdDSA
// (never "none" or HMAC), rejects any "crit" or "b64" header, an attached
// payload, a key whose type does not match alg and a kid the trusted key set
// does not contain. Keys embedded in the JWS (jwk, x5c, jku, x5u) are ignored:
// trust comes only from the keys the caller passes. ErrSignatureInvalid tells
// "tampered or signed by someone else" apart from ErrMalformed ("not a JWS we
// accept").
//
// Keys are PEM files: PKCS#8 or SEC 1 private keys, SPKI public keys or
// certificates. The default key id is the RFC 7638 JWK thumbprint.
//
// What it is not: a general JOSE library. It does not produce or read the JSON
// serializations, multiple signatures, unencoded (b64=false) payloads, JWE or
// JWT claims, and it does not fetch keys or decide which keys to trust.
package jws
