package origin

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/stella-ops/stella-mirror/export"
)

// Export-pinned URLs. Every complete export the origin holds is also
// served under its id:
//
//	/concelier/exports/{exportId}/index.json
//	/concelier/exports/{exportId}/mirror/{domain}/manifest.json | bundle.json | bundle.json.jws
//
// with hdrCachePinned: the bytes under such a URL never change, so a client
// (or a cache, or a downstream sync) that reads an index and then the files
// of the export it names never straddles a switch of the active export. An
// export stays reachable for as long as it is on disk (sync keeps the
// newest SYNC__KEEP ≥ 2, so the previous export survives at least until the
// next sync after a switch).

// hdrCachePinned is the Cache-Control of every pinned response.
var hdrCachePinned = []string{"public, max-age=31536000, immutable"}

// maxShownID bounds how much of a refused export id an error message
// quotes.
const maxShownID = 64

// exportNotFound is the 404 of a pinned URL whose id names no export this
// origin holds (unknown, pruned, incomplete, hidden, reserved or invalid).
// The JSON names the id, sanitized.
func exportNotFound(id string, err error) *httpError {
	shown := shownID(id)
	return &httpError{status: http.StatusNotFound, code: "export_not_found",
		msg: "export " + shown + " is not held by this origin", exportID: shown, err: err}
}

// shownID is id as an error message may quote it: at most maxShownID bytes
// of [A-Za-z0-9._%-] (anything else becomes '?'), "…" when cut. An id from
// the route is still percent-encoded, so an encoded traversal shows as
// sent.
func shownID(id string) string {
	cut := len(id) > maxShownID
	if cut {
		id = id[:maxShownID]
	}
	b := []byte(id)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-', c == '%':
		default:
			b[i] = '?'
		}
	}
	if cut {
		return string(b) + "…"
	}
	return string(b)
}

// held returns export id, acquired, when it is a complete export in the
// root: from the cache of opened exports (shared with the active export, so
// a pinned request for the active id costs what an unversioned one does),
// or freshly opened. An id that names no complete export directory costs
// one lstat and answers exportNotFound; it never enters the cache, so
// requests for unknown ids cannot evict the exports being served. Unlike
// acquire, held neither resolves nor changes the active export (nor the
// fast path of the unversioned URLs).
//
// id must have passed export.ValidExportID.
func (p *product) held(id string) (*exportState, error) {
	if p.root == "" {
		return nil, unavailable("no export can be served", fmt.Errorf("%s: export root is not configured", p.rootKey))
	}
	st, err := p.lookup(id, false, func() error {
		dir := filepath.Join(p.root, id)
		fi, err := os.Lstat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return exportNotFound(id, fmt.Errorf("%s does not exist", dir))
		case err != nil:
			return internalError(fmt.Errorf("export %s: %w", id, err))
		case !fi.IsDir():
			return exportNotFound(id, fmt.Errorf("%s is not a directory (symlinked exports are not served)", dir))
		}
		if _, ok := p.marker(dir); !ok {
			return exportNotFound(id, fmt.Errorf("export %s is incomplete (no %s)", id, export.IndexPath))
		}
		return nil
	})
	if err != nil {
		return nil, pinnedError(id, err)
	}
	return st, nil
}

// pinnedError rewords a failure to open export id (whose messages speak of
// the active export) for a pinned request; the status stays.
func pinnedError(id string, err error) error {
	var he *httpError
	if !errors.As(err, &he) || he.status < 500 {
		return err
	}
	if he.status == http.StatusServiceUnavailable && strings.Contains(he.msg, "no active export") {
		// The directory went away between the check and the open.
		return exportNotFound(id, he.err)
	}
	c := *he
	c.msg = "export " + id + " cannot be served"
	return &c
}
