package serve

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// short is the write-progress timeout of these tests.
const short = 300 * time.Millisecond

// bigWriter writes up to 256 MiB in 64 KiB pieces until a write fails,
// and counts the handlers that returned.
func bigWriter(returned *atomic.Int64) http.Handler {
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer returned.Add(1)
		if r.URL.Path == "/small" {
			w.Write(chunk[:2<<10]) // 20,000 of them are more than the socket buffers hold
			return
		}
		for range 4096 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
}

// TestHTTP2ZeroWindowStreamsReset (F2): a client that announces
// SETTINGS_INITIAL_WINDOW_SIZE=0, opens 128 streams and never sends
// WINDOW_UPDATE gets every stream reset after the write-progress timeout,
// and every handler returns (its goroutine and buffers are freed), while
// the connection itself, which the client keeps reading and answering
// pings on, stays open. Before, the streams were held forever.
func TestHTTP2ZeroWindowStreamsReset(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			var returned atomic.Int64
			s := startTLS(t, Limits{Engine: engine, WriteProgressTimeout: short}, bigWriter(&returned))
			c, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
				t.Fatalf("negotiated %q", p)
			}
			io.WriteString(c, http2.ClientPreface)
			fr := http2.NewFramer(c, c)
			if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
				t.Fatal(err)
			}
			var hb bytes.Buffer
			enc := hpack.NewEncoder(&hb)
			const streams = 128
			for i := range streams {
				hb.Reset()
				for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/big"}} {
					enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
				}
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
					t.Fatal(err)
				}
			}
			var resets, goaways atomic.Int64
			go func() {
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					switch f := f.(type) {
					case *http2.RSTStreamFrame:
						resets.Add(1)
					case *http2.GoAwayFrame:
						goaways.Add(1)
					case *http2.SettingsFrame:
						if !f.IsAck() {
							fr.WriteSettingsAck()
						}
					case *http2.PingFrame:
						if !f.IsAck() {
							fr.WritePing(true, f.Data)
						}
					}
				}
			}()
			waitFor(t, "every stream reset and every handler returned", func() bool {
				return resets.Load() == streams && returned.Load() == streams
			})
			if g := goaways.Load(); g != 0 {
				t.Errorf("%d GOAWAY: the connection was ended, not the streams", g)
			}
			if n := s.counter(t, "write_timeouts_total", "scope", "stream"); n != streams {
				t.Errorf("write_timeouts_total{scope=stream} = %v, want %d", n, streams)
			}
		})
	}
}

// TestHTTP1ClientThatDoesNotRead (F4): over TLS, a client that asks for a
// large body and never reads, and a client that pipelines 20,000
// requests without reading, lose their connections once the peer has
// accepted nothing for the write-progress timeout; the handler returns.
// Before, both were held for as long as the client liked.
func TestHTTP1ClientThatDoesNotRead(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			var returned atomic.Int64
			s := startTLS(t, Limits{Engine: engine, WriteProgressTimeout: short}, bigWriter(&returned))
			dial := func() *tls.Conn {
				c, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			big := dial()
			io.WriteString(big, "GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
			waitFor(t, "the big download's handler returned and its connection closed", func() bool {
				return returned.Load() == 1 && s.g.Guard().Open() == 0
			})

			pipe := dial()
			go func() {
				req := []byte("GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n")
				batch := bytes.Repeat(req, 100)
				for range 200 { // 20,000 requests
					if _, err := pipe.Write(batch); err != nil {
						return
					}
				}
			}()
			// The kernel may still take a few bytes now and then (zero-window
			// probes, its receive queue collapsed), each of which counts as
			// progress, hence the longer bound.
			waitForWithin(t, 60*time.Second, "the pipelining client's connection closed", func() bool {
				return s.g.Guard().Open() == 0 && returned.Load() > 1
			})
			if n := s.counter(t, "write_timeouts_total", "scope", "connection"); n < 2 {
				t.Errorf("write_timeouts_total{scope=connection} = %v, want at least 2", n)
			}
		})
	}
}

