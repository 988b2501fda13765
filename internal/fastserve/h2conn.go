package fastserve

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 connection (RFC 9113). Frames are read and parsed by x/net's
// Framer (which also decodes HPACK, joins CONTINUATION frames and checks
// each frame's own rules); this file keeps the connection's state: the
// streams, flow control, settings, and the order of events.
//
// A request becomes a fasthttp.RequestCtx, as on HTTP/1.1, so both
// protocols share everything above the wire: the Native hook answers on
// the connection's goroutine (no goroutine, no channel, per request), and
// anything it declines goes through the same net/http adapter as an
// HTTP/1.1 request, on a goroutine of its own. The answer in the
// RequestCtx's Response is then written as HEADERS and DATA frames.
//
// Writes are whole frames (or frame groups) handed to the batchConn in
// one Write each, so goroutines never interleave inside a frame; response
// header blocks never use the HPACK dynamic table (see hpackenc.go), so
// they can be encoded anywhere, in any order.

// Settings this server announces, and the protocol's constants.
const (
	h2MaxStreams    = 128   // SETTINGS_MAX_CONCURRENT_STREAMS
	h2DefaultWindow = 65535 // initial flow-control windows (RFC 9113 §6.9.2)
	h2MaxWindow     = 1<<31 - 1
	h2MaxFrame      = 16384 // SETTINGS_MAX_FRAME_SIZE we accept (the default)
	h2ChunkSize     = 16384 // largest DATA payload we send
	h2WindowRefill  = 16384 // a receive window is refilled once this much was consumed
	h2MaxRefusals   = 1000  // streams refused on one connection before it is ended
	h2ClientPreface = http2.ClientPreface
)

// h2conn is one HTTP/2 connection. Fields after mu are guarded by it; the
// rest belong to the connection's goroutine (serve) unless noted.
type h2conn struct {
	s    *Server
	bc   *batchConn
	view *tlsConn // the connection as RequestCtx.Conn() shows it (TLSState)
	fr   *http2.Framer

	recvWin   int64 // connection receive window (DATA the peer may still send)
	recvUsed  int64 // bytes received and not yet given back with WINDOW_UPDATE
	bodyBytes int64 // request-body bytes buffered on this connection
	refusals  int
	gotGoAway bool

	mu        sync.Mutex
	cond      sync.Cond // signalled when a window grows, a stream resets or the connection ends
	lastID    uint32    // highest client stream id seen (written by the connection goroutine, under mu)
	streams   map[uint32]*h2stream
	active    int   // streams not finished (counted against h2MaxStreams)
	sendWin   int64 // connection send window
	initWin   int64 // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame  int   // the peer's SETTINGS_MAX_FRAME_SIZE
	dead      error // set once the connection is over: writers give up
	goingAway bool  // GOAWAY sent: no new streams
	idleSet   bool  // the idle read deadline is set
}

// h2stream is one request/response exchange.
type h2stream struct {
	id uint32
	fc *fasthttp.RequestCtx // the request (and, once answered, the response)

	// The connection goroutine's: the request body as it arrives.
	body     []byte
	declared int64 // the request's content-length, -1 without one
	recvWin  int64
	recvUsed int64
	refused  bool // answered before its body ended: the rest is dropped

	// Guarded by h2conn.mu.
	sendWin    int64
	remoteDone bool // END_STREAM received
	localDone  bool // the response is complete (or abandoned)
	reset      bool // RST_STREAM sent or received
	counted    bool // counted in h2conn.active
	started    bool // endRequest or an error answer took the stream
}

var errH2Reset = errors.New("http2: stream reset")

