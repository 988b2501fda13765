package main

import (
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	mux := http.NewServeMux()
	mux.HandleFunc("/health/ready", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ready\n")) })
	mux.HandleFunc("/health/notready", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no active export", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/health/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/health/ready", http.StatusFound)
	})
	mux.HandleFunc("/health/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(mux)
	defer tlsSrv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on: bind, note, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/health/ready"
	ln.Close()

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"ready", []string{"--url", srv.URL + "/health/ready"}, 0, "healthy: " + srv.URL + "/health/ready answered 200", ""},
		// RFC 6761 §6.3: *.localhost is loopback, whatever DNS says.
		{"localhost name", []string{"--url", strings.Replace(srv.URL, "127.0.0.1", "mirror-admin.localhost", 1) + "/health/ready"}, 0, "answered 200", ""},
		{"not ready", []string{"--url", srv.URL + "/health/notready"}, 1, "", "answered 503: no active export"},
		{"redirect not followed", []string{"--url", srv.URL + "/health/moved"}, 1, "", "answered 302"},
		{"connection refused", []string{"--url", closed}, 1, "", "connection refused"},
		{"timeout", []string{"--url", srv.URL + "/health/hang", "--timeout", "200ms"}, 1, "", "unhealthy"},
		{"https with cacert", []string{"--url", tlsSrv.URL + "/health/ready", "--cacert", ca}, 0, "answered 200", ""},
		{"https untrusted", []string{"--url", tlsSrv.URL + "/health/ready"}, 1, "", "certificate"},
		{"bad scheme", []string{"--url", "ftp://127.0.0.1/"}, 2, "", `--url "ftp://127.0.0.1/"`},
		{"bad timeout", []string{"--url", srv.URL, "--timeout", "0s"}, 2, "", "--timeout 0s"},
		{"missing cacert", []string{"--url", tlsSrv.URL, "--cacert", filepath.Join(t.TempDir(), "nope.pem")}, 1, "", "--cacert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"healthcheck"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if tt.stdout != "" && !strings.Contains(out, tt.stdout) {
				t.Errorf("stdout %q lacks %q", out, tt.stdout)
			}
			if tt.stderr != "" && !strings.Contains(errOut, tt.stderr) {
				t.Errorf("stderr %q lacks %q", errOut, tt.stderr)
			}
		})
	}
}

func TestHealthcheckDefaultURLFromEnv(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health/ready" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	t.Setenv(healthcheckURLEnv, srv.URL+"/health/ready")
	if code, out, errOut := runCLI(t, "healthcheck"); code != 0 || !strings.Contains(out, srv.URL) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestHealthcheckHelp(t *testing.T) {
	code, errOut, _ := runCLI(t, "healthcheck", "--help") // help goes to stdout
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"Usage: stella-mirror healthcheck", "Examples:", defaultHealthcheckURL, healthcheckURLEnv, "HEALTHCHECK"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}
