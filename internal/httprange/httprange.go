// Package httprange parses the Content-Range header of a 206 answer
// (RFC 9110 section 14.4), which sync's resumable sources (upstream HTTPS,
// S3 ranged GETs) check before appending to a partial download. It does
// not make or serve range requests (net/http and the S3 SDK do).
package httprange

import (
	"fmt"
	"strconv"
	"strings"
)

// ContentRange is a parsed "bytes first-last/complete".
type ContentRange struct {
	// First and Last are the byte positions sent, inclusive.
	First, Last int64
	// Complete is the whole representation's length; -1 for "*".
	Complete int64
}

// Parse parses a Content-Range value of a 206 answer: "bytes
// first-last/complete" or "bytes first-last/*", with last >= first and
// last < complete. Anything else is an error naming the value.
func Parse(v string) (ContentRange, error) {
	bad := func() (ContentRange, error) {
		return ContentRange{}, fmt.Errorf("Content-Range %q: want bytes first-last/complete", v)
	}
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return bad()
	}
	rng, size, ok := strings.Cut(rest, "/")
	if !ok {
		return bad()
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return bad()
	}
	first, ok1 := digits(a)
	last, ok2 := digits(b)
	complete, ok3 := int64(-1), true
	if size != "*" {
		complete, ok3 = digits(size)
	}
	if !ok1 || !ok2 || !ok3 || last < first || complete >= 0 && last >= complete {
		return bad()
	}
	return ContentRange{First: first, Last: last, Complete: complete}, nil
}

// digits parses a non-empty decimal of ASCII digits only (no sign).
func digits(s string) (int64, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
