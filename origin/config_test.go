package origin

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadConfigEnv(t *testing.T) {
	env := []string{
		"PATH=/usr/bin", // unrelated variables are ignored
		"CONCELIER__MIRROR__ENABLED=true",
		"CONCELIER__MIRROR__EXPORTROOT=/srv/exports",
		"CONCELIER__MIRROR__ACTIVEEXPORTID=20260101T000000Z",
		"CONCELIER__MIRROR__REQUIREAUTHENTICATION=true",
		"CONCELIER__MIRROR__MAXINDEXREQUESTSPERHOUR=600",
		"CONCELIER__MIRROR__DOMAINS__0__ID=primary",
		"CONCELIER__MIRROR__DOMAINS__0__DISPLAYNAME=Primary",
		"CONCELIER__MIRROR__DOMAINS__0__REQUIREAUTHENTICATION=false",
		"CONCELIER__MIRROR__DOMAINS__0__MAXDOWNLOADREQUESTSPERHOUR=1200",
		"CONCELIER__MIRROR__DOMAINS__1__ID=community",
		"CONCELIER__AUTHORITY__ENABLED=true",
		"CONCELIER__AUTHORITY__ALLOWANONYMOUSFALLBACK=false",
		"CONCELIER__AUTHORITY__BYPASSNETWORKS__0=10.0.0.0/8",
		"CONCELIER__AUTHORITY__BYPASSNETWORKS__1=fd00::/8",
		"CONCELIER__AUTHORITY__ISSUER=https://authority.example.org",
		"CONCELIER__AUTHORITY__AUDIENCES__0=concelier-mirror",
		"CONCELIER__AUTHORITY__REQUIREHTTPSMETADATA=true",
		"EXCITITOR__MIRROR__ENABLED=true",
		"EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT=/srv/vex",
		"EXCITITOR__MIRROR__DOMAINS__0__ID=primary",
		"ORIGIN__LISTEN=0.0.0.0:8080",
		"ORIGIN__LOGFORMAT=text",
	}
	cfg, err := LoadConfig("", env)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	no := false
	yes := true
	c := cfg.Concelier
	checks := []struct {
		name      string
		got, want any
	}{
		{"concelier enabled", c.Mirror.Enabled, true},
		{"export root", c.Mirror.ExportRoot, "/srv/exports"},
		{"active export", c.Mirror.ActiveExportID, "20260101T000000Z"},
		{"require auth", c.Mirror.RequireAuthentication, true},
		{"index budget", c.Mirror.MaxIndexRequestsPerHour, 600},
		{"domains", c.Mirror.Domains, []DomainConfig{
			{ID: "primary", DisplayName: "Primary", RequireAuthentication: &no, MaxDownloadRequestsPerHour: 1200},
			{ID: "community"},
		}},
		{"authority enabled", c.Authority.Enabled, true},
		{"bypass networks", c.Authority.BypassNetworks, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}},
		{"issuer", c.Authority.Issuer, "https://authority.example.org"},
		{"audiences", c.Authority.Audiences, []string{"concelier-mirror"}},
		{"https metadata", c.Authority.RequireHTTPSMetadata, &yes},
		{"excititor root", cfg.Excititor.Artifacts.FileSystem.Root, "/srv/vex"},
		{"excititor domains", cfg.Excititor.Mirror.Domains, []DomainConfig{{ID: "primary"}}},
		{"listen", cfg.Origin.Listen, "0.0.0.0:8080"},
		{"admin listen default", cfg.Origin.AdminListen, "127.0.0.1:9090"},
		{"log format", cfg.Origin.LogFormat, "text"},
		{"log level default", cfg.Origin.LogLevel, "info"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
}

func TestLoadConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"malformed boolean", []string{"CONCELIER__MIRROR__ENABLED=maybe"}, `CONCELIER__MIRROR__ENABLED: invalid boolean "maybe"`},
		{"malformed integer", []string{"CONCELIER__MIRROR__MAXINDEXREQUESTSPERHOUR=lots"}, "CONCELIER__MIRROR__MAXINDEXREQUESTSPERHOUR"},
		{"malformed domain override", []string{"EXCITITOR__MIRROR__DOMAINS__0__ID=a", "EXCITITOR__MIRROR__DOMAINS__0__REQUIREAUTHENTICATION=perhaps"}, "EXCITITOR__MIRROR__DOMAINS__0__REQUIREAUTHENTICATION"},
		{"malformed network", []string{"CONCELIER__AUTHORITY__BYPASSNETWORKS__0=10.0.0.0/33"}, "CONCELIER__AUTHORITY__BYPASSNETWORKS__0"},
		{"unknown key", []string{"CONCELIER__MIRROR__EXPORTROT=/x"}, "CONCELIER__MIRROR__EXPORTROT: unknown key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig("", tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadConfig error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadConfigYAML(t *testing.T) {
	path := filepath.Join(t.TempDir(), "origin.yaml")
	yaml := `
concelier:
  mirror:
    enabled: true
    exportRoot: /srv/exports
    domains:
      - id: primary
        requireAuthentication: true
      - id: community
excititor:
  mirror:
    enabled: true
  artifacts:
    fileSystem:
      root: /srv/vex
origin:
  listen: 127.0.0.1:18080
`
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path, []string{"CONCELIER__MIRROR__EXPORTROOT=/from/env"})
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if cfg.Concelier.Mirror.ExportRoot != "/from/env" {
		t.Errorf("export root %q: the environment must override the file", cfg.Concelier.Mirror.ExportRoot)
	}
	d := cfg.Concelier.Mirror.Domains
	if len(d) != 2 || d[0].ID != "primary" || d[0].RequireAuthentication == nil || !*d[0].RequireAuthentication || d[1].RequireAuthentication != nil {
		t.Errorf("domains = %+v", d)
	}
	if cfg.Excititor.Artifacts.FileSystem.Root != "/srv/vex" || cfg.Origin.Listen != "127.0.0.1:18080" {
		t.Errorf("excititor root %q listen %q", cfg.Excititor.Artifacts.FileSystem.Root, cfg.Origin.Listen)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("concelier:\n  mirror:\n    enabled: maybe\n"), 0o644)
	if _, err := LoadConfig(bad, nil); err == nil || !strings.Contains(err.Error(), "CONCELIER__MIRROR__ENABLED") {
		t.Errorf("malformed YAML value: error %v, want one naming CONCELIER__MIRROR__ENABLED", err)
	}
}