// newH2Conn returns the HTTP/2 connection over bc; serve serves it.
func newH2Conn(s *Server, bc *batchConn, view *tlsConn) *h2conn {
	c := &h2conn{s: s, bc: bc, view: view, streams: make(map[uint32]*h2stream),
		recvWin: h2DefaultWindow, sendWin: h2DefaultWindow, initWin: h2DefaultWindow, maxFrame: h2MaxFrame}
	c.cond.L = &c.mu
	c.fr = http2.NewFramer(io.Discard, bc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = uint32(s.cfg.MaxHeaderBytes)
	c.fr.SetMaxReadFrameSize(h2MaxFrame)
	return c
}

func (c *h2conn) serve() {
	defer c.end(net.ErrClosed)
	// Our SETTINGS first (the server preface), then the client's preface.
	c.write(appendSettings(nil, []http2.Setting{
		{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		{ID: http2.SettingMaxHeaderListSize, Val: uint32(c.s.cfg.MaxHeaderBytes)},
	}))
	if d := c.s.cfg.ReadHeaderTimeout; d > 0 {
		c.bc.SetReadDeadline(time.Now().Add(d))
	}
	var pre [len(h2ClientPreface)]byte
	if _, err := io.ReadFull(c.bc, pre[:]); err != nil || string(pre[:]) != h2ClientPreface {
		return
	}
	f, err := c.fr.ReadFrame()
	if err != nil {
		return
	}
	if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
		c.goAway(http2.ErrCodeProtocol)
		return
	}
	c.bc.SetReadDeadline(time.Time{})
	c.mu.Lock()
	c.markIdle()
	c.mu.Unlock()
	for {
		if err := c.process(f); err != nil {
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.goAway(http2.ErrCode(ce))
			}
			return
		}
		if c.shutdownDone() {
			return
		}
		f, err = c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &se):
				if c.fr.ErrorDetail() != nil && se.StreamID > c.lastID && se.StreamID%2 == 1 {
					c.setLastID(se.StreamID) // a malformed header block opened the stream; the reset closes it
				}
				c.resetStream(se.StreamID, se.Code)
				f = nil
				continue
			case errors.As(err, &ce):
				c.goAway(http2.ErrCode(ce))
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.goAway(http2.ErrCodeFrameSize)
			}
			return
		}
	}
}

// shutdownDone reports whether a GOAWAY was sent and no stream is left.
func (c *h2conn) shutdownDone() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return (c.goingAway || c.gotGoAway) && c.active == 0
}

// process handles one frame; an error ends the connection (a
// ConnectionError with a GOAWAY first).
func (c *h2conn) process(f http2.Frame) error {
	switch f := f.(type) {
	case nil:
		return nil
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if err := f.ForeachSetting(c.applySetting); err != nil {
			return err
		}
		// The ACK goes out before the senders waiting for a window are
		// woken, so DATA the new settings allow follows it.
		err := c.write(appendFrameHeader(nil, 0, http2.FrameSettings, http2.FlagSettingsAck, 0))
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
		return err
	case *http2.MetaHeadersFrame:
		return c.processHeaders(f)
	case *http2.DataFrame:
		return c.processData(f)
	case *http2.WindowUpdateFrame:
		return c.processWindowUpdate(f)
	case *http2.RSTStreamFrame:
		if c.idle(f.StreamID) {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		c.mu.Lock()
		if st := c.streams[f.StreamID]; st != nil {
			c.closeStreamLocked(st, true)
		}
		c.mu.Unlock()
		return nil
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		b := appendFrameHeader(nil, 8, http2.FramePing, http2.FlagPingAck, 0)
		return c.write(append(b, f.Data[:]...))
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			c.resetStream(f.StreamID, http2.ErrCodeProtocol)
		}
		return nil
	case *http2.GoAwayFrame:
		c.gotGoAway = true
		return nil
	case *http2.PushPromiseFrame, *http2.ContinuationFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	default:
		return nil // unknown frame types are ignored (RFC 9113 §4.1)
	}
}

// setLastID records id as the highest stream id seen.
func (c *h2conn) setLastID(id uint32) {
	c.mu.Lock()
	c.lastID = id
	c.mu.Unlock()
}

// idle reports whether stream id was never opened (lastID changes only
// on this goroutine, so reading it here needs no lock).
func (c *h2conn) idle(id uint32) bool { return id > c.lastID || id%2 == 0 }

