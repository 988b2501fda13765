package fastserve

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Tests of the HTTP/2 connection (h2conn.go) that speak raw frames to a
// real Server over TLS: a client Framer writes exactly the frames a case
// needs and every frame the server sends is checked.

// h2tDeadline bounds each test connection: a safety net against hangs,
// never a means of synchronisation.
const h2tDeadline = 5 * time.Second

// h2tServer is a Server under test, listening on loopback with TLS.
type h2tServer struct {
	addr     string
	pool     *x509.CertPool
	s        *Server
	done     chan struct{} // closed when Serve has returned
	serveErr error
}

// h2tStart serves cfg (TLS and, when unset, ReadHeaderTimeout and Handler
// filled in); the cleanup shuts it down and checks what Serve returned.
func h2tStart(t *testing.T, cfg Config) *h2tServer {
	t.Helper()
	cert, pool := selfSigned(t)
	cfg.TLS = tlsConfig(cert)
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = 2 * time.Second
	}
	if cfg.Handler == nil {
		cfg.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "handler "+r.URL.Path)
		})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &h2tServer{addr: ln.Addr().String(), pool: pool, s: New(cfg), done: make(chan struct{})}
	go func() {
		srv.serveErr = srv.s.Serve(ln)
		close(srv.done)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-srv.done
		if srv.serveErr != http.ErrServerClosed {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", srv.serveErr)
		}
	})
	return srv
}

// h2tFrame is a frame the server sent, copied out of the Framer.
type h2tFrame struct {
	typ      http2.FrameType
	flags    http2.Flags
	stream   uint32
	length   uint32              // the payload's length on the wire
	data     []byte              // DATA payload, PING data, or a raw header block fragment
	fields   []hpack.HeaderField // a decoded header block (HEADERS with its CONTINUATIONs)
	code     http2.ErrCode       // RST_STREAM, GOAWAY
	last     uint32              // GOAWAY's last stream id
	incr     uint32              // WINDOW_UPDATE
	settings []http2.Setting
}

func (f h2tFrame) endStream() bool {
	return (f.typ == http2.FrameHeaders || f.typ == http2.FrameData) && f.flags.Has(http2.FlagDataEndStream)
}

func (f h2tFrame) String() string {
	s := fmt.Sprintf("%v stream=%d len=%d flags=%#x", f.typ, f.stream, f.length, uint8(f.flags))
	switch f.typ {
	case http2.FrameRSTStream:
		s += " " + f.code.String()
	case http2.FrameGoAway:
		s += fmt.Sprintf(" %v last=%d", f.code, f.last)
	case http2.FrameWindowUpdate:
		s += fmt.Sprintf(" incr=%d", f.incr)
	}
	return s
}

// h2tClient is one raw HTTP/2 connection to the server under test. Only
// the test's goroutine uses it.
type h2tClient struct {
	t        *testing.T
	conn     *tls.Conn
	fr       *http2.Framer
	enc      *hpack.Encoder
	encBuf   bytes.Buffer
	dec      *hpack.Decoder // for raw header blocks (h2tRawHeaders)
	settings map[http2.SettingID]uint32
	pending  []h2tFrame // stream frames read while waiting for something else
	nextID   uint32
	pings    uint64

	// autoWindow gives every DATA byte back at once, so that responses
	// never wait for flow control unless a test wants them to.
	autoWindow bool
	// Our send windows (request bodies), from the server's WINDOW_UPDATEs.
	sendConn   int64
	sendStream map[uint32]int64
}

type h2tOption func(*h2tClient)

// h2tRawHeaders makes the client read HEADERS and CONTINUATION frames as
// they are, instead of joined and decoded by the Framer.
func h2tRawHeaders(c *h2tClient) {
	c.fr.ReadMetaHeaders = nil
	c.dec = hpack.NewDecoder(4096, nil)
}

// h2tDial connects, sends the preface and the SETTINGS given, and returns
// once the server's SETTINGS and its ACK of ours were read.
func h2tDial(t *testing.T, srv *h2tServer, settings []http2.Setting, opts ...h2tOption) *h2tClient {
	t.Helper()
	conn, err := tls.Dial("tcp", srv.addr, &tls.Config{RootCAs: srv.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	conn.SetDeadline(time.Now().Add(h2tDeadline))
	c := &h2tClient{t: t, conn: conn, nextID: 1, autoWindow: true, settings: make(map[http2.SettingID]uint32),
		sendConn: 65535, sendStream: make(map[uint32]int64)}
	c.fr = http2.NewFramer(conn, conn)
	c.fr.AllowIllegalWrites = true
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.encBuf)
	for _, o := range opts {
		o(c)
	}
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	c.check(c.fr.WriteSettings(settings...))
	gotSettings, gotAck := false, false
	for !gotSettings || !gotAck {
		f := c.wire()
		switch {
		case f.typ != http2.FrameSettings:
			t.Fatalf("before SETTINGS: %v", f)
		case f.flags.Has(http2.FlagSettingsAck):
			if !gotSettings {
				t.Fatal("the server's SETTINGS ACK came before its SETTINGS")
			}
			gotAck = true
		default:
			if gotSettings {
				t.Fatal("two SETTINGS frames from the server")
			}
			gotSettings = true
			for _, s := range f.settings {
				c.settings[s.ID] = s.Val
			}
			c.check(c.fr.WriteSettingsAck())
		}
	}
	return c
}

func (c *h2tClient) check(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatalf("client write: %v", err)
	}
}

// read reads the next frame from the connection.
func (c *h2tClient) read() (h2tFrame, error) {
	f, err := c.fr.ReadFrame()
	if err != nil {
		return h2tFrame{}, err
	}
	h := f.Header()
	out := h2tFrame{typ: h.Type, flags: h.Flags, stream: h.StreamID, length: h.Length}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		out.fields = slices.Clone(f.Fields)
	case *http2.HeadersFrame:
		out.data = bytes.Clone(f.HeaderBlockFragment())
	case *http2.ContinuationFrame:
		out.data = bytes.Clone(f.HeaderBlockFragment())
	case *http2.DataFrame:
		out.data = bytes.Clone(f.Data())
	case *http2.RSTStreamFrame:
		out.code = f.ErrCode
	case *http2.GoAwayFrame:
		out.code, out.last = f.ErrCode, f.LastStreamID
	case *http2.WindowUpdateFrame:
		out.incr = f.Increment
	case *http2.PingFrame:
		out.data = bytes.Clone(f.Data[:])
	case *http2.SettingsFrame:
		f.ForeachSetting(func(s http2.Setting) error {
			out.settings = append(out.settings, s)
			return nil
		})
	}
	return out, nil
}

