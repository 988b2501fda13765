package validate_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/deploy/validate"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/internal/devcert"
	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// profile is a deployment profile in a temporary directory, written the way
// the runbook lays it out: secrets/ (htpasswd), tls/ (certificates), an
// export root, and one env file that uses container paths (/run/secrets,
// /etc/stella-mirror/tls, /srv/exports) mapped to the directory.
type profile struct {
	dir  string
	ca   *devcert.CA
	env  map[string]string
	maps []validate.PathMapping
}

const host = "mirror-primary.example.org"

// newProfile writes a good profile. root is a shared export root.
func newProfile(t *testing.T, ca *devcert.CA, root string) *profile {
	t.Helper()
	p := &profile{dir: t.TempDir(), ca: ca}
	for _, d := range []string{"secrets", "tls"} {
		if err := os.Mkdir(filepath.Join(p.dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	p.issue(t, devcert.LeafOptions{Names: []string{host}}, "primary")
	p.htpasswd(t, "-B", "primary.htpasswd", "alice")
	p.maps = []validate.PathMapping{
		{From: "/run/secrets", To: filepath.Join(p.dir, "secrets")},
		{From: "/etc/stella-mirror/tls", To: filepath.Join(p.dir, "tls")},
		{From: "/srv/exports", To: root},
	}
	p.env = map[string]string{
		"CONCELIER__MIRROR__ENABLED":                                "true",
		"CONCELIER__MIRROR__EXPORTROOT":                             "/srv/exports",
		"CONCELIER__MIRROR__REQUIREAUTHENTICATION":                  "true",
		"CONCELIER__MIRROR__MAXINDEXREQUESTSPERHOUR":                "600",
		"CONCELIER__MIRROR__DOMAINS__0__ID":                         "primary",
		"CONCELIER__MIRROR__DOMAINS__0__MAXDOWNLOADREQUESTSPERHOUR": "1200",
		"CONCELIER__AUTHORITY__BYPASSNETWORKS__0":                   "172.30.0.0/16",
		"EXCITITOR__MIRROR__ENABLED":                                "true",
		"EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT":                    "/srv/exports",
		"GATEWAY__ORIGIN":                                           "http://origin:8080",
		"GATEWAY__SITES__0__HOSTS__0":                               host,
		"GATEWAY__SITES__0__DOMAINS__0":                             "primary",
		"GATEWAY__SITES__0__CERTFILE":                               "/etc/stella-mirror/tls/primary.crt",
		"GATEWAY__SITES__0__KEYFILE":                                "/etc/stella-mirror/tls/primary.key",
		"GATEWAY__SITES__0__HTPASSWDFILE":                           "/run/secrets/primary.htpasswd",
		"GATEWAY__SITES__0__MAXINDEXREQUESTSPERHOUR":                "600",
		"GATEWAY__SITES__0__MAXDOWNLOADREQUESTSPERHOUR":             "1200",
	}
	return p
}

// issue writes tls/<name>.crt and tls/<name>.key (0600).
func (p *profile) issue(t *testing.T, o devcert.LeafOptions, name string) {
	t.Helper()
	leaf, err := p.ca.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.WriteFiles(filepath.Join(p.dir, "tls", name+".crt"), filepath.Join(p.dir, "tls", name+".key")); err != nil {
		t.Fatal(err)
	}
}

// htpasswd writes secrets/<file> with the real htpasswd and flag (-B
// bcrypt, -m apr1), mode 0640.
func (p *profile) htpasswd(t *testing.T, flag, file, user string) {
	t.Helper()
	path := filepath.Join(p.dir, "secrets", file)
	args := []string{"-b", flag}
	if _, err := os.Stat(path); err != nil {
		args = append(args, "-c")
	}
	args = append(args, path, user, "pw-"+user)
	if out, err := exec.Command("htpasswd", args...).CombinedOutput(); err != nil {
		t.Fatalf("htpasswd %v: %v\n%s", args, err, out)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
}

// validPeerToken is a peer token of a valid length.
const validPeerToken = "validate-peer-token-0123456789abcdef0123456789"

// peerToken writes secrets/<file> with data and mode, and names
// /run/secrets/peer-token as both ORIGIN__PEERTOKENFILE and
// GATEWAY__ORIGINPEERTOKENFILE.
func (p *profile) peerToken(t *testing.T, file, data string, mode os.FileMode) {
	t.Helper()
	path := filepath.Join(p.dir, "secrets", file)
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	p.env["ORIGIN__PEERTOKENFILE"] = "/run/secrets/peer-token"
	p.env["GATEWAY__ORIGINPEERTOKENFILE"] = "/run/secrets/peer-token"
}

// write writes the env file and returns its path.
func (p *profile) write(t *testing.T) string {
	t.Helper()
	keys := make([]string, 0, len(p.env))
	for k := range p.env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# mirror profile (test)\n\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, p.env[k])
	}
	path := filepath.Join(p.dir, "mirror.env")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *profile) check(t *testing.T, opts validate.Options) validate.Report {
	t.Helper()
	opts.EnvFiles = append([]string{p.write(t)}, opts.EnvFiles...)
	opts.PathMap = append(opts.PathMap, p.maps...)
	rep, err := validate.Profile(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, c := range rep.Checked {
		lines = append(lines, "ok: "+c)
	}
	for _, f := range rep.Findings {
		lines = append(lines, f.String())
	}
	t.Logf("validate:\n%s", strings.Join(lines, "\n"))
	return rep
}

func writeExport(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if _, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: 16 << 10, VEXSize: 4 << 10, SetLatest: true}); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestProfile(t *testing.T) {
	testenv.Tool(t, "htpasswd", "apache2-utils")
	ca, err := devcert.NewCA("validate test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	root := writeExport(t)

	t.Run("good profile passes", func(t *testing.T) {
		p := newProfile(t, ca, root)
		rep := p.check(t, validate.Options{})
		if !rep.OK() || len(rep.Warnings()) != 0 {
			t.Fatalf("findings on the good profile: %v", rep.Findings)
		}
		joined := strings.Join(rep.Checked, "\n")
		for _, want := range []string{"concelier export root " + root + " holds an active export", "excititor export root", "site " + host, "1 bcrypt users", "certificate valid until"} {
			if !strings.Contains(joined, want) {
				t.Errorf("checked list lacks %q:\n%s", want, joined)
			}
		}
	})

	// Each broken variant fails with an error naming the file, the key
	// and the problem.
	type want struct{ file, key, msg string }
	tests := []struct {
		name   string
		mutate func(t *testing.T, p *profile)
		want   want
	}{
		{"expired certificate", func(t *testing.T, p *profile) {
			p.issue(t, devcert.LeafOptions{Names: []string{host}, NotBefore: time.Now().Add(-40 * 24 * time.Hour), Validity: 30 * 24 * time.Hour}, "primary")
		}, want{"tls/primary.crt", "GATEWAY__SITES__0__CERTFILE", "certificate expired on"}},
		{"certificate expiring within 14 days", func(t *testing.T, p *profile) {
			p.issue(t, devcert.LeafOptions{Names: []string{host}, Validity: 5 * 24 * time.Hour}, "primary")
		}, want{"tls/primary.crt", "GATEWAY__SITES__0__CERTFILE", "expires in 4 days"}},
		{"mismatched key", func(t *testing.T, p *profile) {
			p.issue(t, devcert.LeafOptions{Names: []string{host}}, "other")
			p.env["GATEWAY__SITES__0__KEYFILE"] = "/etc/stella-mirror/tls/other.key"
		}, want{"tls/other.key", "GATEWAY__SITES__0__KEYFILE", "private key does not match the certificate"}},
		{"certificate not covering the hostname", func(t *testing.T, p *profile) {
			p.issue(t, devcert.LeafOptions{Names: []string{"mirror-community.example.org"}}, "primary")
		}, want{"tls/primary.crt", "GATEWAY__SITES__0__CERTFILE", "does not cover the site's hostname " + host + " (it names mirror-community.example.org)"}},
		{"world-readable htpasswd", func(t *testing.T, p *profile) {
			os.Chmod(filepath.Join(p.dir, "secrets", "primary.htpasswd"), 0o644)
		}, want{"secrets/primary.htpasswd", "GATEWAY__SITES__0__HTPASSWDFILE", "htpasswd file is world-readable (mode 0644)"}},
		{"group-readable private key", func(t *testing.T, p *profile) {
			os.Chmod(filepath.Join(p.dir, "tls", "primary.key"), 0o640)
		}, want{"tls/primary.key", "GATEWAY__SITES__0__KEYFILE", "private key is group-readable"}},
		{"md5 htpasswd (htpasswd -m)", func(t *testing.T, p *profile) {
			p.htpasswd(t, "-m", "primary.htpasswd", "bob")
		}, want{"secrets/primary.htpasswd", "GATEWAY__SITES__0__HTPASSWDFILE", `user "bob" uses apr1-MD5 (htpasswd -m), not bcrypt`}},
		{"missing htpasswd", func(t *testing.T, p *profile) {
			p.env["GATEWAY__SITES__0__HTPASSWDFILE"] = "/run/secrets/nope.htpasswd"
		}, want{"secrets/nope.htpasswd", "GATEWAY__SITES__0__HTPASSWDFILE", "no such file"}},
		{"missing export root", func(t *testing.T, p *profile) {
			p.env["CONCELIER__MIRROR__EXPORTROOT"] = "/srv/exports/nope"
		}, want{"nope", "CONCELIER__MIRROR__EXPORTROOT", "export root: no such file or directory"}},
		{"export root without an export", func(t *testing.T, p *profile) {
			p.env["EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT"] = "/run/secrets"
		}, want{"secrets", "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT", "no active excititor export can be served"}},
		{"pinned export that does not exist", func(t *testing.T, p *profile) {
			p.env["CONCELIER__MIRROR__ACTIVEEXPORTID"] = "20990101T000000Z"
		}, want{"", "CONCELIER__MIRROR__ACTIVEEXPORTID", "no active concelier export can be served"}},
		{"unknown key", func(t *testing.T, p *profile) {
			p.env["GATEWAY__SITES__0__HTPASWDFILE"] = "x"
		}, want{"mirror.env", "GATEWAY__SITES__0__HTPASWDFILE", "unknown key"}},
		{"malformed value", func(t *testing.T, p *profile) {
			p.env["CONCELIER__MIRROR__ENABLED"] = "maybe"
		}, want{"mirror.env", "CONCELIER__MIRROR__ENABLED", `invalid boolean "maybe"`}},
		{"download budget below one fetch", func(t *testing.T, p *profile) {
			p.env["CONCELIER__MIRROR__DOMAINS__0__MAXDOWNLOADREQUESTSPERHOUR"] = "2"
		}, want{"mirror.env", "CONCELIER__MIRROR__DOMAINS__0__MAXDOWNLOADREQUESTSPERHOUR", "one fetch of domain primary needs 3 downloads"}},
		{"inherited download budget below one fetch", func(t *testing.T, p *profile) {
			p.env["CONCELIER__MIRROR__MAXINDEXREQUESTSPERHOUR"] = "1"
			delete(p.env, "CONCELIER__MIRROR__DOMAINS__0__MAXDOWNLOADREQUESTSPERHOUR")
		}, want{"mirror.env", "CONCELIER__MIRROR__MAXINDEXREQUESTSPERHOUR", "domain primary inherits it as its download budget"}},
		{"negative gateway budget", func(t *testing.T, p *profile) {
			p.env["GATEWAY__SITES__0__MAXINDEXREQUESTSPERHOUR"] = "-1"
		}, want{"mirror.env", "GATEWAY__SITES__0__MAXINDEXREQUESTSPERHOUR", "negative"}},
		{"world-readable client secret", func(t *testing.T, p *profile) {
			path := filepath.Join(p.dir, "secrets", "concelier-authority-client")
			os.WriteFile(path, []byte("s3cr3t\n"), 0o644)
			p.env["GATEWAY__AUTHORITY__ENABLED"] = "true"
			p.env["GATEWAY__AUTHORITY__TOKENURL"] = "https://authority.example.org/connect/token"
			p.env["GATEWAY__AUTHORITY__CLIENTID"] = "mirror-gateway"
		}, want{"secrets/concelier-authority-client", "GATEWAY__AUTHORITY__CLIENTSECRETFILE", "Authority client secret is world-readable"}},
		{"short peer token", func(t *testing.T, p *profile) {
			p.peerToken(t, "peer-token", "# shared\nshort-peer-token\n", 0o600)
		}, want{"secrets/peer-token", "ORIGIN__PEERTOKENFILE", "peer-token:2: token shorter than 32 bytes"}},
		{"world-readable peer token", func(t *testing.T, p *profile) {
			p.peerToken(t, "peer-token", validPeerToken+"\n", 0o644)
		}, want{"secrets/peer-token", "GATEWAY__ORIGINPEERTOKENFILE", "peer token file is world-readable"}},
		{"gateway's peer token not accepted by the origin", func(t *testing.T, p *profile) {
			p.peerToken(t, "peer-token", validPeerToken+"\n", 0o600)
			p.peerToken(t, "gateway-peer-token", "x"+validPeerToken+"\n", 0o600)
			p.env["GATEWAY__ORIGINPEERTOKENFILE"] = "/run/secrets/gateway-peer-token"
		}, want{"secrets/gateway-peer-token", "GATEWAY__ORIGINPEERTOKENFILE", "is not one ORIGIN__PEERTOKENFILE accepts"}},
		{"origin requires a peer token the gateway does not send", func(t *testing.T, p *profile) {
			p.peerToken(t, "peer-token", validPeerToken+"\n", 0o600)
			delete(p.env, "GATEWAY__ORIGINPEERTOKENFILE")
		}, want{"mirror.env", "ORIGIN__PEERTOKENFILE", "the gateway sends none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProfile(t, ca, root)
			tt.mutate(t, p)
			rep := p.check(t, validate.Options{})
			if rep.OK() {
				t.Fatal("profile passed")
			}
			for _, f := range rep.Errors() {
				if strings.HasSuffix(f.File, tt.want.file) && f.Key == tt.want.key && strings.Contains(f.Message, tt.want.msg) {
					return
				}
			}
			t.Fatalf("no error with file …%s, key %s, message containing %q in:\n%v", tt.want.file, tt.want.key, tt.want.msg, rep.Errors())
		})
	}

	// Warnings leave the profile deployable.
	warnings := []struct {
		name   string
		mutate func(p *profile)
		opts   validate.Options
		want   want
	}{
		{"download budget below index budget", func(p *profile) {
			p.env["GATEWAY__SITES__0__MAXDOWNLOADREQUESTSPERHOUR"] = "100"
		}, validate.Options{}, want{"mirror.env", "GATEWAY__SITES__0__MAXDOWNLOADREQUESTSPERHOUR", "below the index budget 600"}},
		{"CDN in front of an authenticated site", func(p *profile) {
			p.env["GATEWAY__TRUSTEDPROXIES__0"] = "198.51.100.0/24"
		}, validate.Options{}, want{"mirror.env", "GATEWAY__TRUSTEDPROXIES", "Cache-Control: public"}},
		{"anonymous site over an authenticated domain", func(p *profile) {
			delete(p.env, "GATEWAY__SITES__0__HTPASSWDFILE")
			p.env["GATEWAY__SITES__0__ANONYMOUS"] = "true"
		}, validate.Options{}, want{"mirror.env", "GATEWAY__SITES__0__ANONYMOUS", "serves domain primary without Basic Auth, but the origin requires authentication for it (CONCELIER__MIRROR__REQUIREAUTHENTICATION)"}},
		{"bypass for everyone", func(p *profile) {
			p.env["CONCELIER__AUTHORITY__BYPASSNETWORKS__0"] = "0.0.0.0/0"
		}, validate.Options{}, want{"mirror.env", "CONCELIER__AUTHORITY__BYPASSNETWORKS__0", "lets every client bypass authentication"}},
	}
	for _, tt := range warnings {
		t.Run("warning: "+tt.name, func(t *testing.T) {
			p := newProfile(t, ca, root)
			tt.mutate(p)
			rep := p.check(t, tt.opts)
			if !rep.OK() {
				t.Fatalf("errors: %v", rep.Errors())
			}
			for _, f := range rep.Warnings() {
				if strings.HasSuffix(f.File, tt.want.file) && f.Key == tt.want.key && strings.Contains(f.Message, tt.want.msg) {
					return
				}
			}
			t.Fatalf("no warning with file …%s, key %s, message containing %q in:\n%v", tt.want.file, tt.want.key, tt.want.msg, rep.Warnings())
		})
	}
	t.Run("warning: md5 htpasswd with GATEWAY__ALLOWLEGACYHASHES", func(t *testing.T) {
		p := newProfile(t, ca, root)
		p.htpasswd(t, "-m", "primary.htpasswd", "bob")
		p.env["GATEWAY__ALLOWLEGACYHASHES"] = "true"
		rep := p.check(t, validate.Options{})
		if !rep.OK() {
			t.Fatalf("errors: %v", rep.Errors())
		}
		for _, f := range rep.Warnings() {
			if f.Key == "GATEWAY__SITES__0__HTPASSWDFILE" && strings.Contains(f.Message, `user "bob" uses apr1-MD5 (htpasswd -m), not bcrypt`) &&
				strings.Contains(f.Message, "accepted: GATEWAY__ALLOWLEGACYHASHES=true") {
				return
			}
		}
		t.Fatalf("no warning for bob's apr1 hash in %v", rep.Warnings())
	})
	t.Run("peer token on both sides: no finding", func(t *testing.T) {
		p := newProfile(t, ca, root)
		p.peerToken(t, "peer-token", "# gateway <-> origin\n"+validPeerToken+"\n", 0o600)
		rep := p.check(t, validate.Options{})
		if len(rep.Findings) != 0 {
			t.Fatalf("findings: %v", rep.Findings)
		}
	})
	t.Run("CDN that forwards Authorization: no warning", func(t *testing.T) {
		p := newProfile(t, ca, root)
		p.env["GATEWAY__TRUSTEDPROXIES__0"] = "198.51.100.0/24"
		rep := p.check(t, validate.Options{CDNForwardsAuthorization: true})
		if len(rep.Findings) != 0 {
			t.Fatalf("findings: %v", rep.Findings)
		}
	})
	t.Run("YAML configurations", func(t *testing.T) {
		p := newProfile(t, ca, root)
		oy := filepath.Join(p.dir, "origin.yaml")
		os.WriteFile(oy, []byte("concelier:\n  mirror:\n    enabled: true\n    exportRoot: "+root+"\n"), 0o644)
		gy := filepath.Join(p.dir, "gateway.yaml")
		os.WriteFile(gy, []byte(fmt.Sprintf("gateway:\n  sites:\n    - hosts: [%s]\n      domains: [primary]\n      certFile: %s\n      keyFile: %s\n      htpasswdFile: /nonexistent/primary.htpasswd\n",
			host, filepath.Join(p.dir, "tls", "primary.crt"), filepath.Join(p.dir, "tls", "primary.key"))), 0o644)
		rep, err := validate.Profile(context.Background(), validate.Options{OriginConfig: oy, GatewayConfig: gy})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Errors()) != 1 || rep.Errors()[0].Key != "GATEWAY__SITES__0__HTPASSWDFILE" || rep.Errors()[0].File != "/nonexistent/primary.htpasswd" {
			t.Fatalf("want one error naming the missing htpasswd file, got %v", rep.Findings)
		}
	})
}

func TestEnvFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.env")
	os.WriteFile(bad, []byte("# comment\nGATEWAY__ORIGIN http://x\n"), 0o644)
	tests := []struct {
		name  string
		files []string
		want  string
	}{
		{"missing env file", []string{filepath.Join(dir, "nope.env")}, "nope.env"},
		{"line without =", []string{bad}, "bad.env:2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := validate.Profile(context.Background(), validate.Options{EnvFiles: tt.files})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || !strings.Contains(rep.Errors()[0].File, tt.want) {
				t.Fatalf("want an error naming %s, got %v", tt.want, rep.Findings)
			}
		})
	}
	if _, err := validate.Profile(context.Background(), validate.Options{}); err == nil {
		t.Fatal("no error for an empty profile")
	}
}