func (c *h2conn) applySetting(s http2.Setting) error {
	if err := s.Valid(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s.ID {
	case http2.SettingInitialWindowSize:
		// The change applies to every open stream's window (§6.9.2); a
		// window may go negative.
		delta := int64(s.Val) - c.initWin
		c.initWin = int64(s.Val)
		for _, st := range c.streams {
			st.sendWin += delta
			if st.sendWin > h2MaxWindow {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
		}
	case http2.SettingMaxFrameSize:
		c.maxFrame = int(s.Val)
	}
	return nil
}

func (c *h2conn) processWindowUpdate(f *http2.WindowUpdateFrame) error {
	if f.StreamID != 0 && c.idle(f.StreamID) {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	if f.StreamID == 0 {
		c.sendWin += int64(f.Increment)
		overflow := c.sendWin > h2MaxWindow
		if !overflow {
			c.cond.Broadcast()
		}
		c.mu.Unlock()
		if overflow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		return nil
	}
	st := c.streams[f.StreamID]
	overflow := false
	if st != nil && !st.reset { // a closed stream's updates are ignored
		st.sendWin += int64(f.Increment)
		overflow = st.sendWin > h2MaxWindow
		if !overflow {
			c.cond.Broadcast()
		}
	}
	c.mu.Unlock()
	if overflow {
		c.resetStream(f.StreamID, http2.ErrCodeFlowControl)
	}
	return nil
}

// processHeaders opens a stream (or ends one with trailers).
func (c *h2conn) processHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if id <= c.lastID {
		c.mu.Lock()
		st := c.streams[id]
		c.mu.Unlock()
		if st == nil {
			return http2.ConnectionError(http2.ErrCodeProtocol) // a closed stream
		}
		if st.remoteDone {
			c.resetStream(id, http2.ErrCodeStreamClosed)
			return nil
		}
		if st.refused {
			return nil // answered already (413, 431): the rest of the request is dropped
		}
		// Trailers: they end the request and carry no pseudo-fields.
		if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
			c.resetStream(id, http2.ErrCodeProtocol)
			return nil
		}
		if st.declared >= 0 && int64(len(st.body)) != st.declared {
			c.resetStream(id, http2.ErrCodeProtocol)
			return nil
		}
		c.endRequest(st)
		return nil
	}
	c.mu.Lock()
	if c.goingAway {
		// Above the GOAWAY's last stream id: not processed, and the
		// client knows it may retry the request elsewhere.
		c.mu.Unlock()
		return nil
	}
	c.lastID = id
	full := c.active >= h2MaxStreams
	c.mu.Unlock()
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.resetStream(id, http2.ErrCodeProtocol)
		return nil
	}
	if full {
		c.refusals++
		if c.refusals > h2MaxRefusals {
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	st := &h2stream{id: id, declared: -1, recvWin: h2DefaultWindow, counted: true}
	fc := acquireCtx(c.view, fastLogger{c.s.logger})
	st.fc = fc
	code := c.buildRequest(st, f)
	if code != 0 {
		releaseCtx(fc)
		c.resetStream(id, code)
		return nil
	}
	c.mu.Lock()
	st.sendWin = c.initWin
	c.streams[id] = st
	c.active++
	c.clearIdle()
	c.mu.Unlock()
	if f.Truncated {
		// The header list was longer than we accept: 431, as on HTTP/1.1.
		plainError(fc, http.StatusRequestHeaderFieldsTooLarge)
		st.refused = true
		c.mu.Lock()
		st.started, st.remoteDone = true, f.StreamEnded()
		c.mu.Unlock()
		c.respond(st, true)
		return nil
	}
	if f.StreamEnded() {
		c.endRequest(st)
	}
	return nil
}

// buildRequest fills st.fc's request from the header block; a non-zero
// code refuses the stream (RST_STREAM) as malformed (RFC 9113 §8.1.1).
//
// The fields are handed to fasthttp's parser as an HTTP/1.1 header block,
// so the request is exactly what an HTTP/1.1 request with those fields
// would be (including the received order its readers rely on); HPACK has
// already checked that names are lower-case tokens and that values hold
// no CR, LF or NUL, so nothing can be smuggled into that block.
func (c *h2conn) buildRequest(st *h2stream, f *http2.MetaHeadersFrame) http2.ErrCode {
	var method, path, scheme, authority string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":path":
			path = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		default: // :protocol (extended CONNECT) is not supported
			return http2.ErrCodeProtocol
		}
	}
	if method == "" || (method != http.MethodConnect && (path == "" || scheme == "")) {
		return http2.ErrCodeProtocol
	}
	if method == http.MethodConnect {
		if path != "" || scheme != "" || authority == "" {
			return http2.ErrCodeProtocol
		}
		path = authority
	}
	if strings.ContainsAny(method, " \t") || strings.ContainsAny(path, " \t") {
		return http2.ErrCodeProtocol
	}
	bp := rawHeaders.Get().(*[]byte)
	defer func() { *bp = (*bp)[:0]; rawHeaders.Put(bp) }()
	raw := append((*bp)[:0], method...)
	raw = append(raw, ' ')
	raw = append(raw, path...)
	raw = append(raw, " HTTP/1.1\r\n"...)
	if authority != "" {
		raw = append(append(append(raw, "host: "...), authority...), "\r\n"...)
	}
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return http2.ErrCodeProtocol // connection-specific (§8.2.2)
		case "te":
			if hf.Value != "trailers" {
				return http2.ErrCodeProtocol
			}
		case "content-length":
			n, err := strconv.ParseUint(hf.Value, 10, 63)
			if err != nil || (st.declared >= 0 && int64(n) != st.declared) {
				return http2.ErrCodeProtocol
			}
			if st.declared >= 0 {
				continue // the same value again: once is enough
			}
			st.declared = int64(n)
		case "host":
			if authority != "" {
				continue // :authority wins (RFC 9113 §8.3.1)
			}
		}
		raw = append(append(append(append(raw, hf.Name...), ": "...), hf.Value...), "\r\n"...)
	}
	raw = append(raw, "\r\n"...)
	*bp = raw
	if f.StreamEnded() && st.declared > 0 {
		return http2.ErrCodeProtocol // a length announced, and no body
	}
	var rd bytes.Reader
	rd.Reset(raw)
	var br *bufio.Reader
	if len(raw) < headerReaderSize {
		br = headerReaders.Get().(*bufio.Reader)
		defer headerReaders.Put(br)
		br.Reset(&rd)
	} else {
		br = bufio.NewReaderSize(&rd, len(raw)+1)
	}
	rh := &st.fc.Request.Header
	if err := rh.Read(br); err != nil {
		return http2.ErrCodeProtocol
	}
	rh.SetProtocol(h2Proto)
	return 0
}

