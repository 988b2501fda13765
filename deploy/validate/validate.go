package validate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Severity is how bad a finding is.
type Severity string

// Severities. An error makes the profile fail; a warning does not.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Finding is one problem found in the profile.
type Finding struct {
	// Severity is error or warning.
	Severity Severity
	// File is the file the finding is about: the referenced file
	// (certificate, key, htpasswd file, export root…) when the problem is
	// in it, else the configuration file that sets Key. Empty when the
	// setting comes from a default.
	File string
	// Key is the configuration key concerned (e.g.
	// GATEWAY__SITES__0__CERTFILE), empty for problems with no single key.
	Key string
	// Message says what is wrong and, where it helps, how to fix it. It
	// never contains secrets.
	Message string
}

// String renders the finding as the command prints it:
// "error: FILE: KEY: message".
func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(string(f.Severity))
	b.WriteString(": ")
	if f.File != "" {
		b.WriteString(f.File)
		b.WriteString(": ")
	}
	if f.Key != "" {
		b.WriteString(f.Key)
		b.WriteString(": ")
	}
	b.WriteString(f.Message)
	return b.String()
}

// Report is the result of Profile.
type Report struct {
	// Findings are sorted: errors first, then by file and key.
	Findings []Finding
	// Checked lists what was checked, one line each (e.g. "gateway: site
	// mirror-primary.example.org: certificate valid until 2027-03-01").
	Checked []string
}

// Errors returns the error findings.
func (r *Report) Errors() []Finding { return r.filter(Error) }

// Warnings returns the warning findings.
func (r *Report) Warnings() []Finding { return r.filter(Warning) }

// OK reports whether the profile has no error.
func (r *Report) OK() bool { return len(r.Errors()) == 0 }

func (r *Report) filter(s Severity) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Severity == s {
			out = append(out, f)
		}
	}
	return out
}

// PathMapping rewrites a path prefix: a profile written for containers
// (/run/secrets/…) is checked against the host directories mounted there.
type PathMapping struct {
	// From is the prefix as the configuration names it, e.g. /run/secrets.
	From string
	// To replaces it, e.g. ./secrets.
	To string
}

// ParsePathMapping parses "FROM=TO".
func ParsePathMapping(s string) (PathMapping, error) {
	from, to, ok := strings.Cut(s, "=")
	if !ok || from == "" || to == "" {
		return PathMapping{}, fmt.Errorf("%q is not FROM=TO (e.g. /run/secrets=./secrets)", s)
	}
	return PathMapping{From: filepath.Clean(from), To: filepath.Clean(to)}, nil
}

// Options name the profile to check. At least one of EnvFiles,
// OriginConfig, GatewayConfig and SyncConfig is required.
type Options struct {
	// EnvFiles are env files (KEY=VALUE lines, as docker compose's env_file
	// and systemd's EnvironmentFile read them), applied in order, later
	// files overriding earlier ones. A component is checked when a file
	// sets one of its keys (CONCELIER__MIRROR__…, EXCITITOR__…, ORIGIN__…
	// for the origin; GATEWAY__… for the gateway; SYNC__… or
	// CONCELIER__SOURCES__STELLAOPSMIRROR__… for sync).
	EnvFiles []string
	// Environ is more environment, applied after EnvFiles (the command
	// passes none unless told to: the profile should not depend on the
	// shell it is checked from).
	Environ []string
	// ComposeFile is a compose file (compose/docker-compose.mirror.yaml)
	// whose origin, gateway and sync services are checked as docker
	// compose would run them with EnvFiles as its --env-file: ${VAR:-default}
	// interpolated from EnvFiles, each service's env_file files read, its
	// environment entries applied last, its bind mounts checked at their
	// host paths (a PathMapping each) and its numeric group_add groups
	// allowed to read secrets and private keys (mode 0640).
	ComposeFile string
	// OriginConfig, GatewayConfig and SyncConfig are the components' YAML
	// files (their --config); setting one checks that component.
	OriginConfig, GatewayConfig, SyncConfig string
	// PathMap rewrites path prefixes of every referenced file before it is
	// checked (longest From first).
	PathMap []PathMapping
	// MinValidity is how long a certificate must remain valid. Default:
	// DefaultMinValidity.
	MinValidity time.Duration
	// CDNForwardsAuthorization states that the CDN in front of the gateway
	// (GATEWAY__TRUSTEDPROXIES) forwards Authorization and never serves a
	// response cached for one client to another without it; it silences
	// the CDN exposure warning. Default: false.
	CDNForwardsAuthorization bool
	// Now is the clock for certificate expiry. Default: time.Now.
	Now func() time.Time
}

