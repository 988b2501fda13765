// Package htpasswdfile edits Apache htpasswd files the way `htpasswd -B`
// does: it adds, changes and removes users with bcrypt hashes, keeps every
// other line (comments, other users, their order) as it was, and replaces
// the file atomically with its mode and owner preserved.
//
// It is the engine of `stella-mirror passwd`. It does not verify passwords
// (the gateway's basicauth package does) and it never sees a password it
// does not hash at once.
package htpasswdfile

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/stella-ops/stella-mirror/internal/atomicfile"
)

// DefaultCost is the bcrypt cost of new hashes. Apache's htpasswd -B uses 5;
// 10 costs ~50 ms per check, which the gateway pays once per credential
// thanks to its verified-credential cache.
const DefaultCost = bcrypt.DefaultCost

// DefaultMode is the mode of a file this package creates: owner read/write,
// group read (the container's group), nothing for others.
const DefaultMode os.FileMode = 0o640

// MaxPasswordLen is bcrypt's limit: longer passwords are refused rather than
// silently truncated.
const MaxPasswordLen = 72

// ErrNoUser is returned when a user to change or remove is not in the file.
var ErrNoUser = errors.New("no such user")

// File is an htpasswd file in memory: its lines in order.
type File struct {
	path  string
	lines []string
	// exists and mode describe the file on disk when it was read.
	exists bool
	mode   os.FileMode
}

// Read loads path. A missing file gives an empty File that Write creates
// with DefaultMode.
func Read(path string) (*File, error) {
	f := &File{path: path, mode: DefaultMode}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading htpasswd %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading htpasswd %s: %w", path, err)
	}
	f.exists = true
	f.mode = fi.Mode().Perm()
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	text = strings.TrimSuffix(text, "\n")
	if text != "" {
		f.lines = strings.Split(text, "\n")
	}
	for i, l := range f.lines {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if user, _, ok := strings.Cut(l, ":"); !ok || user == "" {
			return nil, fmt.Errorf("reading htpasswd %s:%d: not a user:hash line", path, i+1)
		}
	}
	return f, nil
}

// Exists reports whether the file existed when it was read.
func (f *File) Exists() bool { return f.exists }

// Mode is the mode Write uses: the existing file's, or DefaultMode.
func (f *File) Mode() os.FileMode { return f.mode }

// Users lists the users in file order.
func (f *File) Users() []string {
	var out []string
	for _, l := range f.lines {
		if u, ok := userOf(l); ok {
			out = append(out, u)
		}
	}
	return out
}

// Has reports whether user has a line.
func (f *File) Has(user string) bool {
	for _, l := range f.lines {
		if u, ok := userOf(l); ok && u == user {
			return true
		}
	}
	return false
}

func userOf(line string) (string, bool) {
	if line == "" || strings.HasPrefix(line, "#") {
		return "", false
	}
	u, _, ok := strings.Cut(line, ":")
	return u, ok
}

// ValidateUser checks a user name as the gateway does (its htpasswd
// parser and its Basic credentials parser): 1–255 bytes, no ':', no
// control characters (bytes below 0x20, 0x7f), no white space, no leading
// '#'.
func ValidateUser(user string) error {
	switch {
	case user == "":
		return errors.New("user name is empty")
	case len(user) > 255:
		return fmt.Errorf("user name is %d bytes; at most 255", len(user))
	case strings.ContainsRune(user, ':'):
		return fmt.Errorf("user name %q contains ':'", user)
	case strings.HasPrefix(user, "#"):
		return fmt.Errorf("user name %q starts with '#'", user)
	}
	for i := 0; i < len(user); i++ {
		if c := user[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("user name %q contains a control character", user)
		}
	}
	if strings.ContainsRune(user, ' ') {
		return fmt.Errorf("user name %q contains white space", user)
	}
	return nil
}

// ValidatePassword checks a password: 1–72 bytes (bcrypt's limit), no
// control characters (bytes below 0x20, 0x7f: the gateway refuses Basic
// credentials holding one).
func ValidatePassword(pw []byte) error {
	switch {
	case len(pw) == 0:
		return errors.New("password is empty")
	case len(pw) > MaxPasswordLen:
		return fmt.Errorf("password is %d bytes; bcrypt takes at most %d", len(pw), MaxPasswordLen)
	}
	for _, c := range pw {
		if c < 0x20 || c == 0x7f {
			return errors.New("password contains a control character (a line break, NUL, tab, …)")
		}
	}
	return nil
}

// Set hashes password with bcrypt at cost and sets it as user's hash: the
// user's first line is replaced in place (later duplicates are dropped), or
// a line is appended for a new user.
func (f *File) Set(user string, password []byte, cost int) error {
	if err := ValidateUser(user); err != nil {
		return err
	}
	if err := ValidatePassword(password); err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword(password, cost)
	if err != nil {
		return fmt.Errorf("hashing password for %s: %w", user, err)
	}
	// Go writes $2a$; htpasswd -B writes $2y$. Both name the same algorithm
	// (Go's implementation never had the bug $2y$ marks as fixed); $2y$ keeps
	// files uniform with the ones operators make with Apache's tool.
	if bytes.HasPrefix(hash, []byte("$2a$")) {
		hash[2] = 'y'
	}
	line := user + ":" + string(hash)
	out := f.lines[:0:0]
	done := false
	for _, l := range f.lines {
		if u, ok := userOf(l); ok && u == user {
			if !done {
				out = append(out, line)
				done = true
			}
			continue
		}
		out = append(out, l)
	}
	if !done {
		out = append(out, line)
	}
	f.lines = out
	return nil
}

// Delete removes every line of user; ErrNoUser when there is none.
func (f *File) Delete(user string) error {
	out := f.lines[:0:0]
	found := false
	for _, l := range f.lines {
		if u, ok := userOf(l); ok && u == user {
			found = true
			continue
		}
		out = append(out, l)
	}
	if !found {
		return fmt.Errorf("%s: %w %q", f.path, ErrNoUser, user)
	}
	f.lines = out
	return nil
}

// Bytes renders the file: the lines, each ending in "\n".
func (f *File) Bytes() []byte {
	var b bytes.Buffer
	for _, l := range f.lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Write replaces the file atomically (temporary file in the same
// directory, fsync, rename, fsync of the directory) with mode (when
// non-zero; else the existing file's, else DefaultMode) and, when the
// process may, the existing file's owner and group. Readers (the gateway
// watches the directory) see the old file or the new one, never a mix.
func (f *File) Write(mode os.FileMode) error {
	if mode == 0 {
		mode = f.mode
	}
	if err := atomicfile.WriteFileKeepOwner(f.path, f.Bytes(), mode); err != nil {
		return fmt.Errorf("writing htpasswd %s: %w", f.path, err)
	}
	f.exists, f.mode = true, mode
	return nil
}

// passwordAlphabet has no look-alikes (0/O, 1/l/I) and nothing a shell or a
// URL would mangle.
const passwordAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// Generate returns a random password of n characters from a 57-symbol
// alphabet (n=24 gives ~140 bits).
func Generate(n int) (string, error) {
	if n < 12 || n > MaxPasswordLen {
		return "", fmt.Errorf("generated password length %d: want 12 to %d", n, MaxPasswordLen)
	}
	out := make([]byte, n)
	buf := make([]byte, 1)
	for i := 0; i < n; {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		// Rejection sampling keeps the choice uniform.
		if int(buf[0]) >= 256-256%len(passwordAlphabet) {
			continue
		}
		out[i] = passwordAlphabet[int(buf[0])%len(passwordAlphabet)]
		i++
	}
	return string(out), nil
}
