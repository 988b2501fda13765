package bench

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// checkGolden compares a rendered config with testdata/golden, rewriting
// the file first under -update.
func checkGolden(t *testing.T, golden string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", golden)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./bench -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("rendered config differs from %s (go test ./bench -run Golden -update):\n%s", path, got)
	}
}

// startNginx runs bin in the foreground on the nginx.conf under prefix,
// stopped when the test ends. It returns the process, the nginx output
// (stdout and stderr) for failure messages, and an HTTP client without
// proxy whose idle connections close at the end.
func startNginx(t *testing.T, bin, prefix string) (*Process, *bytes.Buffer, *http.Client) {
	t.Helper()
	cmd := exec.Command(bin, NginxArgs(prefix)...)
	out := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	p, err := StartProcess("nginx", cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(5 * time.Second); err != nil {
			t.Error(err)
		}
	})
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	return p, out, client
}