// DefaultMinValidity is how long certificates must remain valid: 14 days.
const DefaultMinValidity = 14 * 24 * time.Hour

// Component key prefixes, as the components read them.
var (
	originPrefixes  = []string{"CONCELIER__MIRROR__", "CONCELIER__AUTHORITY__", "EXCITITOR__", "ORIGIN__"}
	gatewayPrefixes = []string{"GATEWAY__"}
	syncPrefixes    = []string{"SYNC__", "CONCELIER__SOURCES__STELLAOPSMIRROR__"}
)

// checker holds one run's state.
type checker struct {
	opts    Options
	env     []string          // the merged environment
	keyFile map[string]string // env key (upper case) → env file that set it
	groups  map[int]bool      // groups that may read secrets (compose group_add)
	rep     Report

	// What the cross checks need; nil when the component was not checked
	// or its configuration did not load.
	origin  *originState
	gateway *gatewayState
	// keyRoots are the export roots whose Excititor keys were compared.
	keyRoots map[string]bool
}

// Profile checks the profile and returns every finding. The error is for
// unusable options (nothing to check, an unreadable env file is a finding,
// not an error) and a cancelled ctx.
func Profile(ctx context.Context, opts Options) (Report, error) {
	if len(opts.EnvFiles) == 0 && opts.ComposeFile == "" && opts.OriginConfig == "" && opts.GatewayConfig == "" && opts.SyncConfig == "" {
		return Report{}, errors.New("nothing to check: give env files, a compose file and/or the origin, gateway or sync configuration")
	}
	if opts.MinValidity <= 0 {
		opts.MinValidity = DefaultMinValidity
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	sort.SliceStable(opts.PathMap, func(i, j int) bool { return len(opts.PathMap[i].From) > len(opts.PathMap[j].From) })
	c := &checker{opts: opts, keyFile: map[string]string{}, groups: map[int]bool{}}
	for _, f := range opts.EnvFiles {
		c.readEnvFile(f)
	}
	if opts.ComposeFile != "" {
		c.readCompose(opts.ComposeFile)
	}
	for _, kv := range opts.Environ {
		c.setEnv(kv, "")
	}
	for _, p := range []string{opts.OriginConfig, opts.GatewayConfig, opts.SyncConfig} {
		if p != "" {
			c.fileExists(p, "", "configuration file")
		}
	}
	steps := []struct {
		name     string
		prefixes []string
		file     string
		run      func()
	}{
		{"origin", originPrefixes, opts.OriginConfig, c.checkOrigin},
		{"gateway", gatewayPrefixes, opts.GatewayConfig, c.checkGateway},
		{"sync", syncPrefixes, opts.SyncConfig, c.checkSync},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return Report{}, err
		}
		if s.file != "" || c.envHas(s.prefixes) {
			s.run()
		}
	}
	c.crossChecks()
	sort.SliceStable(c.rep.Findings, func(i, j int) bool {
		a, b := c.rep.Findings[i], c.rep.Findings[j]
		if a.Severity != b.Severity {
			return a.Severity == Error
		}
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Key < b.Key
	})
	return c.rep, nil
}

