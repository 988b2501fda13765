package bench

import (
	"strings"
	"testing"
)

func TestRenderNginxProxyGolden(t *testing.T) {
	cfg := NginxProxyConfig{Prefix: "/tmp/bench/nginx-gw", ListenAuth: "127.0.0.1:8443", ListenOpen: "127.0.0.1:8444",
		CertFile: "/tmp/bench/tls/cert.pem", KeyFile: "/tmp/bench/tls/key.pem", HtpasswdFile: "/tmp/bench/htpasswd",
		Upstream: "127.0.0.1:8080", User: "root"}
	got, err := RenderNginxProxy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "nginx-proxy.conf.golden", got)
}

func TestNginxProxyConfigValidate(t *testing.T) {
	ok := NginxProxyConfig{Prefix: "/p", ListenAuth: "127.0.0.1:1", ListenOpen: "127.0.0.1:2",
		CertFile: "/c", KeyFile: "/k", HtpasswdFile: "/h", Upstream: "127.0.0.1:3"}
	tests := []struct {
		name   string
		mutate func(*NginxProxyConfig)
		want   string
	}{
		{"relative htpasswd", func(c *NginxProxyConfig) { c.HtpasswdFile = "h" }, `htpasswd "h" is not absolute`},
		{"quote in cert", func(c *NginxProxyConfig) { c.CertFile = `/c"` }, "certificate"},
		{"public listen", func(c *NginxProxyConfig) { c.ListenOpen = "0.0.0.0:2" }, "not a loopback address"},
		{"bad upstream", func(c *NginxProxyConfig) { c.Upstream = "origin" }, `upstream "origin"`},
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
