package fastserve

import (
	"bytes"
	"context"
	"encoding/xml"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestH2Spec runs h2spec (github.com/summerwind/h2spec, a go.mod tool:
// every generic, HTTP/2 and HPACK case, strict ones included) against the
// server, once with the answers coming from a Native hook and once from
// the net/http handler: every case must pass.
func TestH2Spec(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs h2spec")
	}
	body := bytes.Repeat([]byte("stella-mirror "), 300) // > 4 KiB: the flow-control cases need DATA
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	native := func(fc *fasthttp.RequestCtx) bool {
		if _, ok := Plain(fc); !ok {
			return false
		}
		fc.Response.Header.SetContentType("text/plain")
		fc.Response.SetBodyRaw(body)
		return true
	}
	cert, _ := selfSigned(t)
	for _, tc := range []struct {
		name   string
		native func(*fasthttp.RequestCtx) bool
	}{{"native", native}, {"handler", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s := New(Config{Handler: handler, Native: tc.native, TLS: tlsConfig(cert),
				ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 10 * time.Second})
			go s.Serve(ln)
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				s.Shutdown(ctx)
			}()
			report := filepath.Join(t.TempDir(), "h2spec.xml")
			port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "go", "tool", "h2spec", "-h", "127.0.0.1", "-p", port,
				"-t", "-k", "-S", "-o", "5", "-j", report)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("h2spec: %v\n%s", err, tail(out, 8000))
			}
			total, failed := junitCounts(t, report)
			if total < 140 || failed != 0 {
				t.Fatalf("h2spec: %d cases, %d failed\n%s", total, failed, tail(out, 8000))
			}
			t.Logf("h2spec: %d cases, all passed", total)
		})
	}
}

// junitCounts reads h2spec's JUnit report.
func junitCounts(t *testing.T, path string) (total, failed int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Suites []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Errors   int `xml:"errors,attr"`
			Skipped  int `xml:"skipped,attr"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &r); err != nil {
		t.Fatalf("h2spec report: %v", err)
	}
	for _, s := range r.Suites {
		total += s.Tests
		failed += s.Failures + s.Errors + s.Skipped
	}
	return total, failed
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
