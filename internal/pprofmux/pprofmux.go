// Package pprofmux serves net/http/pprof's profiles under /debug/pprof/ on
// a handler of the caller's choosing (an admin listener), never on
// http.DefaultServeMux. The gateway and the origin mount it when
// GATEWAY__ADMINPPROF / ORIGIN__ADMINPPROF is true (off by default).
package pprofmux

import (
	"net/http"
	"net/http/pprof"
)

// Prefix is the path every profile is served under.
const Prefix = "/debug/pprof/"

// Wrap returns a handler that serves the pprof index and profiles under
// Prefix and passes every other request to next.
func Wrap(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(Prefix, Handler())
	mux.Handle("/", next)
	return mux
}

// Handler serves the pprof index and profiles for requests under Prefix
// (mount it at Prefix, behind whatever guard the listener needs); any other
// path is 404.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(Prefix, pprof.Index) // also /debug/pprof/heap, goroutine, allocs, …
	mux.HandleFunc(Prefix+"cmdline", pprof.Cmdline)
	mux.HandleFunc(Prefix+"profile", pprof.Profile)
	mux.HandleFunc(Prefix+"symbol", pprof.Symbol)
	mux.HandleFunc(Prefix+"trace", pprof.Trace)
	return mux
}
