package cache

import (
	"errors"
	"net/http"
)

// Status is the cache's verdict on one response, with nginx's words so that
// dashboards built on nginx's $upstream_cache_status keep working.
type Status string

// The statuses, as nginx names them.
const (
	// StatusHit: served from a fresh stored response, or streamed from a
	// fill another request started.
	StatusHit Status = "HIT"
	// StatusMiss: nothing usable was stored; this request fetched from
	// the origin (it started the fill others join).
	StatusMiss Status = "MISS"
	// StatusExpired: the stored response was stale and the origin sent a
	// new one.
	StatusExpired Status = "EXPIRED"
	// StatusStale: the stored response was stale and the origin failed;
	// served stale within the grace.
	StatusStale Status = "STALE"
	// StatusUpdating: served stale (within stale-while-revalidate) while a
	// background revalidation runs.
	StatusUpdating Status = "UPDATING"
	// StatusRevalidated: the stored response was stale and the origin
	// answered 304; served from the cache with refreshed metadata.
	StatusRevalidated Status = "REVALIDATED"
	// StatusBypass: the request was not eligible for the cache (method,
	// or a client no-store when HonourClientNoCache is set).
	StatusBypass Status = "BYPASS"
)

// Header is the response header that carries the Status.
const Header = "X-Cache-Status"

// Statuses lists every Status, e.g. to pre-create metric label values.
var Statuses = []Status{StatusHit, StatusMiss, StatusExpired, StatusStale, StatusUpdating, StatusRevalidated, StatusBypass}

// StatusOf returns the Status recorded in a response header (the proxied
// response's, or the ResponseWriter's after the proxy has written it), or
// "" when there is none. The gateway's access log and its cache_status
// metric label use it.
func StatusOf(h http.Header) Status {
	if v := h[Header]; len(v) > 0 {
		return Status(v[0])
	}
	return ""
}

// Error is what RoundTrip returns when it cannot answer: the origin failed
// and nothing usable was stored. Status says how far the request got (MISS,
// EXPIRED or BYPASS) so the error response can carry X-Cache-Status too.
type Error struct {
	Status Status
	Err    error
}

func (e *Error) Error() string { return "cache " + string(e.Status) + ": " + e.Err.Error() }

// Unwrap returns the upstream error.
func (e *Error) Unwrap() error { return e.Err }

// StatusOfError returns the Status carried by an error RoundTrip returned,
// or StatusMiss when err carries none.
func StatusOfError(err error) Status {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Status
	}
	return StatusMiss
}
