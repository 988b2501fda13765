// Package basicauth checks HTTP Basic credentials against an htpasswd file
// (parsed with github.com/tg123/go-htpasswd), reloads the file without a
// restart, and remembers verified credentials briefly so that bcrypt does not
// run on every request.
//
// A reload validates the whole file before anything changes: one bad line
// and the last good table stays in use (the error names the file and line).
// bcrypt hashes are expected; apr1 ($apr1$), SHA ({SHA}) and SSHA are
// accepted with a warning; plain text and crypt(3) lines are rejected.
//
// It is not an HTTP middleware: the gateway decides what a failure answers.
package basicauth
