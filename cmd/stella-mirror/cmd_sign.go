package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/internal/atomicfile"

	"github.com/stella-ops/stella-mirror/internal/ctxio"
)

func runSign(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sign", "--key PRIV.pem [--kid ID] [--out FILE.jws] FILE",
		`Write a detached JWS (RFC 7515 appendix F) over FILE, by default to
FILE.jws: BASE64URL(header)..BASE64URL(signature), with the standard
base64url signing input, so any JOSE library verifies it once FILE is
reattached. The algorithm follows the key: ES256 for an ECDSA P-256 key,
EdDSA for an Ed25519 key (PEM: PKCS#8 "PRIVATE KEY" or SEC 1 "EC PRIVATE
KEY"). FILE is streamed, so it may be of any size; the JWS is written
atomically. Prints the JWS path, algorithm and key id.

Example:
  stella-mirror keygen --alg ES256 --out signing
  stella-mirror sign --key signing.key.pem mirror/primary/bundle.json
  stella-mirror verify --public-key signing.pub.pem mirror/primary/bundle.json`, stderr)
	keyPath := fs.String("key", "", "private key `PEM` file (required)")
	kid := fs.String("kid", "", "key `id` for the JWS header (default: the key's RFC 7638 thumbprint)")
	out := fs.String("out", "", "`path` of the JWS to write (default: FILE.jws)")
	file, err := parseFileArg(fs, args)
	if err != nil {
		return err
	}
	if *keyPath == "" {
		return usageError(fs, "--key is required")
	}
	if *out == "" {
		*out = file + ".jws"
	}
	if sameFile(file, *out) {
		return usageError(fs, fmt.Sprintf("--out %s would overwrite the file being signed", *out))
	}

	key, err := jws.LoadPrivateKeyPEM(*keyPath)
	if err != nil {
		return err
	}
	if *kid == "" {
		if *kid, err = jws.Thumbprint(key.Public()); err != nil {
			return err
		}
	}
	alg, err := jws.Algorithm(key)
	if err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sig, err := jws.Sign(ctxio.ReadSeeker{Ctx: ctx, RS: f}, key, *kid)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := atomicfile.WriteFile(*out, sig, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (alg=%s, kid=%s)\n", *out, alg, *kid)
	return nil
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", "--public-key PUB.pem [--public-key PUB2.pem ...] [--kid ID] [--sig FILE.jws] FILE",
		`Verify the detached JWS FILE.jws (or --sig) over FILE against the trusted
public keys. Only ES256 and EdDSA are accepted; alg "none", HMAC, crit and b64
headers, attached payloads and keys embedded in the JWS are rejected. Each key
is known by its RFC 7638 thumbprint, which is the kid sign writes by default;
the JWS kid must name one of them. FILE is streamed, so it may be of any size.
Prints "OK: FILE verified (alg=..., kid=...)"; exits 1 if the signature does
not verify.

Example:
  stella-mirror verify --public-key signing.pub.pem mirror/primary/bundle.json
  stella-mirror verify --public-key old.pub.pem --public-key new.pub.pem \
      --sig bundle.json.jws bundle.json
  stella-mirror verify --public-key prod.pub.pem --kid prod-2026 bundle.json`, stderr)
	var pubPaths stringList
	fs.Var(&pubPaths, "public-key", "trusted public key `PEM` file (SPKI, certificate or private key); repeat to trust several (required)")
	kid := fs.String("kid", "", "key `id` for the single --public-key, when sign was given --kid (default: its thumbprint)")
	sigPath := fs.String("sig", "", "detached JWS `path` (default: FILE.jws)")
	file, err := parseFileArg(fs, args)
	if err != nil {
		return err
	}
	if len(pubPaths) == 0 {
		return usageError(fs, "--public-key is required")
	}
	if *kid != "" && len(pubPaths) != 1 {
		return usageError(fs, "--kid names the key of a single --public-key; without it each key is known by its thumbprint")
	}
	if *sigPath == "" {
		*sigPath = file + ".jws"
	}

	keys := make([]jws.PublicKey, 0, len(pubPaths))
	for _, p := range pubPaths {
		pub, err := jws.LoadPublicKeyPEM(p)
		if err != nil {
			return err
		}
		id := *kid
		if id == "" {
			if id, err = jws.Thumbprint(pub); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		keys = append(keys, jws.PublicKey{KeyID: id, Key: pub})
	}
	sig, err := readAtMost(*sigPath, jws.MaxSignatureSize+1) // Verify rejects anything longer
	if err != nil {
		return fmt.Errorf("%s: not verified: %w", file, err)
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr, err := jws.Verify(sig, ctxio.Reader{Ctx: ctx, R: f}, keys)
	if err != nil {
		return fmt.Errorf("%s: not verified with %s: %w", file, *sigPath, err)
	}
	fmt.Fprintf(stdout, "OK: %s verified (alg=%s, kid=%s)\n", file, hdr.Alg, hdr.Kid)
	return nil
}

func runKeygen(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", "[--alg ES256|EdDSA] --out PREFIX [--force]",
		`Create a signing key pair for sign and fixture: PREFIX.key.pem, the
private key (unencrypted PKCS#8, mode 0600: keep it secret), and
PREFIX.pub.pem, the public key (SPKI) to give to verifiers. Prints the key id
(the RFC 7638 thumbprint, which sign uses as kid by default). Existing files
are not overwritten unless --force is given.

Example:
  stella-mirror keygen --alg EdDSA --out keys/mirror-2026
  # writes keys/mirror-2026.key.pem and keys/mirror-2026.pub.pem`, stderr)
	alg := fs.String("alg", jws.ES256, "signature `algorithm`: ES256 (ECDSA P-256) or EdDSA (Ed25519)")
	out := fs.String("out", "", "path `prefix` of the key files (required)")
	force := fs.Bool("force", false, "replace existing key files")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usageError(fs, "--out is required")
	}
	if *alg != jws.ES256 && *alg != jws.EdDSA {
		return usageError(fs, fmt.Sprintf("--alg %q: want ES256 or EdDSA", *alg))
	}
	privPath, pubPath := *out+".key.pem", *out+".pub.pem"
	if !*force {
		for _, p := range []string{privPath, pubPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s already exists; use --force to replace it", p)
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}

	key, err := jws.GenerateKey(*alg)
	if err != nil {
		return err
	}
	privPEM, err := jws.MarshalPrivateKeyPEM(key)
	if err != nil {
		return err
	}
	pubPEM, err := jws.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		return err
	}
	kid, err := jws.Thumbprint(key.Public())
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(privPath, privPEM, 0o600); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(pubPath, pubPEM, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "private key: %s (keep it secret)\npublic key:  %s\nalg: %s\nkid: %s\n", privPath, pubPath, *alg, kid)
	return nil
}

