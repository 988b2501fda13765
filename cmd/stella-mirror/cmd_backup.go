package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"

	"github.com/stella-ops/stella-mirror/backup"
	"github.com/stella-ops/stella-mirror/backup/profile"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/internal/buildinfo"
)

func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backup", "--config FILE... [--include PATH...] [--map FROM=TO...] --out DIR [--age-recipient KEY...] [--signing-key PRIV.pem] [--keep-daily N] [--keep-monthly N] [--dry-run]",
		`Take a hot backup of this edge mirror (no downtime) into DIR as one archive
named by the UTC time, DIR/YYYY-MM-DDTHHMMSSZ.tar.gz, or .tar.gz.age when
encrypted with age for --age-recipient / --age-recipients-file.

What is saved: every --config file (origin, gateway and sync YAML or env
files) and every file those configurations reference, found by loading them
with the components' own loaders: site certificates and keys, htpasswd files,
the Authority client secret, Authority signing keys, sync verification keys,
upstream credentials, the ACME storage folder, the sync state
(<export root>/.sync-state.json); plus every --include path (files or
folders), and with --include-exports the active export of each export root.

Each file is copied from one open descriptor (a file replaced during the
backup is saved whole, old or new) and re-copied if rewritten in place.
The tar is streamed through gzip and age straight into DIR/.partial-NAME-…
(mode 0600) and renamed when complete: nothing is written in plaintext.
Inside the archive: NAME/files/<original path>, then NAME/SHA256SUMS
(sha256sum -c format), NAME/MANIFEST.json (original path, mode, owner of
every file) and, with --signing-key, NAME/MANIFEST.sig: an Ed25519
signature over the manifest and the checksums that restore --verify-key
checks (create the key pair with stella-mirror keygen --alg EdDSA).
Secrets carry mode 0600.

SIGTERM or SIGINT stops a run within seconds: the partial archive is removed
and the exit status is 1. The partial output a killed run (SIGKILL, power
loss) leaves behind is removed by the next run into DIR, with a warning that
names it. Two runs into one DIR at once are refused.

Afterwards retention prunes DIR: the newest archive of each of the
--keep-daily most recent days and --keep-monthly most recent months that have
one is kept, the newest archive always; the removed names are printed.
Only files named like archives are ever removed.

Containers (docker compose) name paths as mounted inside them: --map
/run/secrets=/opt/stella-mirror/secrets reads /run/secrets/x from the host
folder, saves it under its host path and records the mapping, so restore
and its validation put and find it on the host.

References that cannot be followed (relative paths, ${CREDENTIALS_DIRECTORY}/…)
are reported as warnings: back up their sources with --include.
Use age X25519 recipients (age1…, from age-keygen) so the Debian age CLI can
also decrypt the archive. Restore with stella-mirror restore.

Examples:
  stella-mirror backup --config /etc/stella-mirror/origin.env \
    --config /etc/stella-mirror/gateway.yaml --config /etc/stella-mirror/sync/primary.env \
    --include /etc/stella-mirror/credentials --out /var/backups/stella-mirror \
    --age-recipients-file /etc/stella-mirror/backup-recipients.txt \
    --signing-key /etc/stella-mirror/backup-signing.key.pem
  stella-mirror backup --config compose/env/mirror.env --map /run/secrets=$PWD/secrets \
    --map /etc/stella-mirror/tls=$PWD/tls --map /srv/stella-mirror/exports=$PWD/exports \
    --out /var/backups/stella-mirror --age-recipient age1...     # a compose deployment
  stella-mirror backup --config gateway.yaml --out /tmp/b --dry-run   # list, write nothing`, stderr)
	var configs, includes, recipients stringList
	fs.Var(&configs, "config", "configuration `file` (YAML or env); repeatable")
	fs.Var(&includes, "include", "further file or folder `path` to save; repeatable")
	var maps stringList
	fs.Var(&maps, "map", "`FROM=TO`: read paths the configurations name under FROM at TO on this host (repeatable), e.g. /run/secrets=/opt/stella-mirror/secrets")
	out := fs.String("out", "", "output `folder` for archives (created 0700)")
	fs.Var(&recipients, "age-recipient", "encrypt to this age `recipient` (age1…); repeatable")
	recipientsFile := fs.String("age-recipients-file", "", "encrypt to every recipient in `file` (one per line, # comments)")
	signingKey := fs.String("signing-key", "", "sign the archive with this Ed25519 private key `PEM` (stella-mirror keygen --alg EdDSA)")
	includeExports := fs.Bool("include-exports", false, "also save the active export of each export root")
	keepDaily := fs.Int("keep-daily", backup.DefaultKeepDaily, "keep the newest archive of this many recent `days`")
	keepMonthly := fs.Int("keep-monthly", backup.DefaultKeepMonthly, "keep the newest archive of this many recent `months`")
	dryRun := fs.Bool("dry-run", false, "list what would be saved and pruned; write nothing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stderr, "stella-mirror backup: --out DIR is required")
		return errUsage
	}
	rs, err := parseRecipients(recipients, *recipientsFile)
	if err != nil {
		return err
	}
	var key ed25519.PrivateKey
	if *signingKey != "" {
		if key, err = loadBackupSigningKey(*signingKey); err != nil {
			return err
		}
	}
	var pathMap []backup.PathMapping
	for _, m := range maps {
		from, to, ok := strings.Cut(m, "=")
		if !ok || from == "" || to == "" {
			fmt.Fprintf(stderr, "stella-mirror backup: --map %q is not FROM=TO (e.g. /run/secrets=/opt/stella-mirror/secrets)\n", m)
			return errUsage
		}
		pathMap = append(pathMap, backup.PathMapping{From: from, To: to})
	}
	res, err := backup.Backup(ctx, backup.Options{
		Configs: configs, Load: profile.LoadInventory, Includes: includes, PathMap: pathMap, IncludeExports: *includeExports, OutDir: *out,
		Recipients: rs, SigningKey: key, Retention: &backup.Retention{KeepDaily: *keepDaily, KeepMonthly: *keepMonthly},
		DryRun: *dryRun, Version: buildinfo.Version(),
		Started: func(partial string) { fmt.Fprintf(stderr, "writing %s\n", partial) },
	})
	if res != nil {
		for _, s := range res.Stale {
			fmt.Fprintf(stderr, "warning: removed %s, the unfinished output of an interrupted backup\n", s)
		}
		for _, w := range res.Warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
	}
	if err != nil {
		return err
	}
	if *dryRun {
		fmt.Fprintf(stdout, "dry run: would write %s with %d entries (%d bytes of files):\n", res.Manifest.Name, len(res.Manifest.Entries), res.ContentBytes)
		for _, e := range res.Manifest.Entries {
			secret := ""
			if e.Secret {
				secret = " secret"
			}
			fmt.Fprintf(stdout, "  %-7s %s %s%s %s\n", e.Type, e.Mode, e.Kind, secret, e.Path)
		}
		for _, r := range res.Removed {
			fmt.Fprintf(stdout, "would remove %s\n", r)
		}
		return nil
	}
	enc := "not encrypted"
	if len(rs) > 0 {
		enc = fmt.Sprintf("encrypted for %d age recipient(s)", len(rs))
	}
	signed := "unsigned"
	if res.KeyID != "" {
		signed = "signed by key " + res.KeyID
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes, %s, %s): %d entries, %d bytes of files\n",
		res.Archive, res.Bytes, enc, signed, len(res.Manifest.Entries), res.ContentBytes)
	for _, r := range res.Removed {
		fmt.Fprintf(stdout, "removed %s\n", r)
	}
	return nil
}