// rawHeaders and headerReaders serve buildRequest: a header block (the
// Framer bounds it by MaxHeaderListSize) and a reader that holds all of it.
var (
	rawHeaders    = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
	headerReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, headerReaderSize) }}
)

const headerReaderSize = 4096

// h2Proto is the protocol of HTTP/2 requests, as net/http names it.
const h2Proto = "HTTP/2.0"

// processData takes request-body bytes.
func (c *h2conn) processData(f *http2.DataFrame) error {
	id := f.StreamID
	if c.idle(id) {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	// Every DATA frame counts against the connection's window, whatever
	// its stream's state; the window is given back as it is used up.
	n := int64(f.Length)
	if n > c.recvWin {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWin -= n
	c.recvUsed += n
	if c.recvUsed >= h2WindowRefill {
		if err := c.write(appendWindowUpdate(nil, 0, uint32(c.recvUsed))); err != nil {
			return err
		}
		c.recvWin += c.recvUsed
		c.recvUsed = 0
	}
	c.mu.Lock()
	st := c.streams[id]
	var closed bool
	if st != nil {
		closed = st.remoteDone || st.reset
	}
	c.mu.Unlock()
	if st == nil || closed {
		c.resetStream(id, http2.ErrCodeStreamClosed)
		return nil
	}
	if n > st.recvWin {
		c.resetStream(id, http2.ErrCodeFlowControl)
		return nil
	}
	if st.refused {
		return nil
	}
	st.recvWin -= n
	data := f.Data()
	limit := int64(c.s.cfg.MaxBodyBytes)
	if int64(len(st.body)+len(data)) > limit || c.bodyBytes+int64(len(data)) > limit ||
		(st.declared >= 0 && int64(len(st.body)+len(data)) > st.declared) {
		if st.declared >= 0 && int64(len(st.body)+len(data)) > st.declared {
			c.resetStream(id, http2.ErrCodeProtocol)
			return nil
		}
		// Larger than a request body may be (the whole connection holds
		// at most MaxBodyBytes): 413, as on HTTP/1.1.
		c.dropBody(st)
		st.refused = true
		c.mu.Lock()
		st.started = true
		c.mu.Unlock()
		plainError(st.fc, http.StatusRequestEntityTooLarge)
		c.respond(st, true)
		return nil
	}
	st.body = append(st.body, data...)
	c.bodyBytes += int64(len(data))
	// Keep the stream's window open while the body is within its limit.
	st.recvUsed += n
	if st.recvUsed >= h2WindowRefill && !f.StreamEnded() {
		if err := c.write(appendWindowUpdate(nil, id, uint32(st.recvUsed))); err != nil {
			return err
		}
		st.recvWin += st.recvUsed
		st.recvUsed = 0
	}
	if f.StreamEnded() {
		if st.declared >= 0 && int64(len(st.body)) != st.declared {
			c.resetStream(id, http2.ErrCodeProtocol)
			return nil
		}
		c.endRequest(st)
	}
	return nil
}

func (c *h2conn) dropBody(st *h2stream) {
	c.bodyBytes -= int64(len(st.body))
	st.body = nil
}

// endRequest runs when the request is complete: the Native hook first, on
// this goroutine, else the handler on a goroutine of its own.
func (c *h2conn) endRequest(st *h2stream) {
	c.mu.Lock()
	st.remoteDone = true
	st.started = true
	c.mu.Unlock()
	fc := st.fc
	if len(st.body) > 0 {
		fc.Request.SetBody(st.body)
		c.dropBody(st)
	}
	if c.s.cfg.Native != nil && c.s.native(fc) {
		c.respond(st, true)
		return
	}
	go func() {
		c.s.adapt(fc)
		c.respond(st, false)
	}()
}

// resetStream sends RST_STREAM for id and closes the stream.
func (c *h2conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		c.closeStreamLocked(st, true)
	}
	c.mu.Unlock()
	c.writeReset(id, code)
}

func (c *h2conn) writeReset(id uint32, code http2.ErrCode) {
	b := appendFrameHeader(nil, 4, http2.FrameRSTStream, 0, id)
	c.write(append(b, byte(code>>24), byte(code>>16), byte(code>>8), byte(code)))
}

// closeStreamLocked records that st is over on the remote side (or, with
// reset, on both sides), takes it out of the table once both sides are
// done, and releases its slot once its response is done too.
func (c *h2conn) closeStreamLocked(st *h2stream, reset bool) {
	if reset && !st.reset {
		st.reset = true
		c.cond.Broadcast() // its writer gives up
	}
	if st.reset && !st.started {
		st.localDone = true
	}
	if st.reset || (st.remoteDone && st.localDone) {
		delete(c.streams, st.id)
	}
	if st.counted && st.localDone && (st.remoteDone || st.reset) {
		st.counted = false
		c.active--
		if c.active == 0 {
			c.markIdle()
		}
	}
}

// markIdle starts the idle timeout; called with mu held when no stream is
// left. clearIdle stops it when one opens.
func (c *h2conn) markIdle() {
	if d := c.s.cfg.IdleTimeout; d > 0 && !c.idleSet {
		c.idleSet = true
		c.bc.SetReadDeadline(time.Now().Add(d))
	}
	if c.goingAway {
		c.bc.SetReadDeadline(time.Now()) // wake the reader: the connection is done
	}
}

func (c *h2conn) clearIdle() {
	if c.idleSet {
		c.idleSet = false
		c.bc.SetReadDeadline(time.Time{})
	}
}

// write sends whole frames; an error ends the connection.
func (c *h2conn) write(b []byte) error {
	if _, err := c.bc.Write(b); err != nil {
		c.end(err)
		return err
	}
	return nil
}

// end marks the connection over: writers waiting for a window give up,
// and the connection is closed (which also ends the reading goroutine).
func (c *h2conn) end(err error) {
	c.mu.Lock()
	first := c.dead == nil
	if first {
		c.dead = err
		for _, st := range c.streams {
			st.reset = true
		}
		c.cond.Broadcast()
	}
	c.mu.Unlock()
	if first {
		c.bc.Close()
	}
}

// goAway sends GOAWAY with code and ends the connection.
func (c *h2conn) goAway(code http2.ErrCode) {
	c.mu.Lock()
	c.goingAway = true
	last := c.lastID
	c.mu.Unlock()
	c.write(appendGoAway(nil, last, code))
	c.end(errors.New("http2: connection error " + code.String()))
}

// shutdown sends GOAWAY: streams up to the last one seen are finished,
// later ones are not started, and the connection ends when none is left.
func (c *h2conn) shutdown() {
	c.mu.Lock()
	if c.goingAway || c.dead != nil {
		c.mu.Unlock()
		return
	}
	// lastID and goingAway change together under mu: every stream up to
	// last is served, none above it is started.
	c.goingAway = true
	idle := c.active == 0
	last := c.lastID
	c.mu.Unlock()
	c.write(appendGoAway(nil, last, http2.ErrCodeNo))
	if idle {
		c.bc.SetReadDeadline(time.Now())
	}
}

// respond writes st's answer from st.fc.Response. inline: called on the
// connection's goroutine, which must not wait for a flow-control window:
// a response that does not fit at once goes on a goroutine of its own.
func (c *h2conn) respond(st *h2stream, inline bool) {
	fc := st.fc
	resp := &fc.Response
	if fc.Hijacked() { // Abort: no answer, the stream is reset
		c.finish(st, http2.ErrCodeInternal)
		return
	}
	head := fc.IsHead()
	status := resp.StatusCode()
	noBody := head || !bodyAllowed(status)
	var body []byte
	var src io.Reader
	clen := int64(-1)
	switch {
	case resp.IsBodyStream():
		src = resp.BodyStream()
		if n := resp.Header.ContentLength(); n >= 0 {
			clen = int64(n)
		}
	case resp.SkipBody:
		if n := resp.Header.ContentLength(); n >= 0 {
			clen = int64(n)
		}
	default:
		body = resp.Body()
		clen = int64(len(body))
	}
	if noBody {
		body, src = nil, nil
	}
	block := encodeResponseHeader(status, &resp.Header, clen, bodyAllowed(status))
	if src == nil && inline {
		// The common case: headers and a small body, written at once
		// when the windows allow it.
		c.mu.Lock()
		fits := int64(len(body)) <= min(c.sendWin, st.sendWin) && c.dead == nil && !st.reset
		if fits {
			c.sendWin -= int64(len(body))
			st.sendWin -= int64(len(body))
		}
		c.mu.Unlock()
		if fits {
			bp := frameBuffers.Get().(*[]byte)
			b := c.appendHeaders((*bp)[:0], st.id, block, len(body) == 0)
			if len(body) > 0 {
				b = c.appendData(b, st.id, body, true)
			}
			putHeaderBlock(block)
			c.write(b) // batchConn.Write copies b: the buffer is free again
			if cap(b) <= 64<<10 {
				*bp = b[:0]
				frameBuffers.Put(bp)
			}
			c.finish(st, 0)
			return
		}
	}
	if inline {
		go c.send(st, block, body, src, clen)
		return
	}
	c.send(st, block, body, src, clen)
}

// send writes the headers, then the body from body or src, waiting for
// flow-control windows as needed.
func (c *h2conn) send(st *h2stream, block *[]byte, body []byte, src io.Reader, clen int64) {
	end := len(body) == 0 && src == nil
	c.write(c.appendHeaders(nil, st.id, block, end))
	putHeaderBlock(block)
	if end {
		c.finish(st, 0)
		return
	}
	if src == nil {
		if err := c.sendData(st, body, true); err != nil {
			c.finish(st, http2.ErrCodeInternal)
			return
		}
		c.finish(st, 0)
		return
	}
	bp := readBuffers.Get().(*[]byte)
	defer readBuffers.Put(bp)
	buf := *bp
	var sent int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			sent += int64(n)
			if clen >= 0 && sent > clen {
				c.finish(st, http2.ErrCodeInternal)
				return
			}
			if werr := c.sendData(st, buf[:n], false); werr != nil {
				c.finish(st, http2.ErrCodeCancel)
				return
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			// A failed body (an upstream cut, a truncated file, a
			// handler's abort) resets the stream: never a short answer
			// that looks complete.
			c.finish(st, http2.ErrCodeInternal)
			return
		}
	}
	if clen >= 0 && sent != clen {
		c.finish(st, http2.ErrCodeInternal)
		return
	}
	if c.sendData(st, nil, true) != nil {
		c.finish(st, http2.ErrCodeCancel)
		return
	}
	c.finish(st, 0)
}

