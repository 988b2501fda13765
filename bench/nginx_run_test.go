//go:build unix

package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// nginxBinary returns Debian's nginx or skips the test.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("/usr/sbin/nginx"); err != nil {
		testenv.Missing(t, "Debian's nginx (/usr/sbin/nginx) is not installed (apt-get install nginx-light)")
	}
	return "/usr/sbin/nginx"
}

// writeNginxFixture writes a tiny export tree and an nginx config for it.
func writeNginxFixture(t *testing.T) (prefix string, cfg NginxConfig) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "exports")
	files := map[string]string{
		"e1/mirror/index.json":              `{"schemaVersion":1}`,
		"e1/mirror/primary/bundle.json":     strings.Repeat("x", 100_000),
		"e1/mirror/primary/bundle.json.jws": "eyJhbGciOiJFZERTQSJ9..c2ln",
		"e1/mirror/primary/manifest.json":   `{"domainId":"primary"}`,
		"e2-not-active/mirror/index.json":   `{"old":true}`,
		"e1/excititor/primary/index.json":   `{}`,
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("e1", filepath.Join(root, "latest")); err != nil {
		t.Fatal(err)
	}
	prefix = filepath.Join(dir, "nginx")
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	addr, err := FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	cfg = NginxConfig{Prefix: prefix, Listen: addr, ExportRoot: root, WorkerProcesses: "1"}
	if os.Geteuid() == 0 {
		cfg.User = "root"
	}
	conf, err := RenderNginx(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(prefix, NginxConfName), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	return prefix, cfg
}

func TestRenderedConfigPassesNginxCheck(t *testing.T) {
	bin := nginxBinary(t)
	prefix, _ := writeNginxFixture(t)
	out, err := exec.Command(bin, append(NginxArgs(prefix), "-t")...).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "test is successful") {
		t.Fatalf("nginx -t output:\n%s", out)
	}
}

// TestNginxServesContract runs the rendered config for real: the anchor must
// serve the contract's paths, headers and bytes, or the comparison is unfair.
func TestNginxServesContract(t *testing.T) {
	bin := nginxBinary(t)
	prefix, cfg := writeNginxFixture(t)
	p, out, client := startNginx(t, bin, prefix)
	base := "http://" + cfg.Listen
	ctx := context.Background()
	if err := WaitReady(ctx, client, base+"/concelier/exports/index.json", p, 20*time.Millisecond, 10*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}

	tests := []struct {
		path, file, contentType, cacheControl string
		status                                int
	}{
		{"/concelier/exports/index.json", "e1/mirror/index.json", "application/json", IndexCacheControl, 200},
		{"/concelier/exports/mirror/primary/manifest.json", "e1/mirror/primary/manifest.json", "application/json", ImmutableCacheControl, 200},
		{"/concelier/exports/mirror/primary/bundle.json", "e1/mirror/primary/bundle.json", "application/json", ImmutableCacheControl, 200},
		{"/concelier/exports/mirror/primary/bundle.json.jws", "e1/mirror/primary/bundle.json.jws", "application/jose", ImmutableCacheControl, 200},
		{"/concelier/exports/mirror/primary/missing.json", "", "", "", 404},
		{"/e1/mirror/index.json", "", "", "", 404},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if tt.status != 200 {
				resp, err := client.Get(base + tt.path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tt.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
				}
				return
			}
			got, err := FetchBody(ctx, client, base+tt.path)
			if err != nil {
				t.Fatal(err)
			}
			want, err := FileBody(filepath.Join(cfg.ExportRoot, filepath.FromSlash(tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			if got.SHA256 != want.SHA256 || got.Size != want.Size {
				t.Errorf("body sha256 %s (%d bytes), want %s (%d bytes)", got.SHA256, got.Size, want.SHA256, want.Size)
			}
			if ct := got.Header.Get("Content-Type"); ct != tt.contentType {
				t.Errorf("Content-Type %q, want %q", ct, tt.contentType)
			}
			if cc := got.Header.Get("Cache-Control"); cc != tt.cacheControl {
				t.Errorf("Cache-Control %q, want %q", cc, tt.cacheControl)
			}
			if et := got.Header.Get("ETag"); !strings.HasPrefix(et, `"`) {
				t.Errorf("ETag %q, want a strong, quoted ETag", et)
			}
		})
	}
	if st, err := os.Stat(filepath.Join(prefix, NginxAccessLog)); err != nil || st.Size() == 0 {
		t.Errorf("access log under the prefix is missing or empty: %v", err)
	}
}