// wire reads the next frame; a read error fails the test.
func (c *h2tClient) wire() h2tFrame {
	c.t.Helper()
	f, err := c.read()
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// note handles a frame read while waiting for another: connection frames
// are answered or applied, stream frames kept for later. GOAWAY fails the
// test: a test that expects one reads it itself.
func (c *h2tClient) note(f h2tFrame) {
	c.t.Helper()
	switch f.typ {
	case http2.FrameSettings:
		if !f.flags.Has(http2.FlagSettingsAck) {
			c.check(c.fr.WriteSettingsAck())
		}
	case http2.FramePing:
		if !f.flags.Has(http2.FlagPingAck) {
			c.check(c.fr.WritePing(true, [8]byte(f.data)))
		}
	case http2.FrameWindowUpdate:
		if f.stream == 0 {
			c.sendConn += int64(f.incr)
		} else {
			c.sendStream[f.stream] += int64(f.incr)
		}
	case http2.FrameGoAway:
		c.t.Fatalf("unexpected %v", f)
	default:
		c.pending = append(c.pending, f)
	}
}

// frameFor returns the next frame of stream id (WINDOW_UPDATEs are
// applied, not returned).
func (c *h2tClient) frameFor(id uint32) h2tFrame {
	c.t.Helper()
	for i, f := range c.pending {
		if f.stream == id {
			c.pending = slices.Delete(c.pending, i, i+1)
			return f
		}
	}
	for {
		f := c.wire()
		if f.stream == id && f.typ != http2.FrameWindowUpdate {
			return f
		}
		c.note(f)
	}
}

// sync sends a PING and reads until its ACK: everything the server sent
// before it answered the PING has been read (and kept) by then.
func (c *h2tClient) sync() {
	c.t.Helper()
	c.pings++
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], c.pings)
	c.check(c.fr.WritePing(false, p))
	for {
		f := c.wire()
		if f.typ == http2.FramePing && f.flags.Has(http2.FlagPingAck) {
			if !bytes.Equal(f.data, p[:]) {
				c.t.Fatalf("PING ACK with %x, want %x", f.data, p)
			}
			return
		}
		c.note(f)
	}
}

// quiet checks that, up to a PING round trip, the server sent nothing
// more on stream id.
func (c *h2tClient) quiet(id uint32) {
	c.t.Helper()
	c.sync()
	for _, f := range c.pending {
		if f.stream == id {
			c.t.Errorf("frame after the stream ended: %v", f)
		}
	}
}

// closed reads until the connection ends and returns the frames read on
// the way; the safety deadline passing fails the test.
func (c *h2tClient) closed() []h2tFrame {
	c.t.Helper()
	var frames []h2tFrame
	for {
		f, err := c.read()
		if err == nil {
			frames = append(frames, f)
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.t.Fatalf("the connection was not closed (frames: %v)", frames)
		}
		return frames
	}
}

// headers writes a header block (name, value pairs) as one HEADERS frame.
func (c *h2tClient) headers(id uint32, end bool, kv ...string) {
	c.t.Helper()
	c.encBuf.Reset()
	for i := 0; i < len(kv); i += 2 {
		c.check(c.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}))
	}
	c.check(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.encBuf.Bytes(), EndStream: end, EndHeaders: true}))
}

// request opens the next stream with a request's header block (extra are
// more name, value pairs) and returns its id.
func (c *h2tClient) request(method, path string, end bool, extra ...string) uint32 {
	c.t.Helper()
	id := c.nextID
	c.nextID += 2
	c.headers(id, end, append([]string{":method", method, ":scheme", "https", ":authority", "localhost", ":path", path}, extra...)...)
	return id
}

// upload sends body on stream id within the windows the server gives;
// false if the stream was reset (or answered) before all of it was sent.
func (c *h2tClient) upload(id uint32, body []byte, end bool) bool {
	c.t.Helper()
	win := int64(65535)
	if v, ok := c.settings[http2.SettingInitialWindowSize]; ok {
		win = int64(v)
	}
	if _, ok := c.sendStream[id]; !ok {
		c.sendStream[id] = win
	}
	for {
		for c.sendConn <= 0 || c.sendStream[id] <= 0 {
			f := c.wire()
			c.note(f)
			if f.stream == id && f.typ != http2.FrameWindowUpdate {
				return false
			}
		}
		n := min(int64(len(body)), c.sendConn, c.sendStream[id], 16384)
		last := end && n == int64(len(body))
		c.check(c.fr.WriteData(id, last, body[:n]))
		c.sendConn -= n
		c.sendStream[id] -= n
		body = body[n:]
		if len(body) == 0 {
			return true
		}
	}
}

// h2tResp is a stream's answer as received.
type h2tResp struct {
	status string
	fields []hpack.HeaderField // the regular fields of the first header block
	body   []byte
	frames []h2tFrame
	reset  bool
	code   http2.ErrCode // of the RST_STREAM
}

func (r *h2tResp) get(name string) (string, bool) {
	for _, f := range r.fields {
		if f.Name == name {
			return f.Value, true
		}
	}
	return "", false
}

// response reads stream id's frames until END_STREAM or RST_STREAM.
func (c *h2tClient) response(id uint32) h2tResp {
	c.t.Helper()
	var r h2tResp
	for {
		f := c.frameFor(id)
		r.frames = append(r.frames, f)
		switch f.typ {
		case http2.FrameHeaders:
			if r.status != "" {
				break // trailers
			}
			for _, hf := range f.fields {
				if hf.Name == ":status" {
					r.status = hf.Value
				} else if !strings.HasPrefix(hf.Name, ":") {
					r.fields = append(r.fields, hf)
				}
			}
			if r.status == "" {
				c.t.Fatalf("stream %d: a header block without :status: %v", id, f.fields)
			}
		case http2.FrameData:
			if r.status == "" {
				c.t.Fatalf("stream %d: DATA before HEADERS", id)
			}
			r.body = append(r.body, f.data...)
			if c.autoWindow && f.length > 0 {
				c.check(c.fr.WriteWindowUpdate(0, f.length))
				if !f.endStream() {
					c.check(c.fr.WriteWindowUpdate(id, f.length))
				}
			}
		case http2.FrameRSTStream:
			r.reset, r.code = true, f.code
			return r
		default:
			c.t.Fatalf("stream %d: unexpected %v", id, f)
		}
		if f.endStream() {
			return r
		}
	}
}

// get sends a GET (or HEAD) without a body and reads the response.
func (c *h2tClient) get(method, path string) (uint32, h2tResp) {
	c.t.Helper()
	id := c.request(method, path, true)
	return id, c.response(id)
}

