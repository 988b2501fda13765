package profile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"github.com/stella-ops/stella-mirror/backup/inventory"
	"github.com/stella-ops/stella-mirror/gateway"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/origin"
)

// Profile is a deployment's configuration as the components see it: the
// configuration files, each loaded with the loaders of the components it
// configures, and every file those settings reference.
type Profile struct {
	// Configs are the configuration files, in the order given.
	Configs []ConfigFile
	// Refs are the files and folders the configurations reference.
	Refs []Ref
	// Warnings are references that cannot be followed (relative paths,
	// ${CREDENTIALS_DIRECTORY}/…): back their sources up with --include.
	Warnings []string
}

// ConfigFile is one configuration file and what it configures. Each file
// is loaded on its own: env files are not combined with YAML files.
type ConfigFile struct {
	// Path is the file's absolute path.
	Path string
	// Format is "yaml" or "env".
	Format string
	// Origin, Gateway and Sync are the component configurations the file
	// sets (nil when it sets nothing for that component).
	Origin  *origin.Config
	Gateway *gateway.Config
	Sync    *mirrorsync.Config
}

// Ref is a path a configuration references.
type Ref = inventory.Ref

// ref is a Ref with the setting it came from, so Rebase can rewrite it.
type ref struct {
	Ref
	field *string
}

// ConfigFormat returns the format of a configuration file: "env" for names
// ending in .env or containing .env. (mirror.env.example), "yaml" for .yaml
// and .yml, else "env" when every line is blank, a comment or KEY=VALUE.
func ConfigFormat(path string, data []byte) string {
	base := strings.ToLower(filepath.Base(path))
	switch {
	case strings.HasSuffix(base, ".env") || strings.Contains(base, ".env.") || base == ".env":
		return "env"
	case strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml"):
		return "yaml"
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !envLine.MatchString(l) {
			return "yaml"
		}
	}
	return "env"
}

var envLine = regexp.MustCompile(`^(export\s+)?[A-Za-z_][A-Za-z0-9_]*=`)

// ParseEnvFile parses an env file (systemd EnvironmentFile= / docker
// --env-file style): KEY=VALUE lines, optional "export ", blank lines and
// # comments; one pair of matching surrounding quotes is removed. It
// returns os.Environ()-style "KEY=VALUE" strings.
func ParseEnvFile(name string, data []byte) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !envLine.MatchString(l) {
			return nil, fmt.Errorf("%s:%d: not KEY=VALUE", name, n)
		}
		l = strings.TrimSpace(strings.TrimPrefix(l, "export"))
		k, v, _ := strings.Cut(l, "=")
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out = append(out, strings.TrimSpace(k)+"="+v)
	}
	return out, sc.Err()
}

// Inventory returns what the profile references, as package backup takes it.
func (p *Profile) Inventory() *inventory.Inventory {
	inv := &inventory.Inventory{Refs: append([]Ref(nil), p.Refs...), Warnings: append([]string(nil), p.Warnings...)}
	for _, c := range p.Configs {
		inv.Configs = append(inv.Configs, inventory.Config{Path: c.Path, Format: c.Format})
	}
	return inv
}

// LoadInventory loads the configuration files (Load) and returns what they
// reference: the Load function of backup.Options.
func LoadInventory(configs []string) (*inventory.Inventory, error) {
	p, err := Load(configs)
	if err != nil {
		return nil, err
	}
	return p.Inventory(), nil
}