// sendData sends p as DATA frames (the last with END_STREAM when end),
// waiting for the windows; it fails when the stream or connection ends.
func (c *h2conn) sendData(st *h2stream, p []byte, end bool) error {
	for {
		if len(p) == 0 && end {
			return c.write(appendFrameHeader(nil, 0, http2.FrameData, http2.FlagDataEndStream, st.id))
		}
		if len(p) == 0 {
			return nil
		}
		c.mu.Lock()
		for (c.sendWin <= 0 || st.sendWin <= 0) && !st.reset && c.dead == nil {
			c.cond.Wait()
		}
		if st.reset || c.dead != nil {
			c.mu.Unlock()
			return errH2Reset
		}
		// As much as the windows allow, as DATA frames of at most
		// h2ChunkSize (never above the peer's SETTINGS_MAX_FRAME_SIZE,
		// which is at least that), in one write.
		n := min(int64(len(p)), c.sendWin, st.sendWin)
		c.sendWin -= n
		st.sendWin -= n
		c.mu.Unlock()
		last := end && n == int64(len(p))
		fb := frameBuffers.Get().(*[]byte)
		b := c.appendData((*fb)[:0], st.id, p[:n], last)
		err := c.write(b)
		if cap(b) <= 64<<10 {
			*fb = b[:0]
			frameBuffers.Put(fb)
		}
		if err != nil {
			return err
		}
		p = p[n:]
		if last {
			return nil
		}
	}
}