// expectOK checks r is a complete 200 with body want.
func expectOK(t *testing.T, r h2tResp, want string) {
	t.Helper()
	if r.reset || r.status != "200" || string(r.body) != want {
		t.Fatalf("got status %q body %q reset %v (%v), want 200 %q", r.status, r.body, r.reset, r.code, want)
	}
}

// h2tBody is n bytes without a short period, so that a misplaced chunk
// shows.
func h2tBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8 + i>>16)
	}
	return b
}

// TestH2FlowControl: with a 100-byte initial stream window (or none, then
// 1000 bytes by a later SETTINGS), and the connection window given back in
// small steps, a large answer from the Handler or from a Native hook never
// sends more DATA than the windows allow, and arrives whole after the
// WINDOW_UPDATEs, END_STREAM on its last DATA frame only.
func TestH2FlowControl(t *testing.T) {
	const size = 200 << 10
	body := h2tBody(size)
	srv := h2tStart(t, Config{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/handler/length":
				w.Header().Set("Content-Length", strconv.Itoa(size))
				w.Write(body)
			case "/handler/pieces":
				for i := 0; i < size; i += 10000 {
					w.Write(body[i:min(i+10000, size)])
				}
			case "/handler/buffered":
				w.Write(body[:60<<10]) // under bufferLimit: handed back whole
			}
		}),
		Native: func(fc *fasthttp.RequestCtx) bool {
			switch string(fc.Path()) {
			case "/native/raw":
				fc.Response.SetBodyRaw(body)
			case "/native/stream":
				fc.Response.SetBodyStream(bytes.NewReader(body), size)
			case "/native/stream-unsized":
				fc.Response.SetBodyStream(bytes.NewReader(body), -1)
			case "/native/small":
				fc.Response.SetBodyRaw(body[:50])
			default:
				return false
			}
			return true
		},
	})
	tests := []struct {
		path   string
		size   int
		length string // the content-length field, "" for none
	}{
		{"/handler/length", size, strconv.Itoa(size)},
		{"/handler/pieces", size, ""},
		{"/handler/buffered", 60 << 10, strconv.Itoa(60 << 10)},
		{"/native/raw", size, strconv.Itoa(size)},
		{"/native/stream", size, strconv.Itoa(size)},
		{"/native/stream-unsized", size, ""},
		{"/native/small", 50, "50"},
	}
	const streamStep, connStep = 3000, 7000
	for _, tc := range tests {
		for _, viaSettings := range []bool{false, true} {
			name := strings.TrimPrefix(tc.path, "/")
			initial := int64(100)
			if viaSettings {
				name += "/window from SETTINGS"
				initial = 0
			}
			t.Run(name, func(t *testing.T) {
				c := h2tDial(t, srv, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: uint32(initial)}})
				c.autoWindow = false
				id := c.request("GET", tc.path, true)
				connWin, streamWin := int64(65535), initial
				var got []byte
				var head *h2tFrame
				connUpdates := 0
				for done := false; !done; {
					f := c.frameFor(id)
					switch f.typ {
					case http2.FrameHeaders:
						if head != nil {
							t.Fatalf("a second HEADERS: %v", f)
						}
						if f.endStream() {
							t.Fatal("END_STREAM on HEADERS of an answer with a body")
						}
						head = &f
						if viaSettings {
							// The new initial window applies to the open stream.
							c.check(c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000}))
							streamWin += 1000
						}
					case http2.FrameData:
						if head == nil {
							t.Fatal("DATA before HEADERS")
						}
						n := int64(f.length)
						if n > connWin || n > streamWin {
							t.Fatalf("DATA of %d bytes after %d; the windows were %d (connection) and %d (stream)", n, len(got), connWin, streamWin)
						}
						connWin -= n
						streamWin -= n
						got = append(got, f.data...)
						if len(got) > tc.size {
							t.Fatalf("%d bytes received, the body is %d", len(got), tc.size)
						}
						if f.endStream() {
							done = true
							break
						}
						if connWin == 0 {
							c.check(c.fr.WriteWindowUpdate(0, connStep))
							connWin += connStep
							connUpdates++
						}
						if streamWin == 0 {
							c.check(c.fr.WriteWindowUpdate(id, streamStep))
							streamWin += streamStep
						}
					default:
						t.Fatalf("unexpected %v", f)
					}
				}
				if !bytes.Equal(got, body[:tc.size]) {
					t.Fatalf("body of %d bytes differs from the %d sent", len(got), tc.size)
				}
				var status, length string
				for _, hf := range head.fields {
					switch hf.Name {
					case ":status":
						status = hf.Value
					case "content-length":
						length = hf.Value
					}
				}
				if status != "200" || length != tc.length {
					t.Fatalf("status %q content-length %q, want 200 and %q", status, length, tc.length)
				}
				if tc.size > 65535 && connUpdates == 0 {
					t.Fatal("the connection window was never used up")
				}
				c.quiet(id)
			})
		}
	}
}

