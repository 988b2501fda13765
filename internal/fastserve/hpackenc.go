package fastserve

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http/httpguts"
)

// Response header blocks (RFC 7541) are encoded without the dynamic
// table: every field is a literal that is not indexed, its name taken from
// the static table when it is there, its value sent as is (no Huffman
// code). That is what nginx does too. It costs some bytes per response
// and saves all of the encoder's state: blocks can be built by any
// goroutine in any order, and encoding is a few copies (x/net's encoder,
// with its table searches and Huffman code, was 9% of the gateway's CPU
// under h2load). The client's decoder table is never touched, so its
// SETTINGS_HEADER_TABLE_SIZE does not matter.

// staticNames maps a field name to its index in the HPACK static table.
var staticNames = map[string]byte{
	"accept-charset": 15, "accept-encoding": 16, "accept-language": 17, "accept-ranges": 18,
	"accept": 19, "access-control-allow-origin": 20, "age": 21, "allow": 22, "authorization": 23,
	"cache-control": 24, "content-disposition": 25, "content-encoding": 26, "content-language": 27,
	"content-length": 28, "content-location": 29, "content-range": 30, "content-type": 31,
	"cookie": 32, "date": 33, "etag": 34, "expect": 35, "expires": 36, "from": 37, "host": 38,
	"if-match": 39, "if-modified-since": 40, "if-none-match": 41, "if-range": 42,
	"if-unmodified-since": 43, "last-modified": 44, "link": 45, "location": 46, "max-forwards": 47,
	"proxy-authenticate": 48, "proxy-authorization": 49, "range": 50, "referer": 51, "refresh": 52,
	"retry-after": 53, "server": 54, "set-cookie": 55, "strict-transport-security": 56,
	"transfer-encoding": 57, "user-agent": 58, "vary": 59, "via": 60, "www-authenticate": 61,
}

// staticStatus is the static table's index of the fully indexed :status
// fields.
var staticStatus = map[int]byte{200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14}

const hpackStatusName = 8 // ":status" in the static table

var headerBlocks = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func putHeaderBlock(b *[]byte) {
	if cap(*b) <= 16<<10 {
		*b = (*b)[:0]
		headerBlocks.Put(b)
	}
}

// encodeResponseHeader encodes status and h as an HTTP/2 header block:
// the connection-specific fields dropped (RFC 9113 §8.2.2), names in
// lower case, fields with values HTTP/2 cannot carry left out, the
// content-length given (when clen >= 0 and the status has a body) and a
// Date added unless h has one.
func encodeResponseHeader(status int, h *fasthttp.ResponseHeader, clen int64, bodyAllowed bool) *[]byte {
	bp := headerBlocks.Get().(*[]byte)
	b := *bp
	if idx, ok := staticStatus[status]; ok {
		b = append(b, 0x80|idx) // indexed field
	} else {
		b = appendHpackInt(b, 4, 0, hpackStatusName)
		b = appendHpackString(b, strconv.Itoa(status))
	}
	hasDate := false
	var name [64]byte
	for k, v := range h.All() {
		lk := lowerName(name[:0], k)
		switch string(lk) {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "content-length":
			continue
		case "date":
			hasDate = true
		}
		if !httpguts.ValidHeaderFieldValue(view(v)) {
			continue
		}
		b = appendField(b, lk, v)
	}
	if clen >= 0 && bodyAllowed {
		var num [20]byte
		b = appendField(b, []byte("content-length"), strconv.AppendInt(num[:0], clen, 10))
	}
	if !hasDate {
		b = appendField(b, []byte("date"), httpDate())
	}
	*bp = b
	return bp
}

// appendField appends a literal field without indexing (never indexed for
// set-cookie, so that intermediaries do not index it either).
func appendField(b, name, value []byte) []byte {
	var prefix byte // 0000xxxx: without indexing
	if string(name) == "set-cookie" {
		prefix = 0x10 // 0001xxxx: never indexed
	}
	if idx, ok := staticNames[string(name)]; ok {
		b = appendHpackInt(b, 4, prefix, uint64(idx))
	} else {
		b = append(b, prefix)
		b = appendHpackInt(b, 7, 0, uint64(len(name)))
		b = append(b, name...)
	}
	b = appendHpackInt(b, 7, 0, uint64(len(value)))
	return append(b, value...)
}

func appendHpackString(b []byte, s string) []byte {
	b = appendHpackInt(b, 7, 0, uint64(len(s)))
	return append(b, s...)
}

// appendHpackInt appends v as an HPACK integer with an n-bit prefix
// (RFC 7541 §5.1), the first byte's other bits set to first.
func appendHpackInt(b []byte, n uint, first byte, v uint64) []byte {
	max := uint64(1)<<n - 1
	if v < max {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(max))
	v -= max
	for v >= 128 {
		b = append(b, byte(v&0x7f|0x80))
		v >>= 7
	}
	return append(b, byte(v))
}

// lowerName appends k in lower case (field names are ASCII).
func lowerName(dst, k []byte) []byte {
	for _, c := range k {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// httpDate is the current time as an HTTP date, formatted once a second.
func httpDate() []byte {
	now := time.Now().Unix()
	if d := cachedDate.Load(); d != nil && d.sec == now {
		return d.b
	}
	d := &dateValue{sec: now, b: time.Unix(now, 0).UTC().AppendFormat(nil, http.TimeFormat)}
	cachedDate.Store(d)
	return d.b
}

type dateValue struct {
	sec int64
	b   []byte
}

var cachedDate atomic.Pointer[dateValue]
