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
//	NAME/SHA256SUMS       sha256sum(1) format over every other file
//	NAME/MANIFEST.json    each entry's original absolute path, type, mode,
//	                      owner, size and digest (see Manifest)
//	NAME/files/<path>     the content of /<path>
//
// so that `tar xzf NAME.tar.gz && cd NAME && sha256sum -c SHA256SUMS`
// checks an archive without this program. Secrets are stored with mode
// 0600 in the tar headers whatever their mode on disk (the manifest keeps
// the real mode, and restore applies it).
//
// # Consistency
//
// Files are copied hot: each is opened once and copied from that
// descriptor, so a file replaced by rename during the backup is copied
// either wholly old or wholly new; a file rewritten in place is detected by
// its size and modification time changing during the copy and copied again.
//
// # Restore
//
// Restore reads the archive twice: once to check SHA256SUMS, the manifest
// and every member (nothing is written if anything fails), once to write
// each file through a temporary name under ROOT via an os.Root, checking
// its digest again before the rename. ValidateRestored then runs the
// profile validator (package deploy/validate) on the restored files with
// their paths mapped onto ROOT in memory, ProbeGateways starts each
// restored gateway on loopback (the drill), and Checklist lists what an
// operator verifies once the services run.
//
// # What it is not
//
// It does not stop services, snapshot file systems, ship archives off-site
// (copy DIR with your tools) or rewrite any configuration on restore: files
// go back to ROOT + their original path, nothing else is touched.
package backup
