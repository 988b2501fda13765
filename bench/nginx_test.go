package bench

import (
	"flag"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestRenderNginxGolden(t *testing.T) {
	tests := []struct {
		name   string
		cfg    NginxConfig
		golden string
	}{
		{"root", NginxConfig{Prefix: "/tmp/bench/nginx", Listen: "127.0.0.1:8081", ExportRoot: "/tmp/bench/exports", User: "root"}, "nginx.conf.golden"},
		{"unprivileged, two workers", NginxConfig{Prefix: "/tmp/bench/nginx/", Listen: "127.0.0.1:8081", ExportRoot: "/tmp/bench/./exports", WorkerProcesses: "2"}, "nginx-user.conf.golden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RenderNginx(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tt.golden, got)
		})
	}
}

func TestRenderNginxContract(t *testing.T) {
	conf, err := RenderNginx(NginxConfig{Prefix: "/p", Listen: "127.0.0.1:1", ExportRoot: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	s := string(conf)
	for _, want := range []string{
		"daemon off;", "master_process on;", "worker_processes auto;",
		"sendfile on;", "tcp_nopush on;", "keepalive_requests 100000;", "etag on;",
		`access_log "/p/access.log";`, `pid "/p/nginx.pid";`, `error_log "/p/error.log"`,
		"location = /concelier/exports/index.json {\n            alias \"/r/latest/mirror/index.json\";\n            add_header Cache-Control \"public, max-age=60\";",
		"location /concelier/exports/mirror/ {\n            alias \"/r/latest/mirror/\";\n            add_header Cache-Control \"public, max-age=300, immutable\";",
		"application/jose jws;", "application/json json;",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("config lacks %q", want)
		}
	}
	if strings.Contains(s, "user ") {
		t.Error("config has a user directive although User is empty")
	}
	// Every path nginx writes must be under the prefix, not Debian's /var.
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, "/var/") || strings.Contains(line, "/run/") {
			t.Errorf("path outside the prefix: %q", strings.TrimSpace(line))
		}
	}
}

func TestNginxConfigValidate(t *testing.T) {
	ok := NginxConfig{Prefix: "/p", Listen: "127.0.0.1:8080", ExportRoot: "/r"}
	tests := []struct {
		name   string
		mutate func(*NginxConfig)
		want   string
	}{
		{"valid", func(*NginxConfig) {}, ""},
		{"valid ipv6 loopback", func(c *NginxConfig) { c.Listen = "[::1]:8080" }, ""},
		{"no prefix", func(c *NginxConfig) { c.Prefix = "" }, "prefix is required"},
		{"relative root", func(c *NginxConfig) { c.ExportRoot = "exports" }, `export root "exports" is not absolute`},
		{"quote in path", func(c *NginxConfig) { c.ExportRoot = `/r"; include /etc/passwd; "` }, "contains a character nginx would misread"},
		{"variable in path", func(c *NginxConfig) { c.Prefix = "/p/$host" }, "contains a character nginx would misread"},
		{"newline in path", func(c *NginxConfig) { c.Prefix = "/p\n" }, "contains a character nginx would misread"},
		{"not loopback", func(c *NginxConfig) { c.Listen = "0.0.0.0:8080" }, "not a loopback address"},
		{"no port", func(c *NginxConfig) { c.Listen = "127.0.0.1" }, `listen "127.0.0.1"`},
		{"user with space", func(c *NginxConfig) { c.User = "root; daemon on" }, "not a plain user name"},
		{"bad workers", func(c *NginxConfig) { c.WorkerProcesses = "many" }, "worker processes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			_, err := RenderNginx(c)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("RenderNginx: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("RenderNginx error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