// TestSlowReaderThatProgresses: a download read slowly, a little every
// tenth of the timeout, for longer than the timeout, completes.
func TestSlowReaderThatProgresses(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	for _, engine := range engines {
		for _, h2 := range []bool{false, true} {
			t.Run(engine+map[bool]string{false: "/http1", true: "/h2"}[h2], func(t *testing.T) {
				s := startTLS(t, Limits{Engine: engine, WriteProgressTimeout: short}, h)
				res, err := s.httpClient(t, h2).Get(s.url("/"))
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				var got bytes.Buffer
				buf := make([]byte, 64<<10)
				start := time.Now()
				for {
					n, err := res.Body.Read(buf)
					got.Write(buf[:n])
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatalf("after %d bytes: %v", got.Len(), err)
					}
					if time.Since(start) < 2*short {
						time.Sleep(short / 10) // the client's pace, not synchronisation
					}
				}
				if !bytes.Equal(got.Bytes(), body) {
					t.Fatalf("got %d bytes, want %d", got.Len(), len(body))
				}
			})
		}
	}
}

// TestConnectionCaps: beyond MaxConnsPerIP, connections from that address
// are closed at once while another address (127.0.0.2) still connects;
// beyond MaxConns, every address is refused until one closes. Both are
// counted. The per-address cap is at most half the total, so that with
// MaxConns set and the default per-address cap (256) one address still
// cannot take every place (make dos idle-fd: MaxConns 200, one attacking
// address held all 200 and the legitimate client was refused).
func TestConnectionCaps(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			for _, tc := range []struct {
				name    string
				lim     Limits
				otherOK bool // a connection from 127.0.0.2 is accepted at the cap
				reason  string
			}{
				{"per address", Limits{MaxConnsPerIP: 3, MaxConns: -1}, true, "max_conns_per_ip"},
				{"total", Limits{MaxConns: 3, MaxConnsPerIP: -1}, false, "max_conns"},
				// One address gets at most half the total: the default
				// per-address cap (256) and a larger one are lowered to it.
				{"per address by default: half the total", Limits{MaxConns: 6}, true, "max_conns_per_ip"},
				{"per address above half the total", Limits{MaxConns: 7, MaxConnsPerIP: 100}, true, "max_conns_per_ip"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					tc.lim.Engine = engine
					s := startTLS(t, tc.lim, h)
					dial := func(from string) (*tls.Conn, error) {
						d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
						c, err := tls.DialWithDialer(d, "tcp", s.addr, &tls.Config{RootCAs: s.pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
						if err != nil {
							return nil, err
						}
						c.SetDeadline(time.Now().Add(5 * time.Second))
						if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
							c.Close()
							return nil, err
						}
						b := make([]byte, 512)
						n, err := c.Read(b)
						if err != nil || !strings.HasPrefix(string(b[:n]), "HTTP/1.1 200") {
							c.Close()
							return nil, io.ErrUnexpectedEOF
						}
						return c, nil
					}
					var held []*tls.Conn
					for range 3 {
						c, err := dial("127.0.0.1")
						if err != nil {
							t.Fatalf("connection %d under the cap: %v", len(held)+1, err)
						}
						held = append(held, c)
					}
					if c, err := dial("127.0.0.1"); err == nil {
						c.Close()
						t.Fatal("a fourth connection from 127.0.0.1 was served")
					}
					c, err := dial("127.0.0.2")
					if tc.otherOK != (err == nil) {
						t.Fatalf("a connection from 127.0.0.2: %v, want served=%v", err, tc.otherOK)
					}
					if c != nil {
						c.Close()
					}
					if n := s.counter(t, "connections_rejected_total", "reason", tc.reason); n < 1 {
						t.Errorf("connections_rejected_total{reason=%s} = %v", tc.reason, n)
					}
					held[0].Close()
					waitFor(t, "a place freed by a closed connection is given to a new one", func() bool {
						c, err := dial("127.0.0.1")
						if err == nil {
							c.Close()
						}
						return err == nil
					})
					for _, c := range held[1:] {
						c.Close()
					}
				})
			}
		})
	}
}