func TestValidate(t *testing.T) {
	neg := -1
	cases := []struct {
		name   string
		env    []string
		modify func(*Config)
		want   []string // substrings of the error; nil means valid
	}{
		{name: "valid minimal", env: []string{"CONCELIER__MIRROR__ENABLED=true"}},
		{name: "root unset is valid (not-ready, not an error)", env: []string{"EXCITITOR__MIRROR__ENABLED=true"}},
		{name: "nothing enabled", want: []string{"nothing to serve"}},
		{name: "excititor export root under the Concelier key",
			env:  []string{"EXCITITOR__MIRROR__ENABLED=true", "EXCITITOR__MIRROR__EXPORTROOT=/srv/vex"},
			want: []string{"EXCITITOR__MIRROR__EXPORTROOT: not an Excititor setting; set EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT instead"}},
		{name: "domain ids", env: []string{
			"CONCELIER__MIRROR__ENABLED=true",
			"CONCELIER__MIRROR__DOMAINS__0__ID=primary",
			"CONCELIER__MIRROR__DOMAINS__1__ID=primary",
			"CONCELIER__MIRROR__DOMAINS__2__DISPLAYNAME=no id",
			"CONCELIER__MIRROR__DOMAINS__3__ID=Bad_Id",
		}, want: []string{
			`CONCELIER__MIRROR__DOMAINS__1__ID: "primary" duplicates CONCELIER__MIRROR__DOMAINS__0__ID`,
			"CONCELIER__MIRROR__DOMAINS__2__ID: empty",
			`CONCELIER__MIRROR__DOMAINS__3__ID: "Bad_Id" is not a valid domain id`,
		}},
		{name: "negative budgets", env: []string{
			"EXCITITOR__MIRROR__ENABLED=true",
			"EXCITITOR__MIRROR__MAXINDEXREQUESTSPERHOUR=-5",
			"EXCITITOR__MIRROR__DOMAINS__0__ID=primary",
			"EXCITITOR__MIRROR__DOMAINS__0__MAXDOWNLOADREQUESTSPERHOUR=-1",
		}, want: []string{
			"EXCITITOR__MIRROR__MAXINDEXREQUESTSPERHOUR: -5 is negative",
			"EXCITITOR__MIRROR__DOMAINS__0__MAXDOWNLOADREQUESTSPERHOUR: -1 is negative",
		}},
		{name: "active export id", env: []string{"CONCELIER__MIRROR__ENABLED=true", "CONCELIER__MIRROR__ACTIVEEXPORTID=../etc"},
			want: []string{`CONCELIER__MIRROR__ACTIVEEXPORTID: "../etc" is not a valid export id`}},
		{name: "reserved active export id", env: []string{"CONCELIER__MIRROR__ENABLED=true", "CONCELIER__MIRROR__ACTIVEEXPORTID=mirror"},
			want: []string{`CONCELIER__MIRROR__ACTIVEEXPORTID: "mirror" is not a valid export id`}},
		{name: "bypass network with host bits", env: []string{"CONCELIER__MIRROR__ENABLED=true", "CONCELIER__AUTHORITY__BYPASSNETWORKS__0=10.1.2.3/8"},
			want: []string{"CONCELIER__AUTHORITY__BYPASSNETWORKS__0: 10.1.2.3/8 has host bits set (did you mean 10.0.0.0/8?)"}},
		{name: "authority urls", env: []string{
			"CONCELIER__MIRROR__ENABLED=true",
			"CONCELIER__AUTHORITY__ISSUER=http://authority.internal",
			"EXCITITOR__AUTHORITY__JWKSURL=not a url",
			"EXCITITOR__AUTHORITY__ENABLED=true",
		}, want: []string{
			"CONCELIER__AUTHORITY__ISSUER: \"http://authority.internal\" is not https",
			"EXCITITOR__AUTHORITY__JWKSURL: \"not a url\" is not an absolute http(s) URL",
		}},
		{name: "http issuer allowed when https metadata is off", env: []string{
			"CONCELIER__MIRROR__ENABLED=true",
			"CONCELIER__AUTHORITY__ISSUER=http://authority.internal",
			"CONCELIER__AUTHORITY__REQUIREHTTPSMETADATA=false",
		}},
		{name: "authority enabled without issuer", env: []string{"CONCELIER__MIRROR__ENABLED=true", "CONCELIER__AUTHORITY__ENABLED=true"},
			want: []string{"CONCELIER__AUTHORITY__ISSUER: required when CONCELIER__AUTHORITY__ENABLED=true"}},
		{name: "empty audience", env: []string{"CONCELIER__MIRROR__ENABLED=true", "CONCELIER__AUTHORITY__AUDIENCES__0= "},
			want: []string{"CONCELIER__AUTHORITY__AUDIENCES__0: empty"}},
		{name: "listeners and logging", env: []string{
			"CONCELIER__MIRROR__ENABLED=true",
			"ORIGIN__LISTEN=8080",
			"ORIGIN__ADMINLISTEN=127.0.0.1:9090",
			"ORIGIN__LOGFORMAT=xml",
			"ORIGIN__LOGLEVEL=loud",
		}, want: []string{
			`ORIGIN__LISTEN: "8080" is not host:port`,
			`ORIGIN__LOGFORMAT: "xml": want json or text`,
			`ORIGIN__LOGLEVEL: "loud"`,
		}},
		{name: "drain delay out of range", env: []string{"CONCELIER__MIRROR__ENABLED=true", "ORIGIN__SHUTDOWNDELAY=-1s"},
			want: []string{"ORIGIN__SHUTDOWNDELAY: -1s: want 0 (no drain) to 5m0s"}},
		{name: "drain delay above 5m", env: []string{"CONCELIER__MIRROR__ENABLED=true", "ORIGIN__SHUTDOWNDELAY=00:05:01"},
			want: []string{"ORIGIN__SHUTDOWNDELAY: 5m1s"}},
		{name: "drain delay 5m", env: []string{"CONCELIER__MIRROR__ENABLED=true", "ORIGIN__SHUTDOWNDELAY=5m"}},
		{name: "same listener twice", env: []string{"CONCELIER__MIRROR__ENABLED=true", "ORIGIN__ADMINLISTEN=127.0.0.1:8080"},
			want: []string{"ORIGIN__ADMINLISTEN: \"127.0.0.1:8080\" is the public listener's address"}},
		{name: "sync metrics export without the textfile", env: []string{"CONCELIER__MIRROR__ENABLED=true", "ORIGIN__SYNCMETRICSEXPORT=true"},
			want: []string{"ORIGIN__SYNCMETRICSEXPORT: true requires ORIGIN__SYNCMETRICSTEXTFILE"}},
		{name: "sync metrics export with the textfile", env: []string{"CONCELIER__MIRROR__ENABLED=true",
			"ORIGIN__SYNCMETRICSEXPORT=true", "ORIGIN__SYNCMETRICSTEXTFILE=/srv/exports/.stella-mirror-sync.prom"}},
		{name: "negative budget set in code", env: []string{"CONCELIER__MIRROR__ENABLED=true"},
			modify: func(c *Config) { c.Concelier.Mirror.MaxIndexRequestsPerHour = neg },
			want:   []string{"CONCELIER__MIRROR__MAXINDEXREQUESTSPERHOUR: -1 is negative"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadConfig("", tc.env)
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if tc.modify != nil {
				tc.modify(&cfg)
			}
			err = cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate succeeded, want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate error\n%v\nlacks %q", err, w)
				}
			}
			if _, err := New(cfg, nil, nil); err == nil {
				t.Errorf("New accepted an invalid configuration")
			}
		})
	}
}

