package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
)

// sizeFlag is a byte-size flag value parsed by fixture.ParseSize.
type sizeFlag int64

// String renders the size the way --help shows defaults, e.g. "4MiB".
func (s *sizeFlag) String() string {
	if s == nil {
		return "0"
	}
	return strings.ReplaceAll(fixture.FormatSize(int64(*s)), " ", "")
}

func (s *sizeFlag) Set(v string) error {
	n, err := fixture.ParseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// domainsFlag is a comma-separated list of domain ids.
type domainsFlag []string

func (d *domainsFlag) String() string { return strings.Join(*d, ",") }

func (d *domainsFlag) Set(v string) error {
	list, err := fixture.ParseDomains(v)
	if err != nil {
		return err
	}
	*d = list
	return nil
}

// timeFlag is an RFC 3339 time.
type timeFlag struct{ t time.Time }

func (t *timeFlag) String() string {
	if t == nil || t.t.IsZero() {
		return ""
	}
	return t.t.Format(time.RFC3339)
}

func (t *timeFlag) Set(v string) error {
	parsed, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return fmt.Errorf("time %q: want RFC 3339, e.g. 2026-01-01T00:00:00Z", v)
	}
	t.t = parsed
	return nil
}

func runFixture(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fixture", "--out DIR [--domains primary,community] [--bundle-size 4MiB] [--seed N] [flags]",
		`Write a complete, realistic and signed export tree into DIR: for every domain
a Concelier advisory bundle (bundle.json, its detached JWS bundle.json.jws and
manifest.json), Excititor VEX exports (an OpenVEX document and JSON-lines
statements, each signed) with their index, and the mirror index. The export
is built in DIR/.staging/<exportId> and renamed into DIR/<exportId> when
complete; DIR/latest is then swapped to it atomically.

The same --seed and flags give a byte-identical tree. Without --key the
signing key is an Ed25519 key derived from the seed (a public test key): its
public half is written to DIR/`+fixture.PublicKeyFile+` and the private half
never touches the disk. Sizes take units: 64MiB, 512KiB, 1GiB, 10MB, or bytes.

Examples:
  stella-mirror fixture --out /srv/exports --bundle-size 64MiB --seed 7
  stella-mirror fixture --out /srv/exports --key signing.key.pem --export-id 20260301T000000Z --force`, stderr)
	out := fs.String("out", "", "export root `directory` (created if missing)")
	domains := domainsFlag(fixture.DefaultDomains())
	fs.Var(&domains, "domains", "comma-separated domain `ids`")
	bundleSize := sizeFlag(fixture.DefaultBundleSize)
	fs.Var(&bundleSize, "bundle-size", "approximate `size` of each domain's bundle.json")
	vexSize := sizeFlag(fixture.DefaultVEXSize)
	fs.Var(&vexSize, "vex-size", "approximate `size` of each Excititor export")
	seed := fs.Uint64("seed", 0, "content seed; also sets the default generation time (2026-01-01T00:00:00Z + N hours) and key")
	keyPath := fs.String("key", "", "PEM private key `file` to sign with (ES256 or EdDSA); default: derived from --seed")
	kid := fs.String("kid", "", "JWS key `id` (default: the key's RFC 7638 thumbprint)")
	exportID := fs.String("export-id", "", "export directory `name` (default: the generation time as 20060102T150405Z)")
	var generatedAt timeFlag
	fs.Var(&generatedAt, "generated-at", "generation `time` (RFC 3339) written into the export (default from --seed)")
	latest := fs.Bool("latest", true, "point DIR/latest at the new export")
	force := fs.Bool("force", false, "replace DIR/<exportId> if it exists")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stderr, "stella-mirror fixture: --out is required")
		fs.Usage()
		return errUsage
	}

	opts := fixture.Options{
		Domains:     domains,
		BundleSize:  int64(bundleSize),
		VEXSize:     int64(vexSize),
		Seed:        *seed,
		KeyID:       *kid,
		ExportID:    *exportID,
		GeneratedAt: generatedAt.t,
		SetLatest:   *latest,
		Force:       *force,
	}
	if *keyPath != "" {
		key, err := jws.LoadPrivateKeyPEM(*keyPath)
		if err != nil {
			return fmt.Errorf("--key: %w", err)
		}
		opts.Key = key
	}
	// The public key already there, to say when this run replaces it (a
	// copy taken at deployment would stop verifying the new exports).
	var oldPub []byte
	if opts.Key == nil {
		oldPub, _ = os.ReadFile(filepath.Join(*out, fixture.PublicKeyFile))
	}
	start := time.Now()
	res, err := fixture.WriteContext(ctx, *out, opts)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("interrupted; nothing was published")
		}
		return err
	}
	printFixtureResult(stdout, res, *keyPath, *seed, time.Since(start))
	if oldPub != nil && res.PublicKeyPath != "" && !bytes.Equal(oldPub, res.PublicKeyPEM) {
		fmt.Fprintf(stderr, "warning: %s was replaced by a different public key (seed %d): copies of the old key "+
			"(e.g. the public key configured for sync or a deployment's secrets) no longer verify exports signed from now on; "+
			"copy the new one, or run with the seed used before; `stella-mirror validate` reports a configured key that does not verify the active export\n",
			res.PublicKeyPath, *seed)
	}
	return nil
}

func printFixtureResult(w io.Writer, res *fixture.Result, keyPath string, seed uint64, took time.Duration) {
	var b strings.Builder
	total := res.TotalBytes()
	rate := ""
	if secs := took.Seconds(); secs > 0 {
		rate = fmt.Sprintf(", %.0f MB/s", float64(total)/secs/1e6)
	}
	fmt.Fprintf(&b, "wrote export %s in %s (%d files, %s, %.1fs%s)\n",
		res.ExportID, res.Dir, len(res.Files), fixture.FormatSize(total), took.Seconds(), rate)
	for _, d := range res.Domains {
		fmt.Fprintf(&b, "  %-12s %7d advisories, bundle %s; VEX exports %s\n",
			d.ID, d.AdvisoryCount, fixture.FormatSize(d.BundleBytes), strings.Join(d.ExportKeys, ", "))
	}
	fmt.Fprintf(&b, "signing key: %s, kid %s", res.Algorithm, res.KeyID)
	if res.PublicKeyPath != "" {
		fmt.Fprintf(&b, " (test key derived from seed %d)\npublic key:  %s\n", seed, res.PublicKeyPath)
	} else {
		fmt.Fprintf(&b, " (from %s)\n", keyPath)
	}
	if res.Latest {
		fmt.Fprintf(&b, "latest:      %s -> %s\n", filepath.Join(res.Root, export.LatestLink), res.ExportID)
	}
	if res.PublicKeyPath != "" && len(res.Domains) > 0 {
		fmt.Fprintf(&b, "verify:      stella-mirror verify --public-key %s %s\n",
			res.PublicKeyPath, filepath.Join(res.Dir, filepath.FromSlash(export.BundlePath(res.Domains[0].ID))))
	}
	io.WriteString(w, b.String())
}
