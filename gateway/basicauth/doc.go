// Package basicauth checks HTTP Basic credentials against an htpasswd file
// (parsed with github.com/tg123/go-htpasswd), reloads the file without a
// restart, and remembers verified credentials briefly so that bcrypt does not
// run on every request.
//
// ParseBasic is the one parser of Basic Authorization headers: it refuses
// control characters (CR, LF, NUL, any byte below 0x20, 0x7f) in the user
// name and password, so no such name reaches a log line or the forwarded
// user header.
//
// A reload validates the whole file before anything changes: one bad line
// and the last good table stays in use (the error names the file, line and
// user, never the hash). bcrypt hashes are expected; apr1 ($apr1$), SHA
// ({SHA}) and SSHA are errors unless LoadOptions.AllowLegacy, which
// accepts them with a warning; plain text and crypt(3) lines are always
// rejected.
//
// Under attack: every check that misses the cache runs exactly one bcrypt
// comparison at the cost most of the file's users have (a dummy hash for
// an unknown user, and after the real comparison for a legacy hash), so
// the time of an answer tells nothing about the user; comparisons wait
// for a slot of a Gate shared by the process; identical checks in
// progress are collapsed into one. Throttling failures per client is the
// caller's (the gateway's).
//
// It is not an HTTP middleware: the gateway decides what a failure answers.
package basicauth