// finish ends st's response: code 0 means it was sent whole, anything
// else resets the stream. It closes the response's body and frees the
// stream's RequestCtx.
func (c *h2conn) finish(st *h2stream, code http2.ErrCode) {
	fc := st.fc
	c.mu.Lock()
	st.localDone = true
	wasReset := st.reset
	// Answered before the request's body ended: the client is told to
	// stop sending it (RFC 9113 §8.1), with NO_ERROR.
	reset := code != 0 || !st.remoteDone
	c.closeStreamLocked(st, reset)
	c.mu.Unlock()
	if reset && !wasReset {
		c.writeReset(st.id, code) // code 0 is NO_ERROR
	}
	fc.Response.CloseBodyStream()
	releaseCtx(fc)
}

// appendHeaders appends the header block as HEADERS (and CONTINUATION)
// frames no larger than the peer accepts.
func (c *h2conn) appendHeaders(b []byte, id uint32, block *[]byte, endStream bool) []byte {
	p := *block
	max := h2MaxFrame // the least SETTINGS_MAX_FRAME_SIZE may be
	if len(p) > max {
		c.mu.Lock()
		max = c.maxFrame
		c.mu.Unlock()
	}
	typ := http2.FrameHeaders
	for {
		n := min(len(p), max)
		var flags http2.Flags
		if typ == http2.FrameHeaders && endStream {
			flags |= http2.FlagHeadersEndStream
		}
		if n == len(p) {
			flags |= http2.FlagHeadersEndHeaders
		}
		b = appendFrameHeader(b, n, typ, flags, id)
		b = append(b, p[:n]...)
		p = p[n:]
		if len(p) == 0 {
			return b
		}
		typ = http2.FrameContinuation
	}
}