// TestH2NativeAndDeclined: a Native hook answers what it takes and
// declines the rest to the Handler; either way the answer has its status,
// content-length and date, lower-case names, and none of the
// connection-specific fields either side set; HEAD gets the headers with
// END_STREAM and no DATA.
func TestH2NativeAndDeclined(t *testing.T) {
	offered := make(chan string, 100)
	srv := h2tStart(t, Config{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Connection", "close")
			h.Set("Keep-Alive", "timeout=5")
			h.Set("Transfer-Encoding", "chunked")
			h.Set("Upgrade", "h2c")
			h.Set("Proxy-Connection", "keep-alive")
			h.Set("X-Answered-By", "Handler")
			h["x-Raw-Key"] = []string{"raw"}
			io.WriteString(w, "handler "+r.URL.Path)
		}),
		Native: func(fc *fasthttp.RequestCtx) bool {
			offered <- string(fc.Method()) + " " + string(fc.Path())
			u, ok := Plain(fc)
			if !ok || !strings.HasPrefix(u.Path, "/native/") {
				return false
			}
			fc.Response.Header.Set("Keep-Alive", "timeout=5")
			fc.Response.Header.Set("Upgrade", "h2c")
			fc.Response.Header.Set("Proxy-Connection", "keep-alive")
			fc.Response.Header.Set("X-Answered-By", "Native")
			fc.Response.Header.Set("X-Raw-Key", "raw")
			fc.SetConnectionClose()
			fc.SetContentType("text/plain; charset=utf-8")
			fc.SetBodyString("native " + u.Path)
			return true
		},
	})
	tests := []struct {
		method, path string
		body         string // a request body
		by, want     string
	}{
		{"GET", "/native/a", "", "Native", "native /native/a"},
		{"HEAD", "/native/a", "", "Native", "native /native/a"},
		{"GET", "/other", "", "Handler", "handler /other"},
		{"HEAD", "/other", "", "Handler", "handler /other"},
		{"POST", "/native/a", "x=1", "Handler", "handler /native/a"},
		{"GET", "/native/b", "", "Native", "native /native/b"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			c := h2tDial(t, srv, nil)
			var id uint32
			if tc.body != "" {
				id = c.request(tc.method, tc.path, false, "content-length", strconv.Itoa(len(tc.body)))
				c.upload(id, []byte(tc.body), true)
			} else {
				id = c.request(tc.method, tc.path, true)
			}
			r := c.response(id)
			if r.reset || r.status != "200" {
				t.Fatalf("status %q, reset %v (%v)", r.status, r.reset, r.code)
			}
			if got := <-offered; got != tc.method+" "+tc.path {
				t.Errorf("the hook was offered %q", got)
			}
			if v, _ := r.get("x-answered-by"); v != tc.by {
				t.Errorf("answered by %q, want %s", v, tc.by)
			}
			if v, _ := r.get("x-raw-key"); v != "raw" {
				t.Errorf("x-raw-key %q, want raw", v)
			}
			if v, _ := r.get("content-length"); v != strconv.Itoa(len(tc.want)) {
				t.Errorf("content-length %q, want %d", v, len(tc.want))
			}
			if v, ok := r.get("date"); !ok {
				t.Error("no date")
			} else if _, err := http.ParseTime(v); err != nil {
				t.Errorf("date %q: %v", v, err)
			}
			for _, hf := range r.fields {
				if hf.Name != strings.ToLower(hf.Name) {
					t.Errorf("field name %q is not lower case", hf.Name)
				}
				switch hf.Name {
				case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
					t.Errorf("connection-specific field sent: %s: %s", hf.Name, hf.Value)
				}
			}
			if tc.method == "HEAD" {
				if len(r.frames) != 1 || !r.frames[0].endStream() {
					t.Errorf("HEAD answered with %v, want one HEADERS with END_STREAM", r.frames)
				}
			} else if string(r.body) != tc.want {
				t.Errorf("body %q, want %q", r.body, tc.want)
			}
			c.quiet(id)
		})
	}
}

// TestH2RequestBodies: a body reaches the Handler whole (r.Body and
// r.ContentLength); a body over MaxBodyBytes gets 413 and RST_STREAM
// NO_ERROR without reaching it; a body that contradicts its
// content-length, and a content-length on a request without a body, get
// RST_STREAM PROTOCOL_ERROR. The connection serves on after each.
func TestH2RequestBodies(t *testing.T) {
	const limit = 100 << 10
	type seen struct {
		path   string
		length int64
		body   []byte
		err    error
	}
	seenc := make(chan seen, 100)
	srv := h2tStart(t, Config{
		MaxBodyBytes: limit,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			seenc <- seen{r.URL.Path, r.ContentLength, b, err}
			io.WriteString(w, "got "+strconv.Itoa(len(b)))
		}),
	})
	// served returns what the Handler saw for path; requests it ran for
	// before that are errors (each case's requests have paths of their
	// own).
	served := func(t *testing.T, path string) seen {
		t.Helper()
		for s := range seenc {
			if s.path == path {
				return s
			}
			t.Errorf("the Handler ran for %s (a %d-byte body, ContentLength %d)", s.path, len(s.body), s.length)
		}
		panic("unreachable")
	}
	// expectNotServed checks the connection still serves, and that the
	// Handler did not run for path before.
	expectNotServed := func(t *testing.T, c *h2tClient, path string) {
		t.Helper()
		id := c.request("POST", path+"/after", false)
		c.upload(id, []byte("ok"), true)
		expectOK(t, c.response(id), "got 2")
		if s := served(t, path+"/after"); string(s.body) != "ok" {
			t.Fatalf("the Handler saw %q, want ok", s.body)
		}
	}
	n := 0
	next := func() string {
		n++
		return "/upload/" + strconv.Itoa(n)
	}

	for _, tc := range []struct {
		name     string
		size     int
		declared bool
	}{
		{"small with content-length", 10, true},
		{"small without content-length", 10, false},
		{"several windows", 90 << 10, true},
		{"several windows without content-length", 90 << 10, false},
		{"exactly the limit", limit, true},
	} {
		t.Run("ok/"+tc.name, func(t *testing.T) {
			c := h2tDial(t, srv, nil)
			path := next()
			body := h2tBody(tc.size)
			var extra []string
			if tc.declared {
				extra = []string{"content-length", strconv.Itoa(tc.size), "content-type", "application/octet-stream"}
			}
			id := c.request("POST", path, false, extra...)
			if !c.upload(id, body, true) {
				t.Fatal("the stream ended before the body was sent")
			}
			expectOK(t, c.response(id), "got "+strconv.Itoa(tc.size))
			s := served(t, path)
			if s.err != nil || !bytes.Equal(s.body, body) || s.length != int64(tc.size) {
				t.Fatalf("the Handler read %d bytes (equal: %v, error %v), ContentLength %d; want %d", len(s.body), bytes.Equal(s.body, body), s.err, s.length, tc.size)
			}
		})
	}

	t.Run("ok/ended by trailers", func(t *testing.T) {
		c := h2tDial(t, srv, nil)
		path := next()
		id := c.request("POST", path, false, "content-length", "5", "te", "trailers")
		c.check(c.fr.WriteData(id, false, []byte("hello")))
		c.headers(id, true, "x-checksum", "abc")
		expectOK(t, c.response(id), "got 5")
		if s := served(t, path); string(s.body) != "hello" || s.length != 5 {
			t.Fatalf("the Handler saw %q, ContentLength %d", s.body, s.length)
		}
	})

	t.Run("ok/content-length 0 without a body", func(t *testing.T) {
		c := h2tDial(t, srv, nil)
		path := next()
		id := c.request("POST", path, true, "content-length", "0")
		expectOK(t, c.response(id), "got 0")
		if s := served(t, path); len(s.body) != 0 || s.length != 0 {
			t.Fatalf("the Handler saw %d bytes, ContentLength %d", len(s.body), s.length)
		}
	})

	t.Run("over MaxBodyBytes", func(t *testing.T) {
		c := h2tDial(t, srv, nil)
		path := next()
		id := c.request("POST", path, false)
		body := h2tBody(limit + 1)
		if !c.upload(id, body[:limit], false) { // at the limit: still accepted
			t.Fatal("the stream ended before the limit")
		}
		c.upload(id, body[limit:], false)
		r := c.response(id)
		if r.reset || r.status != "413" || !r.frames[len(r.frames)-1].endStream() {
			t.Fatalf("got %q reset %v (%v), want a complete 413", r.status, r.reset, r.code)
		}
		// The client is told to stop sending the rest (RFC 9113 §8.1).
		f := c.frameFor(id)
		if f.typ != http2.FrameRSTStream || f.code != http2.ErrCodeNo {
			t.Fatalf("after the 413: %v, want RST_STREAM NO_ERROR", f)
		}
		expectNotServed(t, c, path)
	})

	for _, tc := range []struct {
		name, length string
		data         []string // DATA frames; the last has END_STREAM
		trailers     bool     // a trailer block ends the stream instead
	}{
		{"shorter than content-length", "10", []string{"abc"}, false},
		{"shorter, in two frames", "10", []string{"abc", "de"}, false},
		{"shorter, ended by trailers", "10", []string{"abc"}, true},
		{"longer than content-length", "3", []string{"abcdef"}, false},
		{"longer, in two frames", "3", []string{"ab", "cd"}, false},
		{"a body after content-length 0", "0", []string{"a"}, false},
		{"no body, ended by trailers", "5", nil, true},
	} {
		t.Run("content-length mismatch/"+tc.name, func(t *testing.T) {
			c := h2tDial(t, srv, nil)
			path := next()
			id := c.request("POST", path, false, "content-length", tc.length)
			for i, d := range tc.data {
				c.check(c.fr.WriteData(id, !tc.trailers && i == len(tc.data)-1, []byte(d)))
			}
			if tc.trailers {
				c.headers(id, true, "x-checksum", "abc")
			}
			r := c.response(id)
			if !r.reset || r.code != http2.ErrCodeProtocol || len(r.frames) != 1 {
				t.Errorf("got %v, want only RST_STREAM PROTOCOL_ERROR", r.frames)
			}
			expectNotServed(t, c, path)
		})
	}

	t.Run("content-length without a body", func(t *testing.T) {
		c := h2tDial(t, srv, nil)
		path := next()
		id := c.request("POST", path, true, "content-length", "5")
		r := c.response(id)
		if !r.reset || r.code != http2.ErrCodeProtocol || len(r.frames) != 1 {
			t.Errorf("got %v, want only RST_STREAM PROTOCOL_ERROR", r.frames)
		}
		expectNotServed(t, c, path)
	})
}