// TestHTTP2StreamCap: the HTTP/2 server announces MaxConcurrentStreams
// (SETTINGS_MAX_CONCURRENT_STREAMS) on both engines, and refuses a stream
// beyond it.
func TestHTTP2StreamCap(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-hold
	})
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			s := startTLS(t, Limits{Engine: engine, MaxConcurrentStreams: 3}, h)
			c, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, http2.ClientPreface)
			fr := http2.NewFramer(c, c)
			fr.WriteSettings()
			var hb bytes.Buffer
			enc := hpack.NewEncoder(&hb)
			for i := range 4 {
				hb.Reset()
				for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/"}} {
					enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
				}
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
			}
			announced, refused := uint32(0), false
			for !(announced != 0 && refused) {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("announced %d, refused %v, then %v", announced, refused, err)
				}
				switch f := f.(type) {
				case *http2.SettingsFrame:
					if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
						announced = v
					}
				case *http2.RSTStreamFrame:
					refused = f.StreamID == 7 && (f.ErrCode == http2.ErrCodeRefusedStream || f.ErrCode == http2.ErrCodeProtocol)
				}
			}
			if announced != 3 {
				t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want 3", announced)
			}
		})
	}
}

// TestHTTP2StreamsTakePlacesUnderCaps (F3 at the descriptor limit): an
// HTTP/2 stream in flight takes a place under MaxConnsPerIP like a
// connection, so that one connection cannot hold a descriptor per stream
// beyond the caps: with a cap of 3 per address, a connection (one place)
// gets two streams served and the others answered 503 with Retry-After
// at once (HEADERS with END_STREAM, which no flow-control window holds
// back), counted in streams_refused_total; the places come back when the
// handlers return. Before, all four streams were served.
func TestHTTP2StreamsTakePlacesUnderCaps(t *testing.T) {
	hold := make(chan struct{})
	var returned atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer returned.Add(1)
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-hold
	})
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			hold = make(chan struct{})
			returned.Store(0)
			s := startTLS(t, Limits{Engine: engine, MaxConnsPerIP: 3, MaxConns: -1, MaxConcurrentStreams: 10}, h)
			c, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, http2.ClientPreface)
			fr := http2.NewFramer(c, c)
			fr.WriteSettings()
			var hb bytes.Buffer
			enc := hpack.NewEncoder(&hb)
			for i := range 4 {
				hb.Reset()
				for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/"}} {
					enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
				}
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
			}
			statuses := map[string]int{}
			retryAfter := 0
			dec := hpack.NewDecoder(4096, nil)
			for n := 0; n < 4; {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("after %v: %v", statuses, err)
				}
				switch f := f.(type) {
				case *http2.SettingsFrame:
					if !f.IsAck() {
						fr.WriteSettingsAck()
					}
				case *http2.HeadersFrame:
					fields, err := dec.DecodeFull(f.HeaderBlockFragment())
					if err != nil {
						t.Fatal(err)
					}
					for _, hf := range fields {
						switch hf.Name {
						case ":status":
							statuses[hf.Value]++
						case "retry-after":
							retryAfter++
						}
					}
					n++
				case *http2.RSTStreamFrame:
					t.Fatalf("stream %d reset (%v), want an answer", f.StreamID, f.ErrCode)
				}
			}
			if statuses["200"] != 2 || statuses["503"] != 2 || retryAfter != 2 {
				t.Fatalf("statuses %v, %d with Retry-After; want 2×200 and 2×503 with Retry-After (the connection takes 1 of 3 places)", statuses, retryAfter)
			}
			if n := s.counter(t, "streams_refused_total", "reason", "max_conns_per_ip"); n != 2 {
				t.Errorf("streams_refused_total{reason=max_conns_per_ip} = %v, want 2", n)
			}
			if n := s.g.Guard().Open(); n != 3 {
				t.Errorf("places taken: %d, want 3 (the connection and 2 streams)", n)
			}
			close(hold)
			waitFor(t, "the streams' places given back when their handlers return", func() bool {
				return returned.Load() == 2 && s.g.Guard().Open() == 1
			})
		})
	}
}
