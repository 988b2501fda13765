package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// TestGatewaySurvivesFDExhaustion (F1): the gateway, started under
// prlimit --nofile=120, is sent 110 idle TCP connections. It stays up
// (connections beyond its cap, derived from the limit, are closed at
// once; accept errors would be retried), its admin listener still
// answers, and once the connections close it serves a normal request.
// Before, the accept loop returned on EMFILE and the process logged
// "stopped" and exited 0. It ends with SIGTERM and a clean exit.
func TestGatewaySurvivesFDExhaustion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the gateway as a process")
	}
	if runtime.GOOS != "linux" {
		t.Skip("prlimit is Linux's")
	}
	prlimit := testenv.Tool(t, "prlimit", "util-linux")
	start := time.Now()
	cert, key, roots := siteCert(t, "mirror.localhost")
	cmd := exec.Command(prlimit, "--nofile=120", os.Args[0], "gateway")
	cmd.Env = append(os.Environ(), "STELLA_MIRROR_TEST_RUN_MAIN=1",
		"GATEWAY__LISTEN=127.0.0.1:0", "GATEWAY__HTTPLISTEN=127.0.0.1:0", "GATEWAY__ADMINLISTEN=127.0.0.1:0",
		"GATEWAY__ORIGIN=http://127.0.0.1:9", "GATEWAY__LOGFORMAT=json",
		"GATEWAY__SITES__0__HOSTS__0=mirror.localhost", "GATEWAY__SITES__0__DOMAINS__0=primary",
		"GATEWAY__SITES__0__CERTFILE="+cert, "GATEWAY__SITES__0__KEYFILE="+key, "GATEWAY__SITES__0__ANONYMOUS=true")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)    // receives the exit once
	done := make(chan struct{})      // closed at the exit
	addrs := make(chan [2]string, 1) // gateway, admin
	var logTail strings.Builder
	go func() {
		var gw, admin string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if logTail.Len() < 1<<16 {
				logTail.WriteString(line + "\n")
			}
			var rec struct{ Msg, Endpoint, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				switch rec.Endpoint {
				case "gateway":
					gw = rec.Addr
				case "gateway-admin":
					admin = rec.Addr
				}
				if gw != "" && admin != "" {
					addrs <- [2]string{gw, admin}
					gw = ""
				}
			}
		}
		exited <- cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
	})
	var gw, admin string
	select {
	case a := <-addrs:
		gw, admin = a[0], a[1]
	case err := <-exited:
		t.Fatalf("the gateway exited before listening: %v\n%s", err, logTail.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway did not listen within 30s")
	}

	var conns []net.Conn
	for range 110 {
		c, err := net.DialTimeout("tcp", gw, 5*time.Second)
		if err != nil {
			continue // refused at the door is fine
		}
		conns = append(conns, c)
	}
	alive := func() bool {
		select {
		case err := <-exited:
			t.Fatalf("the gateway exited (%v) under 110 idle connections\n%s", err, logTail.String())
		default:
		}
		return true
	}
	health := func() bool {
		res, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + admin + "/health/live")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}
	t.Logf("%s: %d connections held", time.Since(start), len(conns))
	waitUntil(t, "the admin listener answers while the connections are held", func() bool { return alive() && health() })
	for _, c := range conns {
		c.Close()
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, gw)
		}}}
	waitUntil(t, "the gateway answers a normal request after the connections closed", func() bool {
		alive()
		res, err := client.Get("https://mirror.localhost/health")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode > 0
	})
	t.Logf("%s: served after the connections closed; stopping", time.Since(start))
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logTail.String())
		}
		t.Logf("%s: exited", time.Since(start))
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}
}

// waitUntil polls cond every 20 ms for at most 20 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