// add records a finding.
func (c *checker) add(sev Severity, file, key, format string, args ...any) {
	c.rep.Findings = append(c.rep.Findings, Finding{Severity: sev, File: file, Key: key, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) checked(format string, args ...any) {
	c.rep.Checked = append(c.rep.Checked, fmt.Sprintf(format, args...))
}

// readEnvFile applies one env file. Lines: blank, # comments, KEY=VALUE
// with an optional "export " prefix and optional matching quotes around
// the value.
func (c *checker) readEnvFile(path string) {
	f, err := os.Open(path)
	if err != nil {
		c.add(Error, path, "", "env file: %v", unwrapPath(err))
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			c.add(Error, fmt.Sprintf("%s:%d", path, n), "", "not KEY=VALUE")
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		c.setEnv(k+"="+v, path)
	}
	if err := sc.Err(); err != nil {
		c.add(Error, path, "", "reading env file: %v", err)
	}
}

func (c *checker) setEnv(kv, file string) {
	k, _, _ := strings.Cut(kv, "=")
	c.env = append(c.env, kv)
	c.keyFile[strings.ToUpper(k)] = file
}

// envHas reports whether the environment sets a key under any prefix.
func (c *checker) envHas(prefixes []string) bool {
	for k := range c.keyFile {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				return true
			}
		}
	}
	return false
}

// sourceOf returns the file that sets key: the env file that set it, else
// the component's YAML file.
func (c *checker) sourceOf(key, yamlFile string) string {
	if f, ok := c.keyFile[strings.ToUpper(key)]; ok && f != "" {
		return f
	}
	return yamlFile
}

// keyRe finds the configuration key a component's message starts with.
var keyRe = regexp.MustCompile(`^([A-Z][A-Z0-9_{}]*(?:__[A-Z0-9_{}]+)+)(?: \([^)]*\))?(?: / [A-Z0-9_]+)?: (.*)$`)

// addErrors records each line of a joined error as a finding, with the key
// it names; prefix is stripped from the first line.
func (c *checker) addErrors(sev Severity, err error, yamlFile, prefix string) {
	msg := strings.TrimPrefix(err.Error(), prefix)
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		c.addMessage(sev, line, yamlFile)
	}
}

func (c *checker) addMessage(sev Severity, line, yamlFile string) {
	if m := keyRe.FindStringSubmatch(line); m != nil {
		c.add(sev, c.sourceOf(m[1], yamlFile), m[1], "%s", m[2])
		return
	}
	c.add(sev, yamlFile, "", "%s", line)
}

// mapPath applies the path mappings.
func (c *checker) mapPath(p string) string {
	if p == "" {
		return p
	}
	clean := filepath.Clean(p)
	for _, m := range c.opts.PathMap {
		if clean == m.From {
			return m.To
		}
		if rest, ok := strings.CutPrefix(clean, m.From+string(filepath.Separator)); ok {
			return filepath.Join(m.To, rest)
		}
	}
	return p
}

// unwrapPath drops the *PathError's own path (the finding names the file).
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// fileExists reports whether path is a readable regular file; it records an
// error naming what the file is for otherwise.
func (c *checker) fileExists(path, key, what string) (os.FileInfo, bool) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		c.add(Error, path, key, "%s: %v", what, unwrapPath(err))
		return nil, false
	case !fi.Mode().IsRegular():
		c.add(Error, path, key, "%s: not a regular file", what)
		return nil, false
	}
	return fi, true
}

// fileGroup returns the file's group id (-1 when unknown).
func fileGroup(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Gid)
	}
	return -1
}

// secretFile checks a secret: it exists, is not world-readable (nor group-
// readable when private), is not empty.
func (c *checker) secretFile(path, key, what string, private bool) bool {
	fi, ok := c.fileExists(path, key, what)
	if !ok {
		return false
	}
	mode := fi.Mode().Perm()
	switch {
	case mode&0o004 != 0:
		c.add(Error, path, key, "%s is world-readable (mode %04o); chmod o-rwx %s", what, mode, path)
	case private && mode&0o040 != 0 && c.groups[fileGroup(fi)]:
		// Readable by the group the containers run with (compose group_add).
	case private && mode&0o040 != 0:
		c.add(Error, path, key, "%s is group-readable (mode %04o); a private key must be readable by its owner only (or by a group_add group of the compose file): chmod 600 %s", what, mode, path)
	}
	if mode&0o002 != 0 {
		c.add(Error, path, key, "%s is world-writable (mode %04o)", what, mode)
	}
	if fi.Size() == 0 {
		c.add(Error, path, key, "%s is empty", what)
		return false
	}
	return true
}
