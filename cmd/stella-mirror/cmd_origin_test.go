package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/internal/syncbuf"
)

func TestOriginHelpListsKeys(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"origin", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"CONCELIER__MIRROR__EXPORTROOT", "CONCELIER__MIRROR__DOMAINS__{n}__ID", "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT",
		"CONCELIER__AUTHORITY__BYPASSNETWORKS__{n}", "ORIGIN__ADMINLISTEN", "Example:", "--check-config", "--admin-listen",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("--help (stdout) lacks %q", want)
		}
	}
}

func TestOriginCheckConfig(t *testing.T) {
	dir := t.TempDir()
	shortTokenFile, goodTokenFile := filepath.Join(dir, "short"), filepath.Join(dir, "good")
	os.WriteFile(shortTokenFile, []byte("# peer token\nsecret-but-short\n"), 0o600)
	os.WriteFile(goodTokenFile, []byte("peer-token-0123456789abcdef0123456789abcdef\n"), 0o600)
	cases := []struct {
		name        string
		env         map[string]string
		args        []string
		code        int
		out, errOut string
	}{
		{name: "valid, root unset warns",
			env:  map[string]string{"CONCELIER__MIRROR__ENABLED": "true"},
			code: 0, out: "warning: CONCELIER__MIRROR__EXPORTROOT: not set"},
		{name: "valid",
			env:  map[string]string{"EXCITITOR__MIRROR__ENABLED": "true", "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT": os.TempDir()},
			code: 0, out: "configuration OK"},
		{name: "missing root is not OK and names the path",
			env:  map[string]string{"EXCITITOR__MIRROR__ENABLED": "true", "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT": "/nonexistent/stella-vex"},
			code: 1, errOut: "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT: export root /nonexistent/stella-vex: no such file or directory"},
		{name: "malformed value names the key",
			env:  map[string]string{"CONCELIER__MIRROR__ENABLED": "maybe"},
			code: 1, errOut: `CONCELIER__MIRROR__ENABLED: invalid boolean "maybe"`},
		{name: "excititor root under the wrong key",
			env:  map[string]string{"EXCITITOR__MIRROR__ENABLED": "true", "EXCITITOR__MIRROR__EXPORTROOT": "/srv/vex"},
			code: 1, errOut: "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT"},
		{name: "flag overrides env and is validated",
			env:  map[string]string{"CONCELIER__MIRROR__ENABLED": "true", "ORIGIN__LISTEN": "127.0.0.1:1"},
			args: []string{"--listen", "nonsense"},
			code: 1, errOut: `ORIGIN__LISTEN: "nonsense" is not host:port`},
		{name: "bad flag", args: []string{"--no-such-flag"}, code: 2},
		{name: "short peer token names the file and line, not the token",
			env: map[string]string{"EXCITITOR__MIRROR__ENABLED": "true", "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT": os.TempDir(),
				"EXCITITOR__AUTHORITY__BYPASSNETWORKS__0": "10.0.0.0/8", "ORIGIN__PEERTOKENFILE": shortTokenFile},
			code: 1, errOut: "ORIGIN__PEERTOKENFILE: " + shortTokenFile + ":2: token shorter than 32 bytes"},
		{name: "valid peer token file",
			env: map[string]string{"EXCITITOR__MIRROR__ENABLED": "true", "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT": os.TempDir(),
				"EXCITITOR__AUTHORITY__BYPASSNETWORKS__0": "10.0.0.0/8", "ORIGIN__PEERTOKENFILE": goodTokenFile},
			code: 0, out: "configuration OK"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"origin", "--check-config"}, tc.args...), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, stdout.String(), stderr.String())
			}
			if tc.code != 0 && strings.Contains(stdout.String(), "configuration OK") {
				t.Errorf("exit %d but stdout says configuration OK", code)
			}
			if strings.Contains(stdout.String()+stderr.String(), "secret-but-short") {
				t.Errorf("the output quotes the token")
			}
			if !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.errOut) {
				t.Errorf("stdout %q (want %q), stderr %q (want %q)", stdout.String(), tc.out, stderr.String(), tc.errOut)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the server goroutine and the test.
type syncBuffer = syncbuf.Buffer

// TestOriginServes starts the subcommand on ephemeral ports, fetches the
// index and checks the access log on stdout; cancelling stops it cleanly.
func TestOriginServes(t *testing.T) {
	root := filepath.Join(t.TempDir(), "exports")
	res, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: 8 << 10, VEXSize: 2 << 10, SetLatest: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONCELIER__MIRROR__ENABLED", "true")
	t.Setenv("CONCELIER__MIRROR__EXPORTROOT", root)
	t.Setenv("EXCITITOR__MIRROR__ENABLED", "true")
	t.Setenv("EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT", root)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	stdout := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runOrigin(ctx, []string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, stdout, pw)
		pw.Close()
	}()
	// Read the log until both listeners are bound; keep draining after.
	addrs := map[string]string{}
	sc := bufio.NewScanner(pr)
	for len(addrs) < 2 && sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "listening" {
			addrs[rec["endpoint"].(string)] = rec["addr"].(string)
		}
	}
	if len(addrs) < 2 {
		t.Fatalf("origin did not report its listeners (err %v)", <-done)
	}
	go io.Copy(io.Discard, pr)

	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + addrs["origin"] + "/concelier/exports/index.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Stella-Export-Id") != res.ExportID {
		t.Fatalf("index: %d from %q", resp.StatusCode, resp.Header.Get("X-Stella-Export-Id"))
	}
	resp, err = client.Get("http://" + addrs["origin-admin"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "stella_mirror_build_info") || !strings.Contains(string(metrics), "go_goroutines") {
		t.Errorf("admin /metrics lacks build info or Go runtime metrics")
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("origin returned %v after cancel", err)
	}
	if !strings.Contains(stdout.String(), `"path":"/concelier/exports/index.json"`) {
		t.Errorf("access log (stdout) lacks the request:\n%s", stdout.String())
	}
}
