// Package backup takes hot backups of an edge mirror's state and restores
// them, verified, onto a host: the `stella-mirror backup` and `restore`
// subcommands delegate here.
//
// # What is saved
//
// A backup's input is a profile: the configuration files the components run
// with (origin, gateway and sync YAML files and env files), loaded with the
// components' own loaders so that every file they reference is found —
// certificates and keys, htpasswd files, the Authority client secret,
// signing and verification keys, the ACME storage folder, the sync state in
// each export root — plus any path named with --include and, on request,
// the active export of each export root.
//
// # Archive format
//
// One file, DIR/YYYY-MM-DDTHHMMSSZ.tar.gz (UTC), or .tar.gz.age when
// encrypted for one or more age recipients. Inside, under the archive's name:
//
//	NAME/files/<path>     the content of /<path>
//	NAME/SHA256SUMS       sha256sum(1) format over the files and the manifest
//	NAME/MANIFEST.json    each entry's original absolute path, type, mode,
//	                      owner, size and digest (see Manifest)
//	NAME/MANIFEST.sig     an Ed25519 signature over the manifest and
//	                      SHA256SUMS (see Signature), with a signing key
//
// so that `tar xzf NAME.tar.gz && cd NAME && sha256sum -c SHA256SUMS`
// checks an archive without this program. Secrets are stored with mode
// 0600 in the tar headers whatever their mode on disk (the manifest keeps
// the real mode). Restore reads the members in any order.
//
// # Writing
//
// The tar is streamed through gzip (and age) straight into
// DIR/.partial-NAME…-RANDOM (O_EXCL, 0600), fsynced and renamed: nothing is
// written in plaintext. The run holds an flock on DIR; it removes the
// partial output of killed runs (and the plaintext staging folders of
// earlier versions) first and reports them (Result.Stale). A cancelled
// context stops it between and within files and removes its partial
// output.
//
// # Consistency
//
// Files are copied hot: each is opened once and copied from that
// descriptor, so a file replaced by rename during the backup is copied
// either wholly old or wholly new. Files up to 32 MiB are read into memory
// first, so one rewritten in place is detected by its size and
// modification time changing during the read and read again; larger files
// (exports) are streamed and the backup fails if they change.
//
// # Restore
//
// Restore reads the archive three times: once to check SHA256SUMS, the
// manifest, every member, the gzip trailer and the signature against the
// verification keys (nothing is written if anything fails), once to write
// the configuration files, and once, after every entry was found to be a
// path the restored configurations reference (RestoreOptions.References),
// to write the other entries — so an unreferenced entry is never written,
// not even briefly. Each file goes through a temporary name under ROOT via
// an os.Root, its digest checked again before the rename. The manifest's
// symlinks must be relative plain names that pass through no other
// symlink. Then secrets are forced to 0640 or stricter and
// RestoreOptions.Validate runs (the command runs
// profile.ValidateRestored, the profile validator of package
// deploy/validate, and for a drill profile.ProbeGateways); if any of these
// fails, everything the restore wrote is removed and replaced files are
// put back.
//
// # Dependencies
//
// This package knows no component: the configurations are loaded by
// package backup/profile with the origin's, gateway's and sync's loaders,
// and reach Backup and Restore as plain data (package backup/inventory)
// through the functions the command injects (Options.Load,
// RestoreOptions.References, RestoreOptions.Validate).
//
// # What it is not
//
// It does not stop services, snapshot file systems, ship archives off-site
// (copy DIR with your tools) or rewrite any configuration on restore: files
// go back to ROOT + their original path, nothing else is touched.
package backup
