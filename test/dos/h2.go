//go:build linux

package dos

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// maxFrame is the frame payload size the suite writes: the size every
// HTTP/2 peer must accept (SETTINGS_MAX_FRAME_SIZE's initial value).
const maxFrame = 16384

// smallRcvBuf is the receive buffer a slow-reading attacker asks for, so
// that the server's writes block after little data.
const smallRcvBuf = 16 << 10

// dialTLS opens a TLS connection from t.AttackerIP to the gateway with the
// given ALPN protocols. rcvBuf > 0 shrinks the socket's receive buffer
// before it connects.
func (t *Target) dialTLS(ctx context.Context, protos []string, rcvBuf int) (*tls.Conn, error) {
	nd := &net.Dialer{Timeout: dialTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(t.AttackerIP)}}
	if rcvBuf > 0 {
		nd.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvBuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	cfg := t.TLS.Clone()
	cfg.NextProtos = protos
	d := &tls.Dialer{NetDialer: nd, Config: cfg}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// h2Conn is a raw HTTP/2 client connection: the frames are x/net/http2's
// Framer, the header blocks its hpack Encoder. Writes are serialised by wmu;
// at most one goroutine reads.
type h2Conn struct {
	c      *tls.Conn
	fr     *http2.Framer
	wmu    sync.Mutex
	enc    *hpack.Encoder
	hbuf   bytes.Buffer
	nextID uint32
}

// dialH2 connects, checks that h2 was negotiated, and writes the preface
// and the client's SETTINGS.
func (t *Target) dialH2(ctx context.Context, rcvBuf int, settings ...http2.Setting) (*h2Conn, error) {
	c, err := t.dialTLS(ctx, []string{"h2"}, rcvBuf)
	if err != nil {
		return nil, err
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		c.Close()
		return nil, fmt.Errorf("ALPN negotiated %q, not h2", p)
	}
	h := &h2Conn{c: c, fr: http2.NewFramer(c, c), nextID: 1}
	h.enc = hpack.NewEncoder(&h.hbuf)
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		c.Close()
		return nil, fmt.Errorf("writing preface: %w", err)
	}
	if err := h.fr.WriteSettings(settings...); err != nil {
		c.Close()
		return nil, fmt.Errorf("writing settings: %w", err)
	}
	return h, nil
}

// Close closes the connection.
func (h *h2Conn) Close() error { return h.c.Close() }

// write runs f under the write lock with a write deadline.
func (h *h2Conn) write(deadline time.Time, f func(fr *http2.Framer) error) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	_ = h.c.SetWriteDeadline(deadline)
	return f(h.fr)
}

// block encodes fields into a header block (the Encoder's dynamic table
// carries over between blocks, as the server's decoder expects).
func (h *h2Conn) block(fields []hpack.HeaderField) []byte {
	h.hbuf.Reset()
	for _, f := range fields {
		_ = h.enc.WriteField(f)
	}
	return bytes.Clone(h.hbuf.Bytes())
}

// encodeOnce encodes fields as the first header block of a connection
// (a fresh encoder). Such a block refers to no dynamic-table entry it did
// not insert itself, so it decodes the same whatever the decoder's table
// holds, and an attacker can send it again and again without encoding it
// each time: encoding a 64 MB HPACK bomb or 800 KiB of literals per
// request cost the suite more CPU than the gateway spent refusing them,
// on the same two cores.
func encodeOnce(fields []hpack.HeaderField) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for _, f := range fields {
		_ = enc.WriteField(f)
	}
	return b.Bytes()
}

// requestFields are the pseudo-headers (and Authorization, when auth is
// set) of a GET of path.
func requestFields(path, auth string) []hpack.HeaderField {
	f := []hpack.HeaderField{
		{Name: ":method", Value: "GET"},
		{Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: serverName},
		{Name: ":path", Value: path},
	}
	if auth != "" {
		f = append(f, hpack.HeaderField{Name: "authorization", Value: auth, Sensitive: true})
	}
	return f
}

// sendHeaders opens the next stream with fields, split into HEADERS and
// CONTINUATION frames of at most maxFrame bytes. Encoding and writing
// happen under the write lock so that the decoder sees blocks in order.
func (h *h2Conn) sendHeaders(deadline time.Time, fields []hpack.HeaderField, endStream bool) (uint32, error) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	_ = h.c.SetWriteDeadline(deadline)
	return h.sendBlockLocked(h.block(fields), endStream)
}

// sendBlock opens the next stream with a header block encoded beforehand
// (see encodeOnce), split as sendHeaders splits it. The connection's own
// encoder does not see the block: a connection that uses sendBlock must
// not use sendHeaders afterwards.
func (h *h2Conn) sendBlock(deadline time.Time, b []byte, endStream bool) (uint32, error) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	_ = h.c.SetWriteDeadline(deadline)
	return h.sendBlockLocked(b, endStream)
}

func (h *h2Conn) sendBlockLocked(b []byte, endStream bool) (uint32, error) {
	id := h.nextID
	h.nextID += 2
	first := b
	if len(first) > maxFrame {
		first = b[:maxFrame]
	}
	rest := b[len(first):]
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first,
		EndStream: endStream, EndHeaders: len(rest) == 0}); err != nil {
		return id, err
	}
	for len(rest) > 0 {
		n := min(len(rest), maxFrame)
		if err := h.fr.WriteContinuation(id, n == len(rest), rest[:n]); err != nil {
			return id, err
		}
		rest = rest[n:]
	}
	return id, nil
}

// readUntilSettings reads frames until the server's (non-ACK) SETTINGS,
// acknowledges it and returns, so that a client that stops reading
// afterwards still completed the handshake.
func (h *h2Conn) readUntilSettings(deadline time.Time) error {
	_ = h.c.SetReadDeadline(deadline)
	defer h.c.SetReadDeadline(time.Time{})
	for i := 0; i < 16; i++ {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return fmt.Errorf("reading server settings: %w", err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			return h.write(deadline, func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
		}
	}
	return errors.New("no SETTINGS among the server's first 16 frames")
}

// readLoop reads and discards frames until the connection fails,
// acknowledging SETTINGS and PING, never sending WINDOW_UPDATE, and
// counting GOAWAY and RST_STREAM into st. It returns the error that ended it.
func (h *h2Conn) readLoop(st *Stats) error {
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.write(time.Now().Add(writeTimeout), func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = h.write(time.Now().Add(writeTimeout), func(fr *http2.Framer) error { return fr.WritePing(true, f.Data) })
			}
		case *http2.GoAwayFrame:
			st.GoAway.Add(1)
		case *http2.RSTStreamFrame:
			st.RSTStream.Add(1)
		}
	}
}
