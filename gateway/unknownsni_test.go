package gateway

import (
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/internal/syncbuf"
)

// TestUnknownSNILoggedAndCounted: a handshake for a name no site serves is
// refused (TLS alert) and, on the gateway's side, counted in
// stella_mirror_gateway_tls_unknown_server_name_total and logged at debug
// level with the SNI. The server logs and counts before it sends the alert
// the client sees, so both are there once tls.Dial has failed.
func TestUnknownSNILoggedAndCounted(t *testing.T) {
	var logs syncbuf.Buffer
	h := newHarness(t, harnessOpts{opts: Options{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}})
	for _, sni := range []string{"attacker.example", "nobody.localhost"} {
		conn, err := tls.Dial("tcp", h.addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
			t.Fatalf("handshake for %s succeeded", sni)
		}
		if !strings.Contains(err.Error(), "internal error") {
			t.Errorf("client error for %s: %v, want the TLS internal error alert", sni, err)
		}
		if want := `"msg":"TLS handshake for an unknown server name","sni":"` + sni + `","remote":"127.0.0.1:`; !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
	if want := "stella_mirror_gateway_tls_unknown_server_name_total 2"; !strings.Contains(h.metrics(), want) {
		t.Errorf("metrics lack %q", want)
	}
	// A known name is neither counted nor logged.
	conn, err := tls.Dial("tcp", h.addr, &tls.Config{ServerName: hostPrimary, RootCAs: h.ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if want := "stella_mirror_gateway_tls_unknown_server_name_total 2"; !strings.Contains(h.metrics(), want) {
		t.Errorf("a known name changed the count: metrics lack %q", want)
	}
}
