package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// listen creates a unixgram socket the way systemd's notify socket is, at
// a path in a temporary directory, and returns it with its address.
func listen(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifyPathSocket(t *testing.T) {
	c, path := listen(t)
	t.Setenv(Env, path)
	for _, state := range []string{Ready, Reloading(), Ready, Stopping} {
		sent, err := Notify(state)
		if err != nil || !sent {
			t.Fatalf("Notify(%q) = %v, %v", state, sent, err)
		}
		if got := recv(t, c); got != state {
			t.Fatalf("received %q, want %q", got, state)
		}
	}
}

func TestReloadingCarriesMonotonicUsec(t *testing.T) {
	r := Reloading()
	if !strings.HasPrefix(r, "RELOADING=1\nMONOTONIC_USEC=") || len(r) <= len("RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("Reloading() = %q", r)
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := "stella-mirror-sdnotify-test-" + strings.ReplaceAll(t.Name(), "/", "_") + "-" + time.Now().Format("150405.000000000")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00" + name, Net: "unixgram"})
	if err != nil {
		testenv.Missing(t, "abstract unix sockets unavailable: %v", err)
	}
	defer c.Close()
	t.Setenv(Env, "@"+name)
	if sent, err := Notify(Ready); err != nil || !sent {
		t.Fatalf("Notify = %v, %v", sent, err)
	}
	if got := recv(t, c); got != Ready {
		t.Fatalf("received %q", got)
	}
}

func TestNotifyUnsetAndBad(t *testing.T) {
	t.Setenv(Env, "")
	if sent, err := Notify(Ready); sent || err != nil {
		t.Fatalf("unset: Notify = %v, %v; want false, nil", sent, err)
	}
	t.Setenv(Env, "relative/notify.sock")
	if _, err := Notify(Ready); err == nil || !strings.Contains(err.Error(), `"relative/notify.sock"`) {
		t.Fatalf("relative path: err %v, want one naming the value", err)
	}
	t.Setenv(Env, filepath.Join(t.TempDir(), "absent.sock"))
	if _, err := Notify(Ready); err == nil || !strings.Contains(err.Error(), "absent.sock") {
		t.Fatalf("absent socket: err %v, want one naming it", err)
	}
}
