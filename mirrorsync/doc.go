// Package mirrorsync pulls the newest export from a source (a local
// directory, rsync, S3 or an upstream mirror over HTTPS), verifies it and
// publishes it atomically into an export root that the origin serves.
//
// One run ([Run]):
//
//  1. takes an exclusive lock on ROOT/.sync.lock (a second run fails with
//     [ErrLocked]);
//  2. reads the source's Concelier index and Excititor indexes and derives
//     the upstream fingerprint (their digests, which cover every bundle
//     digest, signature metadata and generatedAt); when it equals the one
//     recorded by the last successful run and that export is still
//     published, the run stops there (Options.Force disables this); an
//     export that lists an Excititor exportKey of a kept export with another
//     digest is refused ([export.KeyReuseError]: a key's bytes never change
//     across exports, its URL is pinned by the key alone);
//  3. checks the free space of the root's file system against what the
//     export still needs and, when short, prunes exports beyond Keep, then
//     the oldest kept ones, never the active or the previous export
//     ([SpaceError] when that is not enough; nothing is downloaded);
//     then builds ROOT/.staging/<exportId>: a file already there from an
//     interrupted run is kept when its digest is right, a file of a
//     published export with the same declared digest is hard-linked (its
//     bytes are hashed first: digests, never sizes), everything else is
//     downloaded to a temporary name, hashed while written, fsynced and
//     renamed; a source that copies many files itself ([Mirrorer]: rsync)
//     is given only the files still missing after that, with their
//     declared sizes as bounds;
//  4. verifies every digest and every detached JWS (bundles and Excititor
//     exports) against the trusted keys and the signature metadata the
//     index declares; any failure publishes nothing and names the file;
//  5. renames the staging directory to ROOT/<exportId> (an export the
//     source changed under the same id is exchanged with the published one
//     in one renameat2(RENAME_EXCHANGE)), swaps ROOT/latest with one
//     rename of a new symlink, records the fingerprint and
//     removes exports beyond the newest Options.Keep, at least [MinKeep]
//     (renamed aside first, so a half-deleted export is never visible; the
//     previous export stays, so its export-pinned URLs keep answering).
//
// A SIGKILL at any point leaves the published export untouched; the next
// run resumes from the staging directory and reports the kill
// (ROOT/.sync.running, Result.PreviousRunKilled).
//
// What it is not: it does not serve exports (package origin does), sign
// them (export/jws), or schedule itself (systemd/ holds a timer).
package mirrorsync
