package gateway

import (
	"crypto/tls"
	"net/http"
	"strconv"
	"strings"

	"github.com/stella-ops/stella-mirror/gateway/basicauth"
	"github.com/stella-ops/stella-mirror/gateway/policy"
	"github.com/stella-ops/stella-mirror/internal/ratelimit"
)

// inbound is what the gateway's admission reads from a request, whichever
// path received it (net/http's types, or the native HTTP/1.1 path).
type inbound struct {
	host          string // the Host header (or the host of an absolute target)
	tls           bool
	sni           string // the TLS server name, "" without TLS
	method        string
	path          string // escaped path: the policy's input
	authorization []string
	body          bool          // the request frames a body
	clientIP      func() string // the budget key of an anonymous request; the login throttle's key
}

// refusal is an answer the gateway gives without the origin.
type refusal struct {
	status    int
	code, msg string
	header    []string // name, value, …
	// authFailure is the 401's reason (missing, malformed, scheme,
	// credentials); attempted the user name sent with wrong credentials
	// (unknown user or bad password), sanitised for the log.
	authFailure, attempted string
	hsts                   bool // the site is known: Strict-Transport-Security applies
}

// admit runs the gateway's checks in their order: the site by Host, the
// TLS name, no request body, authentication (before anything else looks at
// the request), the method, the domain policy and the budget. It returns
// the site (nil for an unknown host) and the authenticated user, or the
// refusal to send. Failures are counted here.
func (g *Gateway) admit(in inbound) (*site, string, *refusal) {
	st := g.sites[hostOnly(in.host)]
	if st == nil {
		return nil, "", &refusal{status: http.StatusNotFound, code: "not_found", msg: "no such site"}
	}
	if in.tls && g.sites[strings.ToLower(in.sni)] != st {
		return st, "", &refusal{status: http.StatusMisdirectedRequest, code: "misdirected",
			msg: "the Host header does not match the TLS server name"}
	}
	// GET and HEAD carry no body: a request that frames one (Content-Length
	// and/or Transfer-Encoding, the stuff of request smuggling) is refused
	// and the connection closed, so nothing after it is read as a request.
	if in.body {
		return st, "", &refusal{status: http.StatusBadRequest, code: "bad_request", msg: "a request body is not accepted",
			header: []string{"Connection", "close"}, hsts: true}
	}
	user := ""
	if st.auth != nil {
		u, reason, wait := g.authenticate(st, in.authorization, in.clientIP)
		if reason == "throttled" {
			g.metrics.throttled.WithLabelValues(st.name).Inc()
			return st, "", &refusal{status: http.StatusTooManyRequests, code: "too_many_requests",
				msg:    "too many failed logins from this address; retry later",
				header: []string{"Retry-After", strconv.Itoa(ratelimit.RetryAfterSeconds(wait))}, hsts: true}
		}
		if reason != "" {
			g.metrics.authFailures.WithLabelValues(st.name, reason).Inc()
			ref := &refusal{status: http.StatusUnauthorized, code: "unauthorized", msg: "valid credentials are required",
				header: []string{"WWW-Authenticate", st.challenge}, hsts: true, authFailure: reason}
			if reason == "credentials" {
				ref.attempted = basicauth.SafeUser(u)
			}
			return st, "", ref
		}
		user = u
	}
	if in.method != http.MethodGet && in.method != http.MethodHead {
		return st, user, &refusal{status: http.StatusMethodNotAllowed, code: "method_not_allowed", msg: "only GET and HEAD are allowed",
			header: []string{"Allow", "GET, HEAD"}, hsts: true}
	}
	dec := st.policy.Check(in.path)
	if dec.Kind == policy.Refused {
		return st, user, &refusal{status: http.StatusNotFound, code: "not_found", msg: "not found", hsts: true}
	}
	lim, budget := st.index, "index"
	if dec.Kind == policy.Download {
		lim, budget = st.download, "download"
	}
	if lim.Enabled() {
		key := user
		if key == "" {
			key = "ip:" + in.clientIP()
		}
		if ok, wait := lim.Allow(key); !ok {
			g.metrics.budget.WithLabelValues(st.name, budget).Inc()
			g.mon.rejections.Add(st.name, g.mon.now())
			return st, user, &refusal{status: http.StatusTooManyRequests, code: "too_many_requests", msg: "request budget exhausted; retry later",
				header: []string{"Retry-After", strconv.Itoa(ratelimit.RetryAfterSeconds(wait))}, hsts: true}
		}
	}
	return st, user, nil
}

// tlsName is the server name of a TLS connection, "" without one.
func tlsName(cs *tls.ConnectionState) string {
	if cs == nil {
		return ""
	}
	return cs.ServerName
}
