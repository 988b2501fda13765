package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/stella-ops/stella-mirror/backup"
	"github.com/stella-ops/stella-mirror/backup/profile"
)

func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("restore", "--from ARCHIVE [--identity FILE] (--verify-key PUB.pem... | --allow-unsigned) (--to ROOT | --drill) [--force] [--dry-run]",
		`Restore an archive written by stella-mirror backup: decrypt it (--identity,
an age identity file from age-keygen), check every checksum and the
archive's signature against --verify-key before anything is written, refuse
to overwrite existing files (--force overwrites), write each file to ROOT +
its original path with its original mode (and owner, when run as root), then
run stella-mirror validate on the restored profile (its paths mapped onto
ROOT in memory) and print the verification checklist (health, budgets,
export active, certificate expiry). An archive without exports validates
with a warning to run sync.
Nothing but the saved files is written or rewritten. --to / puts files back
where they were.

Restore rules (age encrypts, it does not authenticate: anyone who can write
to the backup folder can make an archive for the public recipient):
  - the signature (MANIFEST.sig, Ed25519 over the manifest and every
    file's digest) must verify against one --verify-key (repeat the flag
    during a key rotation); an unsigned archive, or a signed one without
    --verify-key, is refused unless --allow-unsigned is given;
  - every write goes through an os.Root: no path or symlink leaves ROOT;
    symlink targets must be relative plain names, never chains or "..";
  - every entry must be a configuration file of the archive or a path the
    restored configurations reference (or inside a referenced folder: the
    ACME storage, an export root with its sync state and export); entries
    under --include paths only from a signed archive;
  - secrets and private keys are written 0640 or stricter whatever the
    manifest says; no set-id bits;
  - when a rule, the validation or the drill fails, everything the restore
    wrote is removed and the files it replaced are put back.

--drill is the quarterly restore drill in one command: it restores into a
fresh temporary folder (or into an empty --to), validates the profile, starts
the restored gateway on loopback and checks that every site presents its
certificate and asks for credentials, prints the checklist and removes the
folder (--keep keeps it). Exit status 0 means the archive is restorable.

Errors name the problem: a wrong identity, a damaged age header, a corrupted
archive (decryption, gzip and its trailer, or which file fails its
checksum), a bad or missing signature, a path no configuration references,
a missing file, existing files.

Examples:
  stella-mirror restore --from /var/backups/stella-mirror/2026-11-30T020000Z.tar.gz.age \
    --identity /root/stella-mirror-backup.key \
    --verify-key /root/backup-signing.pub.pem --to /                  # disaster recovery
  stella-mirror restore --from ARCHIVE --identity KEY --verify-key PUB --to / --dry-run  # what would be written
  stella-mirror restore --drill --from ARCHIVE --identity KEY --verify-key PUB            # quarterly drill`, stderr)
	from := fs.String("from", "", "archive `file` (.tar.gz or .tar.gz.age)")
	identity := fs.String("identity", "", "age identity `file` for an encrypted archive")
	var verifyKeys stringList
	fs.Var(&verifyKeys, "verify-key", "backup verification key `PEM` (Ed25519 public key); repeatable (key rotation)")
	allowUnsigned := fs.Bool("allow-unsigned", false, "restore an archive without checking a signature (unsigned archives, or no --verify-key)")
	to := fs.String("to", "", "restore under this `root` (/ for the original locations)")
	force := fs.Bool("force", false, "overwrite existing files")
	dryRun := fs.Bool("dry-run", false, "decrypt and verify, check the restore rules, list what would be written; write nothing")
	drill := fs.Bool("drill", false, "restore drill: restore into a temporary root, validate, probe the gateway, clean up")
	keep := fs.Bool("keep", false, "with --drill: keep the drill's root folder")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || (*to == "" && !*drill) {
		fmt.Fprintln(stderr, "stella-mirror restore: --from ARCHIVE and --to ROOT (or --drill) are required")
		return errUsage
	}
	ids, err := loadIdentities(*identity)
	if err != nil {
		return err
	}
	keys, err := loadBackupVerifyKeys(verifyKeys)
	if err != nil {
		return err
	}
	start := time.Now()
	root := *to
	if *drill {
		if root == "" {
			if root, err = os.MkdirTemp("", "stella-mirror-drill-"); err != nil {
				return err
			}
		} else if ents, err := os.ReadDir(root); err == nil && len(ents) > 0 {
			return fmt.Errorf("--drill needs an empty --to; %s is not empty", root)
		}
		if !*keep {
			defer os.RemoveAll(root)
		}
		fmt.Fprintf(stdout, "drill: restoring %s into %s\n", *from, root)
	}
	var p *profile.Profile
	validateRestored := func(ctx context.Context, m *backup.Manifest, root string) error {
		fmt.Fprintf(stdout, "archive %s (taken %s on %s by stella-mirror %s): %d entries, every checksum verified, every path referenced\n",
			m.Name, m.Created.Format(time.RFC3339), m.Host, m.Version, len(m.Entries))
		var err error
		configs := make([]string, 0, len(m.Configs))
		for _, c := range m.Configs {
			configs = append(configs, c.Path)
		}
		if p, err = profile.LoadRestored(root, configs, m.PathMap); err != nil {
			return fmt.Errorf("restored profile: %w", err)
		}
		// stella-mirror validate, on the restored files.
		rep, err := profile.ValidateRestored(ctx, restoredOf(m, root), p)
		if err != nil {
			return fmt.Errorf("validating the restored profile: %w", err)
		}
		for _, f := range rep.Findings {
			fmt.Fprintf(stdout, "%s\n", f)
		}
		if !rep.OK() {
			return fmt.Errorf("the restored profile does not validate: %d error(s), listed above", len(rep.Errors()))
		}
		for _, c := range rep.Checked {
			fmt.Fprintf(stdout, "checked: %s\n", c)
		}
		fmt.Fprintf(stdout, "restored profile validates (stella-mirror validate: %d error(s), %d warning(s))\n", len(rep.Errors()), len(rep.Warnings()))
		if *drill {
			lines, err := profile.ProbeGateways(ctx, p)
			for _, l := range lines {
				fmt.Fprintf(stdout, "drill: %s\n", l)
			}
			if err != nil {
				return fmt.Errorf("drill: %w", err)
			}
		}
		return nil
	}
	res, err := backup.Restore(ctx, backup.RestoreOptions{
		Archive: *from, Identities: ids, IdentityFile: *identity, VerifyKeys: keys, AllowUnsigned: *allowUnsigned,
		Root: root, Force: *force, DryRun: *dryRun, Chown: os.Geteuid() == 0,
		References: profile.References, Validate: validateRestored,
	})
	if err != nil {
		return err
	}
	m := res.Manifest
	signed := "unsigned (--allow-unsigned)"
	switch {
	case res.KeyID != "":
		signed = "signature verified with key " + res.KeyID
	case res.Signed:
		signed = "signature NOT checked (--allow-unsigned)"
	}
	if *dryRun {
		fmt.Fprintf(stdout, "archive %s (taken %s on %s by stella-mirror %s): %d entries, every checksum verified, %s\n",
			m.Name, m.Created.Format(time.RFC3339), m.Host, m.Version, len(m.Entries), signed)
		for _, p := range res.Written {
			fmt.Fprintf(stdout, "would write %s\n", p)
		}
		for _, p := range res.Existing {
			fmt.Fprintf(stdout, "exists: %s\n", p)
		}
		return nil
	}
	fmt.Fprintf(stdout, "restored %d files and links under %s (%s)", len(res.Written), root, signed)
	if len(res.Existing) > 0 {
		fmt.Fprintf(stdout, " (%d overwritten)", len(res.Existing))
	}
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "\nVerification checklist (once the services run from the restored files):")
	for _, it := range profile.Checklist(p, time.Now()) {
		mark := "[ ]"
		if it.Warn {
			mark = "[!]"
		}
		fmt.Fprintf(stdout, "  %s %-11s %s\n", mark, it.Topic, it.Text)
	}
	if *drill {
		fmt.Fprintf(stdout, "\ndrill passed in %s\n", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// restoredOf describes an archive restored under root for the checks of
// package backup/profile.
func restoredOf(m *backup.Manifest, root string) profile.Restored {
	r := profile.Restored{Root: root, PathMap: m.PathMap}
	for _, c := range m.Configs {
		r.Configs = append(r.Configs, c.Path)
	}
	for _, e := range m.Entries {
		r.Paths = append(r.Paths, e.Path)
		r.HasExports = r.HasExports || e.Kind == "export"
	}
	return r
}