// TestH2RefusedBodyWhileAnswering: after a body over MaxBodyBytes, while
// the 413 waits for the client's window, more DATA and END_STREAM (on DATA
// or on a trailer block) on the stream must not make the request reach the
// Handler.
func TestH2RefusedBodyWhileAnswering(t *testing.T) {
	for _, trailers := range []bool{false, true} {
		t.Run(fmt.Sprintf("trailers=%v", trailers), func(t *testing.T) { testH2RefusedBodyWhileAnswering(t, trailers) })
	}
}

func testH2RefusedBodyWhileAnswering(t *testing.T, trailers bool) {
	served := make(chan string, 10)
	srv := h2tStart(t, Config{
		MaxBodyBytes: 1000,
		Handler:      servedHandler(served),
	})
	// A 10-byte stream window: the 413's body (28 bytes) does not fit.
	c := h2tDial(t, srv, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 10}})
	id := c.request("POST", "/big", false)
	c.check(c.fr.WriteData(id, false, make([]byte, 600)))
	c.check(c.fr.WriteData(id, false, make([]byte, 600))) // over the limit: 413
	f := c.frameFor(id)
	if f.typ != http2.FrameHeaders || len(f.fields) == 0 || f.fields[0].Value != "413" {
		t.Fatalf("got %v %v, want the 413's HEADERS", f, f.fields)
	}
	if trailers {
		c.check(c.fr.WriteData(id, false, make([]byte, 100)))
		c.headers(id, true, "x-trailer", "1") // the end of the request
	} else {
		c.check(c.fr.WriteData(id, true, make([]byte, 100))) // the rest of the body
	}
	c.sync()
	c.check(c.fr.WriteWindowUpdate(id, 1000))
	for {
		f := c.frameFor(id)
		if f.endStream() || f.typ == http2.FrameRSTStream {
			break
		}
	}
	// However the stream ends, the Handler must not have run for it.
	_, r := c.get("GET", "/next")
	expectOK(t, r, "served")
	if p := <-served; p != "/next" {
		t.Fatalf("the Handler served %s, a request that was refused with 413", p)
	}
}

// TestH2ConcurrencyLimit: with every advertised stream slot taken by a
// blocked handler, one more stream gets RST_STREAM REFUSED_STREAM; once
// they finish, a new stream on the same connection is served.
func TestH2ConcurrencyLimit(t *testing.T) {
	started := make(chan struct{}, 1000)
	release := make(chan struct{})
	srv := h2tStart(t, Config{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/block" {
				started <- struct{}{}
				<-release
			}
			io.WriteString(w, "done "+r.URL.Path)
		}),
	})
	c := h2tDial(t, srv, nil)
	maxStreams, ok := c.settings[http2.SettingMaxConcurrentStreams]
	if !ok || maxStreams == 0 || maxStreams > 1000 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d (sent: %v)", maxStreams, ok)
	}
	var ids []uint32
	for range maxStreams {
		ids = append(ids, c.request("GET", "/block", true))
	}
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	for range maxStreams {
		<-started
	}
	extra := c.request("GET", "/block", true)
	r := c.response(extra)
	if !r.reset || r.code != http2.ErrCodeRefusedStream || len(r.frames) != 1 {
		t.Fatalf("stream %d over the limit of %d got %v, want RST_STREAM REFUSED_STREAM", extra, maxStreams, r.frames)
	}
	close(release)
	released = true
	for _, id := range ids {
		expectOK(t, c.response(id), "done /block")
	}
	_, r = c.get("GET", "/after")
	expectOK(t, r, "done /after")
}