func TestParsePathMapping(t *testing.T) {
	tests := []struct {
		in      string
		want    validate.PathMapping
		wantErr bool
	}{
		{"/run/secrets=./secrets", validate.PathMapping{From: "/run/secrets", To: "secrets"}, false},
		{"/run/secrets/=/srv/s/", validate.PathMapping{From: "/run/secrets", To: "/srv/s"}, false},
		{"/run/secrets", validate.PathMapping{}, true},
		{"=x", validate.PathMapping{}, true},
	}
	for _, tt := range tests {
		got, err := validate.ParsePathMapping(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePathMapping(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

// TestComposeProfile checks a profile the way docker compose runs it: the
// env file from --env-file, the compose file's interpolation (with a
// default holding a colon), merge keys, env_file, environment entries, bind
// mounts and group_add, which lets the containers' group read 0640 keys.
func TestComposeProfile(t *testing.T) {
	testenv.Tool(t, "htpasswd", "apache2-utils")
	ca, err := devcert.NewCA("compose test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	root := writeExport(t)
	compose := func(groupAdd string) string {
		return `x-common: &common
  image: stella-mirror:local
  env_file:
    - ${MIRROR_ENV_FILE:-env/mirror.env}
  group_add:
    - "` + groupAdd + `"
services:
  origin:
    <<: *common
    environment:
      ORIGIN__LISTEN: "0.0.0.0:8080"
      CONCELIER__AUTHORITY__BYPASSNETWORKS__0: "${MIRROR_BACKEND_SUBNET:-172.30.253.0/24}"
    volumes:
      - ${MIRROR_EXPORT_ROOT:-../exports}:/srv/stella-mirror/exports:ro
  gateway:
    <<: *common
    environment:
      - GATEWAY__LISTEN=:443
      - GATEWAY__ORIGIN=http://origin:8080
    volumes:
      - ${MIRROR_TLS_DIR:-../tls}:/etc/stella-mirror/tls:ro
      - type: bind
        source: ${MIRROR_SECRETS_DIR:-../secrets}
        target: /run/secrets
      - gateway-cache:/var/cache/stella-mirror
  sync:
    <<: *common
    profiles: ["sync"]
    environment:
      SYNC__DEST: /srv/stella-mirror/exports
`
	}
	tests := []struct {
		name     string
		groupAdd string
		wantErr  string
	}{
		{"group_add lets the containers' group read 0640 keys", fmt.Sprint(os.Getgid()), ""},
		{"another group: the 0640 key is an error", fmt.Sprint(os.Getgid() + 4242), "private key is group-readable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProfile(t, ca, root)
			if err := os.Chmod(filepath.Join(p.dir, "tls", "primary.key"), 0o640); err != nil {
				t.Fatal(err)
			}
			// The compose layout: compose/, compose/env/, ../tls, ../secrets;
			// the export root elsewhere, named by MIRROR_EXPORT_ROOT.
			delete(p.env, "CONCELIER__AUTHORITY__BYPASSNETWORKS__0")
			p.env["CONCELIER__MIRROR__EXPORTROOT"] = "/srv/stella-mirror/exports"
			p.env["EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT"] = "/srv/stella-mirror/exports"
			p.env["MIRROR_EXPORT_ROOT"] = root
			p.env["MIRROR_ENV_FILE"] = "../mirror.env"
			envFile := p.write(t)
			cdir := filepath.Join(p.dir, "compose")
			os.MkdirAll(cdir, 0o755)
			cf := filepath.Join(cdir, "docker-compose.mirror.yaml")
			if err := os.WriteFile(cf, []byte(compose(tt.groupAdd)), 0o644); err != nil {
				t.Fatal(err)
			}
			rep, err := validate.Profile(context.Background(), validate.Options{ComposeFile: cf, EnvFiles: []string{envFile}})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("findings: %v\nchecked: %v", rep.Findings, rep.Checked)
			if tt.wantErr == "" {
				if len(rep.Findings) != 0 || len(rep.Checked) != 3 {
					t.Fatalf("want a clean profile with origin (2 roots) and gateway checked, got %v / %v", rep.Findings, rep.Checked)
				}
				return
			}
			for _, f := range rep.Errors() {
				if strings.Contains(f.Message, tt.wantErr) && f.Key == "GATEWAY__SITES__0__KEYFILE" {
					return
				}
			}
			t.Fatalf("no error %q in %v", tt.wantErr, rep.Findings)
		})
	}
}