// appendData appends p as DATA frames of at most h2ChunkSize bytes (the
// caller has taken the flow-control window for all of p).
func (c *h2conn) appendData(b []byte, id uint32, p []byte, end bool) []byte {
	for {
		n := min(len(p), h2ChunkSize)
		var flags http2.Flags
		if end && n == len(p) {
			flags = http2.FlagDataEndStream
		}
		if n == 0 && !end {
			return b
		}
		b = appendFrameHeader(b, n, http2.FrameData, flags, id)
		b = append(b, p[:n]...)
		p = p[n:]
		if len(p) == 0 {
			return b
		}
	}
}

// appendFrameHeader appends a frame's 9-byte header (RFC 9113 §4.1).
func appendFrameHeader(b []byte, length int, typ http2.FrameType, flags http2.Flags, id uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), byte(typ), byte(flags),
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
}

func appendSettings(b []byte, settings []http2.Setting) []byte {
	b = appendFrameHeader(b, 6*len(settings), http2.FrameSettings, 0, 0)
	for _, s := range settings {
		b = append(b, byte(s.ID>>8), byte(s.ID), byte(s.Val>>24), byte(s.Val>>16), byte(s.Val>>8), byte(s.Val))
	}
	return b
}

func appendWindowUpdate(b []byte, id, incr uint32) []byte {
	b = appendFrameHeader(b, 4, http2.FrameWindowUpdate, 0, id)
	return append(b, byte(incr>>24)&0x7f, byte(incr>>16), byte(incr>>8), byte(incr))
}

