package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/stella-ops/stella-mirror/internal/atomicfile"
	"github.com/stella-ops/stella-mirror/internal/htpasswdfile"
)

// passwdStdin is where --password-file - reads from (a variable for tests).
var passwdStdin io.Reader = os.Stdin

func runPasswd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("passwd", "--file FILE --user NAME (--password-file FILE|- | --generate) [--rotate] | --delete",
		`Add, change, rotate or remove a Basic Auth user in an htpasswd file, as
`+"`htpasswd -B`"+` does: bcrypt hashes ($2y$, what htpasswd -B writes; Apache htpasswd -v,
nginx and the gateway accept them). Other lines (users, comments) are kept in order. The
file is replaced atomically (temporary file, fsync, rename, fsync of the
directory) keeping its mode and, when run as root, its owner; the gateway
picks the change up without a restart.

The password never comes from the command line (argv is visible to every
user in ps): it is read from --password-file (one trailing newline is
trimmed; "-" reads standard input), or generated with --generate and printed
once on stdout (or written to --password-out, mode 0600). Passwords are 1-72
bytes (bcrypt's limit) without control characters (line breaks, tabs, NUL).

Modes:
  (default)  add the user, or change the password of an existing one
  --rotate   change the password of an existing user (error if absent)
  --delete   remove the user (the last user cannot be removed: the gateway
             refuses an htpasswd file without users and would keep the old one)

A new file is created with mode 0640 (--mode 0600 for owner-only), so a
group can read it too (e.g. root:www-data for the nginx front). Rewrites keep
the mode and, when run as root, the owner: after a one-time chown to the
containers' user (65532, see secrets/README.md) it stays readable by them.

Examples:
  stella-mirror passwd --file secrets/primary.htpasswd --user alice --generate
  printf '%s' "$PW" | stella-mirror passwd --file secrets/primary.htpasswd --user alice --password-file -
  stella-mirror passwd --file secrets/primary.htpasswd --user alice --rotate --generate --password-out alice.password
  stella-mirror passwd --file secrets/primary.htpasswd --user bob --delete
  htpasswd -vb secrets/primary.htpasswd alice "$PW"    # Apache's tool verifies what passwd wrote`, stderr)
	file := fs.String("file", "", "htpasswd `file` (created if missing)")
	user := fs.String("user", "", "user `name`")
	pwFile := fs.String("password-file", "", "read the password from `file` (\"-\": standard input)")
	generate := fs.Int("generate", 0, "generate a random password of `n` characters (24 is a good choice; 12-72)")
	pwOut := fs.String("password-out", "", "with --generate: write the password to `file` (mode 0600) instead of stdout")
	rotate := fs.Bool("rotate", false, "change the password of an existing user; fail if the user is absent")
	del := fs.Bool("delete", false, "remove the user")
	cost := fs.Int("cost", htpasswdfile.DefaultCost, "bcrypt `cost` (4-17; Apache htpasswd -B uses 5)")
	modeFlag := fs.String("mode", "", "file `mode` in octal, e.g. 0640 or 0600 (default: keep the existing file's; 0640 for a new one)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	usage := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "stella-mirror passwd: "+format+"\n", a...)
		return errUsage
	}
	if *file == "" || *user == "" {
		return usage("--file and --user are required (see --help)")
	}
	if err := htpasswdfile.ValidateUser(*user); err != nil {
		return usage("--user: %v", err)
	}
	var mode os.FileMode
	if *modeFlag != "" {
		m, err := strconv.ParseUint(*modeFlag, 8, 32)
		if err != nil || m > 0o777 {
			return usage("--mode %q: want an octal mode such as 0640", *modeFlag)
		}
		if m&0o007 != 0 {
			return usage("--mode %s: the file must not be readable or writable by others", *modeFlag)
		}
		if m&0o400 == 0 {
			return usage("--mode %s: the owner must be able to read the file", *modeFlag)
		}
		mode = os.FileMode(m)
	}
	if *del && (*rotate || *pwFile != "" || *generate != 0) {
		return usage("--delete takes no password and excludes --rotate")
	}
	if !*del && (*pwFile == "") == (*generate == 0) {
		return usage("give exactly one of --password-file and --generate (passwords are never taken from the command line)")
	}
	if *pwOut != "" && *generate == 0 {
		return usage("--password-out needs --generate")
	}
	if *cost < 4 || *cost > 17 {
		return usage("--cost %d: want 4 to 17", *cost)
	}

	f, err := htpasswdfile.Read(*file)
	if err != nil {
		return err
	}
	if *del {
		if err := f.Delete(*user); err != nil {
			return err
		}
		if len(f.Users()) == 0 {
			return fmt.Errorf("%s: not removing %q, the last user: the gateway refuses an htpasswd file without users (and keeps the old one); add another user first or remove the site", *file, *user)
		}
		if err := f.Write(mode); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed user %s from %s\n", *user, *file)
		return nil
	}
	if *rotate && !f.Has(*user) {
		return fmt.Errorf("%s: --rotate: %w %q", *file, htpasswdfile.ErrNoUser, *user)
	}

	var password []byte
	if *generate != 0 {
		pw, err := htpasswdfile.Generate(*generate)
		if err != nil {
			return fmt.Errorf("--generate: %w", err)
		}
		password = []byte(pw)
	} else {
		password, err = readPassword(*pwFile)
		if err != nil {
			return err
		}
	}
	if err := htpasswdfile.ValidatePassword(password); err != nil {
		return fmt.Errorf("password from %s: %w", describePwSource(*pwFile), err)
	}
	existed := f.Has(*user)
	if err := f.Set(*user, password, *cost); err != nil {
		return err
	}
	// The generated password is saved before the file changes, so a failure
	// never leaves a user whose password nobody knows.
	if *pwOut != "" {
		if err := atomicfile.WriteFile(*pwOut, append(bytes.Clone(password), '\n'), 0o600); err != nil {
			return fmt.Errorf("--password-out: %w", err)
		}
	}
	if err := f.Write(mode); err != nil {
		return err
	}
	verb := "added user"
	if existed {
		verb = "changed the password of"
	}
	fmt.Fprintf(stdout, "%s %s in %s (bcrypt, cost %d, mode %04o)\n", verb, *user, *file, *cost, f.Mode())
	switch {
	case *generate != 0 && *pwOut != "":
		fmt.Fprintf(stdout, "password written to %s\n", *pwOut)
	case *generate != 0:
		fmt.Fprintf(stdout, "password: %s\n", password)
	}
	return nil
}

// readPassword reads a password from path ("-": passwdStdin), at most 4 KiB,
// with one trailing newline (LF or CRLF) trimmed.
func readPassword(path string) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = passwdStdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--password-file: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, 4097))
	if err != nil {
		return nil, fmt.Errorf("reading the password from %s: %w", describePwSource(path), err)
	}
	if len(data) > 4096 {
		return nil, fmt.Errorf("password from %s: more than 4 KiB", describePwSource(path))
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	return data, nil
}

func describePwSource(path string) string {
	if path == "-" {
		return "standard input"
	}
	return path
}
