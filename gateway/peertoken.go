package gateway

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/stella-ops/stella-mirror/gateway/proxy"
	"github.com/stella-ops/stella-mirror/internal/peertoken"
)

// keyOriginPeerToken is the peer token file's key.
const keyOriginPeerToken = "GATEWAY__ORIGINPEERTOKENFILE"

// peerToken is the token the gateway presents to the origin
// (GATEWAY__ORIGINPEERTOKENFILE): the file's first token, swapped on a
// successful reload.
type peerToken struct {
	path     string
	tok      atomic.Pointer[string]
	logger   *slog.Logger
	onReload func(error) // counts reloads; may be nil
}

// loadPeerToken reads the file; an empty path returns nil (no token).
func loadPeerToken(path string, logger *slog.Logger, onReload func(error)) (*peerToken, error) {
	if path == "" {
		return nil, nil
	}
	p := &peerToken{path: path, logger: logger, onReload: onReload}
	toks, err := peertoken.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyOriginPeerToken, err)
	}
	p.tok.Store(&toks[0])
	return p, nil
}

// reload re-reads the file; on failure the token in service stays (logged,
// counted, returned).
func (p *peerToken) reload() error {
	toks, err := peertoken.ReadFile(p.path)
	if err == nil {
		p.tok.Store(&toks[0])
		p.logger.Info("origin peer token reloaded", "file", p.path)
	} else {
		err = fmt.Errorf("%s: %w", keyOriginPeerToken, err)
		p.logger.Error("origin peer token file not reloaded; the token in service stays", "file", p.path, "error", err.Error())
	}
	if p.onReload != nil {
		p.onReload(err)
	}
	return err
}

// current returns the token in service (proxy.Options.PeerToken).
func (p *peerToken) current() string { return *p.tok.Load() }

// peerTokenTransport adds the peer token to every request to the origin
// below the cache (its fills and revalidations): a hit needs none.
type peerTokenTransport struct {
	base http.RoundTripper
	tok  func() string
}

// RoundTrip sends a copy of r with the peer token set (a RoundTripper must
// not modify its request).
func (t *peerTokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.Header[proxy.PeerTokenHeader] = []string{t.tok()}
	return t.base.RoundTrip(r2)
}
