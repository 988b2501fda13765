package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/gateway"
	"github.com/stella-ops/stella-mirror/origin/origintest"
)

// TestPurgeAndStatusCommands: purge and status talk to a real gateway's
// admin handler, finding address and token through the gateway's own
// variables (GATEWAY__ADMINLISTEN, GATEWAY__ADMINTOKENFILE) as inside the
// container; a purged object is fetched from the origin again; a wrong
// token fails with a message that does not contain the token.
func TestPurgeAndStatusCommands(t *testing.T) {
	root, _, _ := syncFixture(t)
	o := origintest.New(t, root)
	originSrv := httptest.NewServer(o.Handler())
	defer originSrv.Close()

	dir := t.TempDir()
	certFile, keyFile, _ := siteCert(t, "mirror.localhost")
	const token = "purge-token-0123456789abcdef"
	tokenFile := filepath.Join(dir, "admin-token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	cfg := gateway.DefaultConfig()
	cfg.Gateway.Origin = originSrv.URL
	cfg.Gateway.Cache.Dir = filepath.Join(dir, "cache")
	cfg.Gateway.AdminTokenFile = tokenFile
	cfg.Gateway.Sites = []gateway.SiteConfig{{Hosts: []string{"mirror.localhost"}, Domains: []string{"primary"},
		CertFile: certFile, KeyFile: keyFile, Anonymous: true}}
	g, err := gateway.New(cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	public := httptest.NewServer(g.Handler())
	defer public.Close()
	adminSrv := httptest.NewServer(g.AdminHandler())
	defer adminSrv.Close()

	get := func() string {
		req, _ := http.NewRequest(http.MethodGet, public.URL+"/concelier/exports/index.json", nil)
		req.Host = "mirror.localhost"
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.Header.Get("X-Cache-Status")
	}
	get()
	if s := get(); s != "HIT" {
		t.Fatalf("second fetch %q, want HIT", s)
	}

	t.Setenv("GATEWAY__ADMINLISTEN", strings.TrimPrefix(adminSrv.URL, "http://"))
	t.Setenv("GATEWAY__ADMINTOKENFILE", tokenFile)
	var out, errb bytes.Buffer
	if code := run([]string{"purge", "--all"}, &out, &errb); code != 0 {
		t.Fatalf("purge --all: exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "purged ") || !strings.Contains(out.String(), "(everything)") {
		t.Fatalf("purge output %q", out.String())
	}
	if s := get(); s != "MISS" {
		t.Fatalf("after purge: %q, want MISS", s)
	}

	out.Reset()
	errb.Reset()
	if code := run([]string{"purge", "--path", "/concelier/exports/index.json"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "(/concelier/exports/index.json)") {
		t.Fatalf("purge --path: exit %d: %s %s", code, out.String(), errb.String())
	}

	wrong := filepath.Join(dir, "wrong-token")
	os.WriteFile(wrong, []byte("wrong-token-0123456789abcdef\n"), 0o600)
	errb.Reset()
	if code := run([]string{"purge", "--all", "--token-file", wrong}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "401") || strings.Contains(errb.String(), "wrong-token-0123") {
		t.Fatalf("wrong token: exit %d: %s", code, errb.String())
	}

	for _, args := range [][]string{{"purge"}, {"purge", "--all", "--path", "/x"}, {"purge", "--path", "relative"}} {
		errb.Reset()
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, errb.String())
		}
	}

	out.Reset()
	if code := run([]string{"status"}, &out, &errb); code != 0 {
		t.Fatalf("status: exit %d: %s", code, errb.String())
	}
	var st map[string]any
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || len(st) == 0 {
		t.Fatalf("status output is not a JSON object: %v\n%s", err, out.String())
	}

	out.Reset()
	if code := run([]string{"status", "--metrics"}, &out, &errb); code != 0 {
		t.Fatalf("status --metrics: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "# TYPE stella_mirror_gateway_origin_up gauge") {
		t.Fatalf("status --metrics printed no gateway metrics:\n%.400s", out.String())
	}
}

// TestPurgeTokenFileErrors: a token file that is unset, missing, empty,
// blank, a directory or holds two words stops purge with exit 1 and a
// message naming the problem and the file, before anything is sent (no
// gateway runs here: a request would fail differently).
func TestPurgeTokenFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("GATEWAY__ADMINTOKENFILE", "")
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"unset", "", []string{"no admin token file", "GATEWAY__ADMINTOKENFILE"}},
		{"missing", filepath.Join(dir, "nope"), []string{"nope", "no such file"}},
		{"empty", write("empty", ""), []string{"empty", "is empty"}},
		{"blank", write("blank", "\n\n"), []string{"blank", "is empty"}},
		{"directory", dir, []string{dir, "is a directory"}},
		{"two words", write("two", "abc def\n"), []string{"two", "one token without spaces"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"purge", "--all", "--admin", "127.0.0.1:1"}
			if tc.file != "" {
				args = append(args, "--token-file", tc.file)
			}
			var out, errb bytes.Buffer
			if code := run(args, &out, &errb); code != 1 {
				t.Fatalf("exit %d, want 1: %s", code, errb.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("message %q lacks %q", errb.String(), w)
				}
			}
			if strings.Contains(errb.String(), "127.0.0.1:1") {
				t.Errorf("a request was attempted: %s", errb.String())
			}
		})
	}
}