// TestH2ClientResetFreesSlot: a client's RST_STREAM of a stream whose
// handler is blocked in a body Write (no window) makes that Write fail,
// and frees the stream's slot: with all slots taken, a new stream is
// served once the reset one is gone.
func TestH2ClientResetFreesSlot(t *testing.T) {
	writeErr := make(chan error, 1000)
	srv := h2tStart(t, Config{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/write" {
				io.WriteString(w, "done")
				return
			}
			chunk := make([]byte, 80<<10) // over bufferLimit: the first Write streams
			for {
				if _, err := w.Write(chunk); err != nil {
					writeErr <- err
					return
				}
			}
		}),
	})
	// A zero stream window: the handlers' bytes cannot go out.
	c := h2tDial(t, srv, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 0}})
	maxStreams := c.settings[http2.SettingMaxConcurrentStreams]
	if maxStreams == 0 || maxStreams > 1000 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d", maxStreams)
	}
	var ids []uint32
	for range maxStreams {
		ids = append(ids, c.request("GET", "/write", true))
	}
	for _, id := range ids {
		// HEADERS comes once the handler's first Write has started the
		// body; it then waits for a window that never comes.
		if f := c.frameFor(id); f.typ != http2.FrameHeaders || f.endStream() {
			t.Fatalf("stream %d: %v, want HEADERS", id, f)
		}
	}
	extra := c.request("GET", "/other", true)
	if r := c.response(extra); !r.reset || r.code != http2.ErrCodeRefusedStream {
		t.Fatalf("stream over the limit got %v, want RST_STREAM REFUSED_STREAM", r.frames)
	}
	select {
	case err := <-writeErr:
		t.Fatalf("a handler's Write failed before any reset: %v", err)
	default:
	}
	c.check(c.fr.WriteRSTStream(ids[0], http2.ErrCodeCancel))
	select {
	case err := <-writeErr:
		if err == nil {
			t.Fatal("nil error")
		}
	case <-time.After(h2tDeadline):
		t.Fatal("the reset stream's handler is still blocked in Write")
	}
	id := c.request("GET", "/other", true)
	c.check(c.fr.WriteWindowUpdate(id, 100)) // its window starts at 0 too
	expectOK(t, c.response(id), "done")
}

// TestH2ResetStreamsFreeSlots: streams that end in a reset before any
// answer (the server's, for a malformed body, or the client's, for an
// upload it gives up) give their slot back: after more of them than the
// connection's stream limit, a request is still served.
func TestH2ResetStreamsFreeSlots(t *testing.T) {
	srv := h2tStart(t, Config{})
	for _, tc := range []struct {
		name  string
		reset func(c *h2tClient) // one stream, reset before it is answered
	}{
		{"server reset: body shorter than content-length", func(c *h2tClient) {
			id := c.request("POST", "/up", false, "content-length", "10")
			c.check(c.fr.WriteData(id, true, []byte("abc")))
			if r := c.response(id); !r.reset || r.code != http2.ErrCodeProtocol {
				c.t.Fatalf("got %v, want RST_STREAM PROTOCOL_ERROR", r.frames)
			}
		}},
		{"server reset: body longer than content-length", func(c *h2tClient) {
			id := c.request("POST", "/up", false, "content-length", "1")
			c.check(c.fr.WriteData(id, false, []byte("abc")))
			if r := c.response(id); !r.reset || r.code != http2.ErrCodeProtocol {
				c.t.Fatalf("got %v, want RST_STREAM PROTOCOL_ERROR", r.frames)
			}
		}},
		{"client reset of an unfinished upload", func(c *h2tClient) {
			id := c.request("POST", "/up", false)
			c.check(c.fr.WriteData(id, false, []byte("abc")))
			c.check(c.fr.WriteRSTStream(id, http2.ErrCodeCancel))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h2tDial(t, srv, nil)
			maxStreams := c.settings[http2.SettingMaxConcurrentStreams]
			if maxStreams == 0 || maxStreams > 1000 {
				t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d", maxStreams)
			}
			for range maxStreams + 1 {
				tc.reset(c)
			}
			_, r := c.get("GET", "/after")
			expectOK(t, r, "handler /after")
		})
	}
}

// TestH2Aborts: an answer that cannot be completed (a handler's
// ErrAbortHandler after part of the body, fewer bytes than its
// Content-Length, a Native hook's Abort or panic, a body stream shorter
// than its size) ends in RST_STREAM INTERNAL_ERROR, never in END_STREAM;
// the connection serves on.
func TestH2Aborts(t *testing.T) {
	srv := h2tStart(t, Config{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/abort-buffered":
				io.WriteString(w, "part of it")
				panic(http.ErrAbortHandler)
			case "/abort-streamed":
				w.Write(h2tBody(100 << 10))
				panic(http.ErrAbortHandler)
			case "/abort-flushed":
				io.WriteString(w, "part of it")
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			case "/short":
				w.Header().Set("Content-Length", "100")
				io.WriteString(w, "0123456789")
			case "/short-flushed":
				w.Header().Set("Content-Length", "100")
				io.WriteString(w, "0123456789")
				w.(http.Flusher).Flush()
			default:
				io.WriteString(w, "fine")
			}
		}),
		Native: func(fc *fasthttp.RequestCtx) bool {
			switch string(fc.Path()) {
			case "/native/abort":
				fc.SetBodyString("never sent")
				Abort(fc)
			case "/native/panic":
				fc.SetBodyString("never sent")
				panic("boom")
			case "/native/short-stream":
				fc.Response.SetBodyStream(strings.NewReader("0123456789"), 100)
			case "/native/ok":
				fc.SetBodyString("native ok")
			default:
				return false
			}
			return true
		},
	})
	for _, path := range []string{"/abort-buffered", "/abort-streamed", "/abort-flushed", "/short", "/short-flushed",
		"/native/abort", "/native/panic", "/native/short-stream"} {
		t.Run(strings.TrimPrefix(path, "/"), func(t *testing.T) {
			c := h2tDial(t, srv, nil)
			id, r := c.get("GET", path)
			for _, f := range r.frames {
				if f.endStream() {
					t.Fatalf("END_STREAM on %v: the cut answer looks complete (%d body bytes)", f, len(r.body))
				}
			}
			if !r.reset || r.code != http2.ErrCodeInternal {
				t.Fatalf("ended with %v, want RST_STREAM INTERNAL_ERROR", r.frames[len(r.frames)-1])
			}
			c.quiet(id)
			_, r = c.get("GET", "/fine")
			expectOK(t, r, "fine")
		})
	}
	t.Run("later requests are not aborted", func(t *testing.T) {
		// Whatever an aborted request leaves behind must not reach the
		// requests after it, on this connection or another one.
		a := h2tDial(t, srv, nil)
		for range 5 {
			for _, path := range []string{"/native/abort", "/native/panic", "/abort-buffered", "/short"} {
				if _, r := a.get("GET", path); !r.reset {
					t.Fatalf("%s was answered: %v", path, r.frames)
				}
			}
		}
		for _, c := range []*h2tClient{a, h2tDial(t, srv, nil)} {
			for i := range 20 {
				path, want := "/fine", "fine"
				if i%2 == 1 {
					path, want = "/native/ok", "native ok"
				}
				_, r := c.get("GET", path)
				expectOK(t, r, want)
			}
		}
	})
}