func TestConfigKeys(t *testing.T) {
	keys := strings.Join(ConfigKeys(), "\n") + "\n"
	for _, want := range []string{
		"CONCELIER__MIRROR__ENABLED", "CONCELIER__MIRROR__EXPORTROOT", "CONCELIER__MIRROR__ACTIVEEXPORTID",
		"CONCELIER__MIRROR__REQUIREAUTHENTICATION", "CONCELIER__MIRROR__MAXINDEXREQUESTSPERHOUR",
		"CONCELIER__MIRROR__DOMAINS__{n}__ID", "CONCELIER__MIRROR__DOMAINS__{n}__DISPLAYNAME",
		"CONCELIER__MIRROR__DOMAINS__{n}__REQUIREAUTHENTICATION", "CONCELIER__MIRROR__DOMAINS__{n}__MAXDOWNLOADREQUESTSPERHOUR",
		"CONCELIER__AUTHORITY__ENABLED", "CONCELIER__AUTHORITY__ALLOWANONYMOUSFALLBACK", "CONCELIER__AUTHORITY__BYPASSNETWORKS__{n}",
		"CONCELIER__AUTHORITY__ISSUER", "CONCELIER__AUTHORITY__AUDIENCES__{n}", "CONCELIER__AUTHORITY__REQUIREHTTPSMETADATA",
		"CONCELIER__AUTHORITY__JWKSURL", "CONCELIER__AUTHORITY__SIGNINGKEYFILE",
		"EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT", "EXCITITOR__MIRROR__ENABLED", "EXCITITOR__AUTHORITY__BYPASSNETWORKS__{n}",
		"ORIGIN__LISTEN", "ORIGIN__ADMINLISTEN", "ORIGIN__LOGFORMAT", "ORIGIN__LOGLEVEL",
		"ORIGIN__SYNCMETRICSTEXTFILE", "ORIGIN__SYNCMETRICSEXPORT",
	} {
		if !strings.Contains(keys, want+"\n") {
			t.Errorf("ConfigKeys lacks %s", want)
		}
	}
	if strings.Contains(keys, "EXCITITOR__MIRROR__EXPORTROOT") {
		t.Errorf("ConfigKeys lists the rejected EXCITITOR__MIRROR__EXPORTROOT")
	}
}

// TestReadinessReasons: /health/ready names why it is not ready.
func TestReadinessReasons(t *testing.T) {
	cases := []struct {
		name string
		rel  string
		want string
	}{
		{"malformed concelier index", "mirror/index.json", "concelier: "},
		{"malformed excititor domain index", "excititor/community/index.json", "excititor: export e1: domain community"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			te := writeExport(t, root, "e1", treeOpts{})
			overwrite(t, te, tc.rel, []byte("{not json"))
			h := newHarness(t, testConfig(root), options{})
			r := do(t, h.admin.Client(), "GET", h.admin.URL+"/health/ready", nil)
			if r.status != 503 || !strings.Contains(string(r.body), `"status":"not_ready"`) || !strings.Contains(string(r.body), tc.want) {
				t.Fatalf("/health/ready: %d %s, want 503 naming %q", r.status, r.body, tc.want)
			}
			if h.o.Ready() == nil {
				t.Fatalf("Ready() = nil")
			}
		})
	}
}