// parseRecipients reads age recipients from flags and a recipients file.
func parseRecipients(flags []string, file string) ([]age.Recipient, error) {
	var out []age.Recipient
	for _, s := range flags {
		rs, err := age.ParseRecipients(strings.NewReader(s))
		if err != nil || len(rs) != 1 {
			return nil, fmt.Errorf("--age-recipient %q: not an age recipient (age1…)", s)
		}
		out = append(out, rs...)
	}
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--age-recipients-file: %w", err)
		}
		defer f.Close()
		rs, err := age.ParseRecipients(f)
		if err != nil {
			return nil, fmt.Errorf("--age-recipients-file %s: %w", file, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// loadIdentities reads an age identity file (age-keygen output).
func loadIdentities(file string) ([]age.Identity, error) {
	if file == "" {
		return nil, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("--identity: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("--identity %s: %w", file, err)
	}
	return ids, nil
}

// loadBackupSigningKey reads the Ed25519 private key that signs archives.
func loadBackupSigningKey(file string) (ed25519.PrivateKey, error) {
	k, err := jws.LoadPrivateKeyPEM(file)
	if err != nil {
		return nil, fmt.Errorf("--signing-key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("--signing-key %s: a %T, want an Ed25519 key (stella-mirror keygen --alg EdDSA)", file, k)
	}
	return ek, nil
}

// loadBackupVerifyKeys reads the Ed25519 public keys restore accepts.
func loadBackupVerifyKeys(files []string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for _, f := range files {
		k, err := jws.LoadPublicKeyPEM(f)
		if err != nil {
			return nil, fmt.Errorf("--verify-key: %w", err)
		}
		ek, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("--verify-key %s: a %T, want an Ed25519 public key (stella-mirror keygen --alg EdDSA)", f, k)
		}
		out = append(out, ek)
	}
	return out, nil
}