// Load loads every configuration file with the loaders of the
// components and collects the paths they reference. A file that no
// component's loader accepts is an error naming the file and the loaders'
// complaints; so is a file that sets nothing any component reads.
func Load(configs []string) (*Profile, error) {
	p := &Profile{}
	var errs []error
	for _, c := range configs {
		cf, err := loadConfigFile(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.Configs = append(p.Configs, *cf)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.collectRefs()
	return p, nil
}

func loadConfigFile(name string) (*ConfigFile, error) {
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("configuration file: %w", err)
	}
	cf := &ConfigFile{Path: abs, Format: ConfigFormat(abs, data)}
	var path string
	var environ, originEnv []string
	if cf.Format == "yaml" {
		path = abs
	} else {
		if environ, err = ParseEnvFile(abs, data); err != nil {
			return nil, err
		}
		// The origin rejects the sync connector's keys; an env file
		// shared by both (compose's mirror.env) is fine.
		for _, kv := range environ {
			if !strings.HasPrefix(strings.ToUpper(kv), "CONCELIER__SOURCES__") {
				originEnv = append(originEnv, kv)
			}
		}
	}
	var loadErrs []error
	if c, err := origin.LoadConfig(path, originEnv); err != nil {
		loadErrs = append(loadErrs, err)
	} else if !reflect.DeepEqual(c, origin.DefaultConfig()) {
		cf.Origin = &c
	}
	if c, err := gateway.LoadConfig(path, environ); err != nil {
		loadErrs = append(loadErrs, err)
	} else if !reflect.DeepEqual(c, gateway.DefaultConfig()) {
		cf.Gateway = &c
	}
	if c, err := mirrorsync.LoadConfig(path, environ); err != nil {
		loadErrs = append(loadErrs, fmt.Errorf("loading sync configuration: %w", err))
	} else if !reflect.DeepEqual(c, mirrorsync.DefaultConfig()) {
		cf.Sync = &c
	}
	if cf.Origin == nil && cf.Gateway == nil && cf.Sync == nil {
		if len(loadErrs) > 0 {
			return nil, fmt.Errorf("%s: no component accepts this %s file:\n%w", abs, cf.Format, errors.Join(loadErrs...))
		}
		return nil, fmt.Errorf("%s: sets nothing the origin, gateway or sync reads", abs)
	}
	return cf, nil
}

// collectRefs fills p.Refs and p.Warnings from the loaded configurations.
func (p *Profile) collectRefs() {
	p.Refs, p.Warnings = nil, nil
	for i := range p.Configs {
		for _, r := range p.Configs[i].refs() {
			p.Refs = append(p.Refs, r.Ref)
		}
	}
}

// refs lists the paths one configuration file's settings reference.
func (cf *ConfigFile) refs() []ref {
	var out []ref
	add := func(key string, field *string, kind string, secret bool) *ref {
		if field == nil || *field == "" {
			return nil
		}
		out = append(out, ref{Ref{Key: key, Config: cf.Path, Path: *field, Kind: kind, Secret: secret}, field})
		return &out[len(out)-1]
	}
	state := func(key string, root *string, active string) {
		if root == nil || *root == "" {
			return
		}
		st := filepath.Join(*root, mirrorsync.StateName)
		out = append(out, ref{Ref{Key: key, Config: cf.Path, Path: st, Kind: "state", Optional: true,
			ExportRoot: *root, ActiveExportID: active}, root})
	}
	if o := cf.Origin; o != nil {
		// Private signing keys are secrets (0600 in the archive and on restore).
		add("CONCELIER__AUTHORITY__SIGNINGKEYFILE", &o.Concelier.Authority.SigningKeyFile, "key", true)
		add("EXCITITOR__AUTHORITY__SIGNINGKEYFILE", &o.Excititor.Authority.SigningKeyFile, "key", true)
		// The peer token: without it a restored origin does not start.
		add(origin.KeyPeerTokenFile, &o.Origin.PeerTokenFile, "secret", true)
		if o.Concelier.Mirror.Enabled {
			state(origin.KeyConcelierRoot, &o.Concelier.Mirror.ExportRoot, o.Concelier.Mirror.ActiveExportID)
		}
		if o.Excititor.Mirror.Enabled {
			state(origin.KeyExcititorRoot, &o.Excititor.Artifacts.FileSystem.Root, o.Excititor.Mirror.ActiveExportID)
		}
	}
	if g := cf.Gateway; g != nil {
		s := &g.Gateway
		add("GATEWAY__ORIGINCAFILE", &s.OriginCAFile, "tls", false)
		add("GATEWAY__ORIGINPEERTOKENFILE", &s.OriginPeerTokenFile, "secret", true)
		anyACME := false
		for i := range s.Sites {
			site := &s.Sites[i]
			k := fmt.Sprintf("GATEWAY__SITES__%d__", i)
			add(k+"CERTFILE", &site.CertFile, "tls", false)
			add(k+"KEYFILE", &site.KeyFile, "tls", true)
			add(k+"HTPASSWDFILE", &site.HtpasswdFile, "secret", true)
			anyACME = anyACME || site.ACME
		}
		if anyACME {
			if r := add("GATEWAY__ACME__STORAGE", &s.ACME.Storage, "acme", true); r != nil {
				r.Dir, r.Optional = true, true
			}
			add("GATEWAY__ACME__CAROOTFILE", &s.ACME.CARootFile, "tls", false)
		}
		if s.Authority.Enabled {
			add("GATEWAY__AUTHORITY__CLIENTSECRETFILE", &s.Authority.ClientSecretFile, "secret", true)
			add("GATEWAY__AUTHORITY__CAFILE", &s.Authority.CAFile, "tls", false)
		}
	}
	if sc := cf.Sync; sc != nil {
		for i := range sc.Sync.PublicKeys {
			add(fmt.Sprintf("SYNC__PUBLICKEYS__%d", i), &sc.Sync.PublicKeys[i], "key", false)
		}
		add("CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__PUBLICKEYPATH", &sc.Concelier.Sources.StellaOpsMirror.Signature.PublicKeyPath, "key", false)
		add("SYNC__BASICAUTHFILE", &sc.Sync.BasicAuthFile, "secret", true)
		add("SYNC__BEARERTOKENFILE", &sc.Sync.BearerTokenFile, "secret", true)
		add("SYNC__CAFILE", &sc.Sync.CAFile, "tls", false)
		add("SYNC__S3__CREDENTIALSFILE", &sc.Sync.S3.CredentialsFile, "secret", true)
		state("SYNC__DEST", &sc.Sync.Dest, "")
	}
	return out
}

// PathMapping rewrites a path prefix (see inventory.PathMapping).
type PathMapping = inventory.PathMapping

// Rebase rewrites every referenced path of the loaded configurations:
// first through maps (container paths → host paths), then to root + path,
// in memory (the files on disk are not touched): how a profile restored
// under --to ROOT is checked before it goes live.
func (p *Profile) Rebase(root string, maps []PathMapping) {
	maps, _ = inventory.SortPathMaps(maps)
	seen := make(map[*string]bool)
	for i := range p.Configs {
		for _, r := range p.Configs[i].refs() {
			if seen[r.field] || !filepath.IsAbs(*r.field) {
				continue
			}
			seen[r.field] = true
			*r.field = filepath.Join(root, inventory.MapPath(maps, *r.field))
		}
	}
	p.collectRefs()
}