func appendGoAway(b []byte, last uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 8, http2.FrameGoAway, 0, 0)
	return append(b, byte(last>>24)&0x7f, byte(last>>16), byte(last>>8), byte(last),
		byte(code>>24), byte(code>>16), byte(code>>8), byte(code))
}

// frameBuffers hold frames while they are assembled; readBuffers take a
// streamed body, two DATA frames' worth at a time.
var (
	frameBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}
	readBuffers  = sync.Pool{New: func() any { b := make([]byte, 2*h2ChunkSize); return &b }}
)

// ctxPool recycles the RequestCtx of finished streams.
var ctxPool sync.Pool

func acquireCtx(view *tlsConn, logger fasthttp.Logger) *fasthttp.RequestCtx {
	fc, _ := ctxPool.Get().(*fasthttp.RequestCtx)
	if fc == nil {
		fc = new(fasthttp.RequestCtx)
	}
	fc.Init2(view, logger, false)
	return fc
}

// releaseCtx returns fc to the pool unless something may still hold it or
// it cannot be reset: an aborted ctx stays hijacked (fasthttp's Reset does
// not clear that), and a request body is the handler's r.Body without a
// copy, which the handler may still read after a reset. Those are left to
// the collector.
func releaseCtx(fc *fasthttp.RequestCtx) {
	if fc.Hijacked() || len(fc.Request.Body()) > 0 {
		return
	}
	fc.Request.Reset()
	fc.Response.Reset()
	fc.ResetUserValues()
	ctxPool.Put(fc)
}

// isH2 reports whether fc is a request that came over HTTP/2.
func isH2(fc *fasthttp.RequestCtx) bool {
	cs := TLSState(fc)
	return cs != nil && cs.NegotiatedProtocol == "h2" && bytes.Equal(fc.Request.Header.Protocol(), []byte(h2Proto))
}
