package basicauth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"

	htpasswd "github.com/tg123/go-htpasswd"
	"golang.org/x/crypto/bcrypt"
)

// Scheme names the hash scheme of an htpasswd line.
type Scheme string

// The schemes a Table accepts.
const (
	SchemeBcrypt Scheme = "bcrypt"
	SchemeAPR1   Scheme = "apr1"
	SchemeSHA    Scheme = "sha"
	SchemeSSHA   Scheme = "ssha"
)

// Weak reports whether the scheme is accepted only with a warning.
func (s Scheme) Weak() bool { return s != SchemeBcrypt }

// user is one parsed line.
type user struct {
	hash   htpasswd.EncodedPasswd
	scheme Scheme
	// bcrypt is the hash of a bcrypt user (compared through File's
	// compare, which counts), nil for the legacy schemes.
	bcrypt []byte
	// line is the text after "user:", for tests that render a table back.
	line string
}

// LoadOptions say which hashes a Table accepts.
type LoadOptions struct {
	// AllowLegacy accepts apr1, {SHA} and {SSHA} hashes with a warning
	// (GATEWAY__ALLOWLEGACYHASHES). Without it they are errors. crypt(3)
	// and plain text are refused either way.
	AllowLegacy bool
}

// MaxBcryptCost bounds the cost of an accepted bcrypt hash: at 17 one
// check takes several seconds already (cost 10 takes ~50 ms, each step
// doubles it).
const MaxBcryptCost = 17

// Table is a validated, immutable htpasswd file.
type Table struct {
	users map[string]user
	// sum is the SHA-256 of the file content.
	sum [32]byte
	// Warnings name lines that use a weak scheme ("line 3: user alice
	// uses apr1; rehash with htpasswd -B"), accepted with
	// LoadOptions.AllowLegacy.
	Warnings []string
	// cost is the bcrypt cost most users have (ties: the higher), or
	// bcrypt.DefaultCost without bcrypt users: the cost of the dummy
	// comparison that equalises unknown users and legacy hashes.
	cost int
	// dummy is a bcrypt hash at cost, set by File before the table serves.
	dummy []byte
}

// Cost is the bcrypt cost of the table's dummy comparison: the cost most
// of its users have.
func (t *Table) Cost() int { return t.cost }

// Len is the number of users.
func (t *Table) Len() int { return len(t.users) }

// Has reports whether name is a user of the table.
func (t *Table) Has(name string) bool { _, ok := t.users[name]; return ok }

// maxFileSize bounds an htpasswd file (a million bcrypt users is ~70 MB;
// anything near this is a mistake).
const maxFileSize = 16 << 20

// LoadFile reads and validates the htpasswd file at path. Every line must be
// empty, a comment (#) or "user:hash" with a unique user and a hash in an
// accepted scheme, and there must be at least one user; otherwise the error
// names the file, line and problem (never the hash).
func LoadFile(path string, o LoadOptions) (*Table, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("loading htpasswd %s: %w", path, err)
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("loading htpasswd %s: %d bytes is more than the %d allowed", path, fi.Size(), maxFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading htpasswd %s: %w", path, err)
	}
	t, err := Parse(data, path, o)
	if err != nil {
		return nil, fmt.Errorf("loading htpasswd %s: %w", path, err)
	}
	t.sum = sha256.Sum256(data)
	return t, nil
}

// Parse validates htpasswd content. Errors and warnings name the line and
// the user (never the hash); name is unused but kept for callers' context.
// A user name must be at most MaxUserLen bytes without white space or
// control characters; a bcrypt cost at most MaxBcryptCost.
func Parse(data []byte, name string, o LoadOptions) (*Table, error) {
	_ = name
	t := &Table{users: make(map[string]user)}
	var costs [bcrypt.MaxCost + 1]int // users per cost
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("line %d: %s", n, fmt.Sprintf(format, args...)))
		}
		name, hash, ok := strings.Cut(line, ":")
		switch {
		case !ok:
			bad("not user:hash")
			continue
		case name == "":
			bad("empty user name")
			continue
		case len(name) > MaxUserLen:
			bad("user %q is %d bytes; at most %d", SafeUser(name), len(name), MaxUserLen)
			continue
		case hasControl(name):
			bad("user %q contains a control character", SafeUser(name))
			continue
		case strings.ContainsAny(name, " \t"):
			bad("user %q contains white space", name)
			continue
		case hash == "":
			bad("user %q has an empty hash", name)
			continue
		}
		if _, dup := t.users[name]; dup {
			bad("user %q appears twice", name)
			continue
		}
		u, err := parseHash(hash)
		if err != nil {
			bad("user %q: %v", name, err)
			continue
		}
		if u.scheme.Weak() {
			if !o.AllowLegacy {
				bad("user %q uses %s, not bcrypt; rehash with htpasswd -B (or set GATEWAY__ALLOWLEGACYHASHES=true)", name, u.scheme)
				continue
			}
			t.Warnings = append(t.Warnings, fmt.Sprintf("line %d: user %q uses %s; rehash with htpasswd -B (bcrypt)", n, name, u.scheme))
		} else {
			c, _ := bcrypt.Cost(u.bcrypt)
			costs[c]++
		}
		u.line = hash
		t.users[name] = u
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("line %d: %w", n+1, err))
	}
	if len(errs) == 0 && len(t.users) == 0 {
		// An empty file locks everyone out; it is far more often a file
		// caught in the middle of being rewritten than an intent.
		errs = append(errs, errors.New("no users (an htpasswd file needs at least one user:hash line)"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	t.cost = bcrypt.DefaultCost
	for c, k := range costs {
		if k > 0 && k >= costs[t.cost] {
			t.cost = c // the most users; a tie goes to the higher cost
		}
	}
	return t, nil
}

// parseHash accepts bcrypt, apr1, SHA and SSHA through go-htpasswd's parsers.
func parseHash(hash string) (user, error) {
	if hasControl(hash) {
		return user{}, errors.New("the hash contains a control character")
	}
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		c, err := bcrypt.Cost([]byte(hash))
		if err != nil || len(hash) != 60 {
			return user{}, errors.New("malformed bcrypt hash")
		}
		if c > MaxBcryptCost {
			return user{}, fmt.Errorf("bcrypt cost %d is more than %d (each check would take minutes)", c, MaxBcryptCost)
		}
		u, err := accept(htpasswd.AcceptBcrypt, hash, SchemeBcrypt)
		u.bcrypt = []byte(hash)
		return u, err
	case strings.HasPrefix(hash, htpasswd.PrefixCryptApr1):
		return accept(htpasswd.AcceptMd5, hash, SchemeAPR1)
	case strings.HasPrefix(hash, "{SHA}"):
		return accept(htpasswd.AcceptSha, hash, SchemeSHA)
	case strings.HasPrefix(hash, "{SSHA}"):
		return accept(htpasswd.AcceptSsha, hash, SchemeSSHA)
	}
	return user{}, errors.New("unsupported hash (want bcrypt from htpasswd -B; apr1, {SHA} and {SSHA} only with GATEWAY__ALLOWLEGACYHASHES=true)")
}

func accept(p htpasswd.PasswdParser, hash string, s Scheme) (user, error) {
	enc, err := p(hash)
	if err != nil || enc == nil {
		return user{}, fmt.Errorf("malformed %s hash", s)
	}
	return user{hash: enc, scheme: s}, nil
}
