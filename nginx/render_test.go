package nginx_test

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/gateway"
	"github.com/stella-ops/stella-mirror/internal/devcert"
	"github.com/stella-ops/stella-mirror/internal/testenv"
	"github.com/stella-ops/stella-mirror/nginx"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// exampleConfig is the gateway configuration of testdata/gateway.yaml with
// environment overrides.
func exampleConfig(t *testing.T, env ...string) gateway.Config {
	t.Helper()
	cfg, err := gateway.LoadConfig(filepath.Join("testdata", "gateway.yaml"), env)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRenderGolden pins the rendered example (two authenticated sites with
// budgets, an anonymous one, trusted proxies, the HTTP redirect).
func TestRenderGolden(t *testing.T) {
	got, err := nginx.Render(exampleConfig(t), nginx.Options{Source: "testdata/gateway.yaml", CacheDir: "/var/cache/nginx/stella-mirror"})
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "stella-mirror.conf.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("rendered configuration differs from %s (go test ./nginx -update rewrites it):\n%s", golden, got)
	}
	for _, s := range []string{
		"limit_req zone=stella_mirror_site0_index burst=599 nodelay;", "rate=10r/m;", "add_header Retry-After 6 always;",
		"limit_req_zone $binary_remote_addr zone=stella_mirror_site2_index", "set_real_ip_from 198.51.100.0/24;",
		"proxy_cache_lock on;", "add_header X-Cache-Status $upstream_cache_status always;", "return 308 https://$host$request_uri;",
		`(?:primary|primary-extra)`, "proxy_set_header Authorization \"\";", "proxy_set_header X-Stella-Peer-Token \"\";",
	} {
		if !strings.Contains(string(got), s) {
			t.Errorf("rendered configuration lacks %q", s)
		}
	}
}

// TestNginxAcceptsRendered runs nginx -t on both forms of the rendered
// configuration, with real certificate files.
func TestNginxAcceptsRendered(t *testing.T) {
	nginxBin := testenv.Tool(t, "nginx", "nginx-light")
	dir := t.TempDir()
	ca, err := devcert.NewCA("nginx test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for i, h := range []string{"mirror-primary.example.org", "mirror-community.example.org", "mirror-public.example.org"} {
		leaf, err := ca.Issue(devcert.LeafOptions{Names: []string{h}})
		if err != nil {
			t.Fatal(err)
		}
		c, k := filepath.Join(dir, h+".crt"), filepath.Join(dir, h+".key")
		if err := leaf.WriteFiles(c, k); err != nil {
			t.Fatal(err)
		}
		env = append(env, "GATEWAY__SITES__"+itoa(i)+"__CERTFILE="+c, "GATEWAY__SITES__"+itoa(i)+"__KEYFILE="+k)
	}
	// nginx resolves the origin's name at start: a name that resolves here.
	env = append(env, "GATEWAY__LISTEN=127.0.0.1:8443", "GATEWAY__HTTPLISTEN=127.0.0.1:8080", "GATEWAY__ORIGIN=http://127.0.0.1:8080")
	cfg := exampleConfig(t, env...)
	user := ""
	if os.Geteuid() == 0 {
		user = "root"
	}
	tests := []struct {
		name string
		opts nginx.Options
		wrap bool // include the http-context file from a minimal nginx.conf
	}{
		{"full nginx.conf", nginx.Options{Full: true, Prefix: filepath.Join(dir, "full"), CacheDir: filepath.Join(dir, "full", "cache"), User: user}, false},
		{"conf.d file", nginx.Options{CacheDir: filepath.Join(dir, "conf.d", "cache"), AccessLog: filepath.Join(dir, "conf.d", "access.log")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := filepath.Join(dir, strings.Fields(tt.name)[0])
			if err := os.MkdirAll(prefix, 0o755); err != nil {
				t.Fatal(err)
			}
			conf, err := nginx.Render(cfg, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(prefix, "stella-mirror.conf")
			if err := os.WriteFile(path, conf, 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.wrap {
				// Debian's nginx.conf http settings and its default site, so
				// that a duplicate directive or default_server would show.
				main := "pid " + prefix + "/nginx.pid;\nerror_log " + prefix + "/error.log;\nevents {}\nhttp {\n" +
					"  client_body_temp_path " + prefix + "/tmp_body;\n  proxy_temp_path " + prefix + "/tmp_proxy;\n" +
					"  fastcgi_temp_path " + prefix + "/tmp_fcgi;\n  uwsgi_temp_path " + prefix + "/tmp_uwsgi;\n  scgi_temp_path " + prefix + "/tmp_scgi;\n" +
					"  sendfile on;\n  tcp_nopush on;\n  types_hash_max_size 2048;\n  default_type application/octet-stream;\n" +
					"  ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;\n  ssl_prefer_server_ciphers on;\n" +
					"  access_log " + prefix + "/access-all.log;\n  gzip on;\n" +
					"  include " + path + ";\n" +
					"  server { listen 127.0.0.1:8080 default_server; server_name _; return 404; }\n}\n"
				path = filepath.Join(prefix, "nginx.conf")
				if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out, err := exec.Command(nginxBin, "-t", "-p", prefix+"/", "-c", path, "-e", filepath.Join(prefix, "error.log")).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "test is successful") {
				t.Fatalf("nginx -t: %v\n%s\n--- config\n%s", err, out, conf)
			}
		})
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

func TestRenderRefuses(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		opts nginx.Options
		want string
	}{
		{"no cache dir", nil, nginx.Options{}, "--cache-dir: required"},
		{"ACME site", []string{"GATEWAY__SITES__0__CERTFILE=", "GATEWAY__SITES__0__KEYFILE=", "GATEWAY__SITES__0__ACME=true"},
			nginx.Options{CacheDir: "/c"}, "GATEWAY__SITES__0__ACME: the nginx front takes certificate files"},
		{"Authority", []string{"GATEWAY__AUTHORITY__ENABLED=true", "GATEWAY__AUTHORITY__TOKENURL=https://a/t", "GATEWAY__AUTHORITY__CLIENTID=x"},
			nginx.Options{CacheDir: "/c"}, "GATEWAY__AUTHORITY__ENABLED: nginx cannot fetch"},
		{"quote in a path", []string{`GATEWAY__SITES__0__CERTFILE=/etc/x".crt`}, nginx.Options{CacheDir: "/c"}, "GATEWAY__SITES__0__CERTFILE"},
		{"variable in cache dir", nil, nginx.Options{CacheDir: "/c/$host"}, "--cache-dir"},
		{"bad cache size", nil, nginx.Options{CacheDir: "/c", CacheMaxSize: "10 GB"}, "--cache-max-size"},
		{"full without prefix", nil, nginx.Options{CacheDir: "/c", Full: true}, "--prefix"},
		{"origin with a path", []string{"GATEWAY__ORIGIN=http://origin:8080/base"}, nginx.Options{CacheDir: "/c"}, "without a path"},
		{"invalid gateway config", []string{"GATEWAY__SITES__0__DOMAINS__0=Not_A_Domain"}, nginx.Options{CacheDir: "/c"}, "GATEWAY__SITES__0__DOMAINS__0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := nginx.Render(exampleConfig(t, tt.env...), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
