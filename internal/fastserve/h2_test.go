package fastserve

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// h2Client returns a client that speaks HTTP/2 only to the test server.
func h2Client(t *testing.T, pool *x509.CertPool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func tlsConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
}

// TestHTTP2ConcurrentStreams: many streams at once on one connection,
// small and large, flushed and not, each get exactly their own bytes; the
// batched writes never mix or drop a frame.
func TestHTTP2ConcurrentStreams(t *testing.T) {
	cert, pool := selfSigned(t)
	body := func(n, seed int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + (i+seed)%26)
		}
		return b
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			t.Errorf("served over %s", r.Proto)
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		seed, _ := strconv.Atoi(r.URL.Query().Get("seed"))
		b := body(n, seed)
		w.Header().Set("Content-Length", strconv.Itoa(n))
		if r.URL.Query().Has("flush") {
			for len(b) > 0 {
				k := min(len(b), 7000)
				w.Write(b[:k])
				w.(http.Flusher).Flush()
				b = b[k:]
			}
			return
		}
		w.Write(b)
	})
	// Generous timeouts: 300 streams of up to 1 MiB (more than one
	// connection's 250) on a loaded machine, under -race.
	base := startWith(t, Config{Handler: h, TLS: tlsConfig(cert), ReadHeaderTimeout: 20 * time.Second, IdleTimeout: 60 * time.Second})
	cl := h2Client(t, pool)
	cl.Timeout = 2 * time.Minute
	sizes := []int{0, 1, 100, 5000, 16384, 70000, 1 << 20}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := sizes[i%len(sizes)]
			url := fmt.Sprintf("%s/?n=%d&seed=%d", base, n, i)
			if i%3 == 0 {
				url += "&flush"
			}
			resp, err := cl.Get(url)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || resp.ProtoMajor != 2 || !bytes.Equal(got, body(n, i)) {
				errs <- fmt.Errorf("request %d (%d bytes): got %d bytes over %s, %v", i, n, len(got), resp.Proto, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestHTTP2Shutdown: Shutdown lets a running HTTP/2 stream finish and
// returns once it has; a stream still running at the deadline is cut off
// (the client sees an error, not a complete body) and Shutdown says so.
func TestHTTP2Shutdown(t *testing.T) {
	cert, pool := selfSigned(t)
	for _, tc := range []struct {
		name    string
		release bool // the handler finishes before the deadline
	}{{"stream finishes", true}, {"deadline passes", false}} {
		t.Run(tc.name, func(t *testing.T) {
			started := make(chan struct{})
			release := make(chan struct{})
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "6")
				io.WriteString(w, "abc")
				w.(http.Flusher).Flush()
				close(started)
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, "def")
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s := New(Config{Handler: h, TLS: tlsConfig(cert), ReadHeaderTimeout: 2 * time.Second})
			served := make(chan error, 1)
			go func() { served <- s.Serve(ln) }()
			got := make(chan string, 1)
			go func() {
				resp, err := h2Client(t, pool).Get("https://" + ln.Addr().String() + "/")
				if err != nil {
					got <- err.Error()
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					got <- "error after " + string(b)
					return
				}
				got <- string(b)
			}()
			<-started
			shut := make(chan error, 1)
			deadline := 20 * time.Second
			if !tc.release {
				deadline = 300 * time.Millisecond
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				shut <- s.Shutdown(ctx)
			}()
			if tc.release {
				close(release)
				if b := <-got; b != "abcdef" {
					t.Fatalf("download got %q, want abcdef", b)
				}
				if err := <-shut; err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			} else {
				if err := <-shut; !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Shutdown returned %v, want the deadline", err)
				}
				if b := <-got; b == "abcdef" {
					t.Fatal("the stream cut off at the deadline read as complete")
				}
				close(release)
			}
			if err := <-served; err != http.ErrServerClosed {
				t.Fatalf("Serve returned %v", err)
			}
			// After Shutdown nothing is accepted.
			if c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second); err == nil {
				c.Close()
				t.Fatal("the listener still accepts after Shutdown")
			}
		})
	}
}