// parseFileArg parses flags and exactly one FILE argument, which may come
// before, between or after the flags.
func parseFileArg(fs *flag.FlagSet, args []string) (string, error) {
	if err := parseFlagsOnly(fs, args); err != nil {
		return "", err
	}
	if fs.NArg() == 0 {
		return "", usageError(fs, "missing FILE")
	}
	file := fs.Arg(0)
	if rest := fs.Args()[1:]; len(rest) > 0 {
		if err := parseFlagsOnly(fs, rest); err != nil {
			return "", err
		}
		if fs.NArg() > 0 {
			return "", usageError(fs, fmt.Sprintf("unexpected argument %q (one FILE at a time)", fs.Arg(0)))
		}
	}
	return file, nil
}

// parseFlagsOnly is fs.Parse with parseFlags' error mapping, leaving
// positional arguments to the caller.
func parseFlagsOnly(fs *flag.FlagSet, args []string) error {
	if err := parseRouted(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// usageError prints msg and the command's usage, and returns errUsage.
func usageError(fs *flag.FlagSet, msg string) error {
	fmt.Fprintf(fs.Output(), "stella-mirror %s: %s\n\n", fs.Name(), msg)
	fs.Usage()
	return errUsage
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ", ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// sameFile reports whether a and b name the same file (by path, or by
// identity when both exist).
func sameFile(a, b string) bool {
	if absA, errA := filepath.Abs(a); errA == nil {
		if absB, errB := filepath.Abs(b); errB == nil && absA == absB {
			return true
		}
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// readAtMost reads up to limit bytes of the file at path.
func readAtMost(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}