// TestH2Shutdown: Shutdown with a request in flight sends GOAWAY (the
// stream in flight under its last stream id), lets that response
// complete, then closes the connection and returns; Close ends
// connections at once, busy or idle.
func TestH2Shutdown(t *testing.T) {
	// slowServer serves /slow once release is closed (at the latest when
	// the test ends), everything else at once.
	slowServer := func(t *testing.T) (srv *h2tServer, started chan struct{}, release func()) {
		started = make(chan struct{}, 10)
		released := make(chan struct{})
		srv = h2tStart(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				started <- struct{}{}
				<-released
			}
			io.WriteString(w, "done "+r.URL.Path)
		})})
		var once sync.Once
		release = func() { once.Do(func() { close(released) }) }
		t.Cleanup(release) // before the server's cleanup
		return srv, started, release
	}

	t.Run("Shutdown", func(t *testing.T) {
		srv, started, release := slowServer(t)
		c := h2tDial(t, srv, nil)
		_, r := c.get("GET", "/first")
		expectOK(t, r, "done /first")
		id := c.request("GET", "/slow", true)
		<-started
		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), h2tDeadline)
			defer cancel()
			shut <- srv.s.Shutdown(ctx)
		}()
		f := c.wire()
		if f.typ != http2.FrameGoAway || f.code != http2.ErrCodeNo || f.last < id {
			t.Fatalf("got %v, want GOAWAY NO_ERROR with last stream >= %d", f, id)
		}
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned (%v) with a stream in flight", err)
		default:
		}
		release()
		expectOK(t, c.response(id), "done /slow")
		for _, f := range c.closed() {
			if f.typ != http2.FrameGoAway && f.typ != http2.FramePing && f.typ != http2.FrameSettings {
				t.Errorf("after the last answer: %v", f)
			}
		}
		if err := <-shut; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})

	t.Run("Close", func(t *testing.T) {
		srv, started, _ := slowServer(t)
		idle := h2tDial(t, srv, nil)
		busy := h2tDial(t, srv, nil)
		busy.request("GET", "/slow", true)
		<-started
		if err := srv.s.Close(); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*h2tClient{idle, busy} {
			for _, f := range c.closed() {
				if f.typ == http2.FrameData || f.endStream() {
					t.Errorf("after Close: %v", f)
				}
			}
		}
		<-srv.done
		if srv.serveErr != http.ErrServerClosed {
			t.Fatalf("Serve returned %v", srv.serveErr)
		}
	})
}

// TestH2IdleTimeout: a connection without streams is closed after
// IdleTimeout; one whose stream outlasts it is not.
func TestH2IdleTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	srv := h2tStart(t, Config{
		IdleTimeout: idle,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/long" {
				<-time.After(2 * idle) // the stream outlasts the idle timeout
			}
			io.WriteString(w, "done")
		}),
	})
	t.Run("idle", func(t *testing.T) {
		c := h2tDial(t, srv, nil)
		_, r := c.get("GET", "/")
		expectOK(t, r, "done")
		begin := time.Now()
		c.closed()
		if d := time.Since(begin); d < idle/2 {
			t.Fatalf("closed after %v, before the idle timeout of %v", d, idle)
		}
	})
	t.Run("busy", func(t *testing.T) {
		c := h2tDial(t, srv, nil)
		_, r := c.get("GET", "/long")
		expectOK(t, r, "done")
		_, r = c.get("GET", "/")
		expectOK(t, r, "done")
	})
}

// TestH2LargeResponseHeader: a header block over the peer's largest frame
// goes out as HEADERS and CONTINUATION frames, none over the size, and
// decodes to what was set; a peer that takes larger frames gets one
// HEADERS frame.
func TestH2LargeResponseHeader(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 20<<10/16)
	srv := h2tStart(t, Config{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Big", big)
			io.WriteString(w, "body")
		}),
		Native: func(fc *fasthttp.RequestCtx) bool {
			if string(fc.Path()) != "/native" {
				return false
			}
			fc.Response.Header.Set("X-Big", big)
			fc.SetBodyString("body")
			return true
		},
	})
	for _, tc := range []struct {
		name     string
		maxFrame uint32 // the client's SETTINGS_MAX_FRAME_SIZE, 0: the default
	}{{"default frame size", 0}, {"64 KiB frames", 64 << 10}} {
		for _, path := range []string{"/handler", "/native"} {
			t.Run(tc.name+path, func(t *testing.T) {
				var settings []http2.Setting
				limit := uint32(16384)
				if tc.maxFrame != 0 {
					settings = append(settings, http2.Setting{ID: http2.SettingMaxFrameSize, Val: tc.maxFrame})
					limit = tc.maxFrame
				}
				c := h2tDial(t, srv, settings, h2tRawHeaders)
				id := c.request("GET", path, true)
				var block []byte
				frames := 0
				for {
					f := c.frameFor(id)
					want := http2.FrameContinuation
					if frames == 0 {
						want = http2.FrameHeaders
					}
					if f.typ != want {
						t.Fatalf("frame %d: %v, want %v", frames, f, want)
					}
					if f.length > limit {
						t.Fatalf("%v: over the frame size of %d", f, limit)
					}
					frames++
					block = append(block, f.data...)
					if f.flags.Has(http2.FlagHeadersEndHeaders) {
						break
					}
				}
				wantFrames := 1
				if tc.maxFrame == 0 {
					wantFrames = (len(block) + 16383) / 16384
				}
				if frames != wantFrames || frames == 1 && tc.maxFrame == 0 {
					t.Fatalf("a %d-byte block in %d frames, want %d", len(block), frames, wantFrames)
				}
				fields, err := c.dec.DecodeFull(block)
				if err != nil {
					t.Fatal(err)
				}
				var got string
				for _, hf := range fields {
					if hf.Name == "x-big" {
						got = hf.Value
					}
				}
				if got != big {
					t.Fatalf("x-big has %d bytes, want the %d set", len(got), len(big))
				}
				f := c.frameFor(id)
				if f.typ != http2.FrameData || string(f.data) != "body" || !f.endStream() {
					t.Fatalf("after the headers: %v %q", f, f.data)
				}
			})
		}
	}
}

