package origin

import "net/http"

// Access describes what a request asks for, as an Authorizer sees it.
type Access struct {
	// Product is "concelier" or "excititor".
	Product string
	// Endpoint names the route: "index", "manifest", "bundle",
	// "bundle_signature", "excititor_index", "excititor_export" or
	// "excititor_signature". An export-pinned path
	// (`/concelier/exports/{exportId}/…`) is named by its unversioned twin,
	// so it is authorized and budgeted exactly like it.
	Endpoint string
	// ExportID is the export a pinned path names (it has passed
	// export.ValidExportID but may not be held); empty for the unversioned
	// paths, which serve the active export.
	ExportID string
	// Domain is the requested domain id; empty for the shared Concelier
	// index. It has passed export.ValidDomainID but may be unknown.
	Domain string
	// RequireAuthentication is what the configuration says for this path:
	// the domain's REQUIREAUTHENTICATION when set, else the product's.
	RequireAuthentication bool
}

// Denial is an Authorizer's refusal, written to the client as a JSON error.
type Denial struct {
	// Status is the HTTP status: 400 (malformed credentials), 401, 403,
	// 429 or 503 (credentials cannot be checked now).
	Status int
	// Header is added to the response (e.g. WWW-Authenticate, Retry-After).
	// The Authorizer must not modify it after returning it.
	Header http.Header
	// Code is the JSON "error" field, e.g. "unauthorized".
	Code string
	// Message is the JSON "message" field, for humans. It must never
	// contain the client's credentials.
	Message string
}

// Authorizer decides whether a request may read an export-backed path. It
// is the seam where bearer-token validation, bypass networks and rate
// budgets plug in; the origin's built-in one (used when Config.Authorizer
// is nil) implements all three from the configuration.
//
// Authorize MUST be safe for concurrent use, MUST NOT read or close the
// request body and MUST NOT write to any response. It returns the client
// identity the access log shows (e.g. "sub:alice", "user:bob",
// "ip:192.0.2.1"; never a credential; "" when unknown) and nil to let the
// request through, or the refusal to answer. It runs before the active
// export is resolved, so a refusal reveals nothing about the export. It
// SHOULD be cheap: it runs on every request, including the hot index path.
type Authorizer interface {
	// Authorize returns the client identity and nil to let r through, or
	// the refusal to answer.
	Authorize(r *http.Request, a Access) (client string, denial *Denial)
}

// FailClosed is an Authorizer without credentials checks: it lets a
// request through only when authentication is not required for its path,
// and otherwise answers 401 with
// `WWW-Authenticate: Bearer realm="stella-mirror"` (RFC 6750), whatever
// credentials the request carries.
type FailClosed struct{}

var _ Authorizer = FailClosed{}

// bearerChallenge is the shared 401 answer; never modified.
var bearerChallenge = &Denial{
	Status:  http.StatusUnauthorized,
	Header:  http.Header{"Www-Authenticate": {`Bearer realm="stella-mirror"`}},
	Code:    "unauthorized",
	Message: "authentication is required for this path",
}

// Authorize implements Authorizer.
func (FailClosed) Authorize(_ *http.Request, a Access) (string, *Denial) {
	if !a.RequireAuthentication {
		return "", nil
	}
	return "", bearerChallenge
}

// authorize asks the Authorizer about r and records the client identity it
// returns on the response recorder w (for the access log).
func (o *Origin) authorize(w http.ResponseWriter, r *http.Request, a Access) *Denial {
	client, d := o.auth.Authorize(r, a)
	if rec, ok := w.(*recorder); ok {
		rec.client = client
	}
	return d
}