// TestH2ProtocolErrors: frames that break the connection's rules end it
// with GOAWAY PROTOCOL_ERROR (naming the last stream processed); PING and
// SETTINGS are acknowledged.
func TestH2ProtocolErrors(t *testing.T) {
	srv := h2tStart(t, Config{})
	block := func(c *h2tClient, path string) []byte {
		c.encBuf.Reset()
		for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}} {
			c.check(c.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]}))
		}
		return bytes.Clone(c.encBuf.Bytes())
	}
	for _, tc := range []struct {
		name string
		send func(c *h2tClient) // after a GET on stream 1
		last uint32             // the GOAWAY's last stream id
		code http2.ErrCode      // the GOAWAY's code, PROTOCOL_ERROR if 0
	}{
		{"HEADERS on an even stream", func(c *h2tClient) {
			c.check(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 4, BlockFragment: block(c, "/even"), EndStream: true, EndHeaders: true}))
		}, 1, 0},
		{"DATA on an even stream", func(c *h2tClient) {
			c.check(c.fr.WriteData(2, true, []byte("x")))
		}, 1, 0},
		{"WINDOW_UPDATE on an even stream", func(c *h2tClient) {
			c.check(c.fr.WriteWindowUpdate(2, 100))
		}, 1, 0},
		{"a lower stream id than the last", func(c *h2tClient) {
			_, r := c.get("GET", "/three") // stream 3
			expectOK(c.t, r, "handler /three")
			c.check(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: block(c, "/seven"), EndHeaders: true}))
			c.check(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: block(c, "/lower"), EndStream: true, EndHeaders: true}))
		}, 7, 0},
		{"DATA on an idle stream", func(c *h2tClient) {
			c.check(c.fr.WriteData(9, true, []byte("x")))
		}, 1, 0},
		{"RST_STREAM on an idle stream", func(c *h2tClient) {
			c.check(c.fr.WriteRSTStream(9, http2.ErrCodeCancel))
		}, 1, 0},
		{"CONTINUATION without HEADERS", func(c *h2tClient) {
			c.check(c.fr.WriteContinuation(3, true, block(c, "/cont")))
		}, 1, 0},
		{"PING on a stream", func(c *h2tClient) {
			c.check(c.fr.WriteRawFrame(http2.FramePing, 0, 1, make([]byte, 8)))
		}, 1, 0},
		{"connection window over 2^31-1", func(c *h2tClient) {
			c.check(c.fr.WriteWindowUpdate(0, 1<<31-1))
		}, 1, http2.ErrCodeFlowControl},
		{"SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1", func(c *h2tClient) {
			c.check(c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}))
		}, 1, http2.ErrCodeFlowControl},
		{"a frame over SETTINGS_MAX_FRAME_SIZE", func(c *h2tClient) {
			// Only the header of a 16385-byte DATA frame: the server
			// refuses it before the payload (which would be left unread,
			// and the close would become a TCP reset).
			_, err := c.conn.Write([]byte{0, 0x40, 0x01, byte(http2.FrameData), 0, 0, 0, 0, 1})
			c.check(err)
		}, 1, http2.ErrCodeFrameSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h2tDial(t, srv, nil)
			_, r := c.get("GET", "/one")
			expectOK(t, r, "handler /one")
			tc.send(c)
			frames := c.closed()
			var goaway *h2tFrame
			for i, f := range frames {
				if f.typ == http2.FrameGoAway {
					goaway = &frames[i]
				}
			}
			code := tc.code
			if code == 0 {
				code = http2.ErrCodeProtocol
			}
			if goaway == nil || goaway.code != code || goaway.last != tc.last {
				t.Fatalf("before the close: %v, want GOAWAY %v last=%d", frames, code, tc.last)
			}
		})
	}

	t.Run("stream window over 2^31-1", func(t *testing.T) {
		c := h2tDial(t, srv, nil)
		id := c.request("POST", "/open", false) // the stream stays open
		c.check(c.fr.WriteWindowUpdate(id, 1<<31-1))
		if r := c.response(id); !r.reset || r.code != http2.ErrCodeFlowControl {
			t.Fatalf("got %v, want RST_STREAM FLOW_CONTROL_ERROR", r.frames)
		}
		_, r := c.get("GET", "/next")
		expectOK(t, r, "handler /next")
	})

	t.Run("PING and SETTINGS", func(t *testing.T) {
		c := h2tDial(t, srv, nil)
		payloads := [][8]byte{{}, {1, 2, 3, 4, 5, 6, 7, 8}, {0xff, 0, 0xff, 0, 0xff, 0, 0xff, 0}}
		for _, p := range payloads {
			c.check(c.fr.WritePing(false, p))
		}
		for _, p := range payloads {
			f := c.wire()
			if f.typ != http2.FramePing || !f.flags.Has(http2.FlagPingAck) || f.stream != 0 || !bytes.Equal(f.data, p[:]) {
				t.Fatalf("got %v %x, want PING ACK %x", f, f.data, p)
			}
		}
		// A PING ACK from the client is not answered.
		c.check(c.fr.WritePing(true, [8]byte{9}))
		c.check(c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20},
			http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 15}))
		if f := c.wire(); f.typ != http2.FrameSettings || !f.flags.Has(http2.FlagSettingsAck) || f.length != 0 {
			t.Fatalf("got %v, want SETTINGS ACK", f)
		}
		c.check(c.fr.WriteSettings())
		if f := c.wire(); f.typ != http2.FrameSettings || !f.flags.Has(http2.FlagSettingsAck) {
			t.Fatalf("got %v, want SETTINGS ACK for an empty SETTINGS", f)
		}
		_, r := c.get("GET", "/still")
		expectOK(t, r, "handler /still")
	})
}

// TestH2RequestHeaderTooLarge: a header list over MaxHeaderBytes (which
// the server announces as SETTINGS_MAX_HEADER_LIST_SIZE) gets 431 without
// reaching the Handler; the connection serves on.
func TestH2RequestHeaderTooLarge(t *testing.T) {
	served := make(chan string, 10)
	srv := h2tStart(t, Config{
		MaxHeaderBytes: 4096,
		Handler:        servedHandler(served),
	})
	c := h2tDial(t, srv, nil)
	if v := c.settings[http2.SettingMaxHeaderListSize]; v != 4096 {
		t.Fatalf("SETTINGS_MAX_HEADER_LIST_SIZE %d, want 4096", v)
	}
	// Each field fits (a single field longer than the whole limit is a
	// COMPRESSION_ERROR, as with x/net's server); together they do not.
	big := strings.Repeat("b", 2000)
	id := c.request("GET", "/big", true, "x-a", big, "x-b", big, "x-c", big)
	r := c.response(id)
	if r.reset || r.status != "431" {
		t.Fatalf("got %v, want a complete 431", r.frames)
	}
	c.quiet(id)
	_, r = c.get("GET", "/small")
	expectOK(t, r, "served")
	if p := <-served; p != "/small" {
		t.Fatalf("the Handler served %s", p)
	}
}

// servedHandler reports each path it serves on served and answers "served".
func servedHandler(served chan<- string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served <- r.URL.Path
		io.WriteString(w, "served")
	})
}
