package origin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stella-ops/stella-mirror/export"
)

// exportState is one opened export directory: its os.Root (no path,
// symlink or ".." can leave it), its parsed indexes and the files they
// reference. It is reference-counted: the product's cache holds one
// reference and every request using it another; the root is closed when
// the last one is released, so eviction never pulls a directory out from
// under an in-flight response.
type exportState struct {
	product  *product
	id       string
	idHeader []string // X-Stella-Export-Id value
	dir      string   // <root>/<id>
	loadedAt time.Time
	err      error // load failure; nothing below is set

	generatedAt time.Time // newest generatedAt of the export's indexes

	refs    atomic.Int64
	checked atomic.Int64 // unix nanos of the last directory identity check
	root    *os.Root
	dirInfo os.FileInfo // identity of the opened directory

	smallBytes atomic.Int64 // memory held by small files

	// Concelier.
	index     *fileData                   // mirror/index.json
	concelier map[string]*concelierDomain // by domain id

	// Excititor.
	excititor      map[string]*excititorDomain // by domain id
	excititorOrder []string                    // domain ids, sorted
}

// concelierDomain holds the files of one Concelier domain.
type concelierDomain struct {
	manifest, bundle, signature *fileEntry
}

// excititorDomain holds one Excititor domain: its index, or why it cannot
// be served.
type excititorDomain struct {
	err         error
	index       *fileData
	generatedAt time.Time // the domain index's generatedAt
	exports     map[string]*excititorExport
}

// excititorExport holds one VEX export and its signature.
type excititorExport struct {
	contentType []string
	file, sig   *fileEntry
}

// fileEntry is one file the export's indexes reference. It is loaded (and
// verified against its declared digest and size) on first use.
type fileEntry struct {
	path   string // relative to the export directory
	digest string // declared sha256:<hex>; "" when none is declared
	size   int64  // declared size; -1 when none is declared

	mu   sync.Mutex // serialises loading
	data atomic.Pointer[fileData]
}

// fileData is a loaded file: its identity, validators and, when small, its
// bytes. Header values are built once and shared by every response.
type fileData struct {
	body    []byte // the whole file when small; nil when served from disk
	size    int64
	modTime time.Time
	info    os.FileInfo

	etag          []string // `"<sha256 hex>"`
	lastModified  []string
	contentLength []string
}

func newFileData(body []byte, fi os.FileInfo, sum []byte) *fileData {
	return &fileData{
		body:          body,
		size:          fi.Size(),
		modTime:       fi.ModTime(),
		info:          fi,
		etag:          []string{`"` + hex.EncodeToString(sum) + `"`},
		lastModified:  []string{fi.ModTime().UTC().Format(http.TimeFormat)},
		contentLength: []string{strconv.FormatInt(fi.Size(), 10)},
	}
}

func newEntry(path, digest string, size int64) *fileEntry {
	return &fileEntry{path: path, digest: digest, size: size}
}

// tryAcquire takes a reference unless the export is already closed.
func (st *exportState) tryAcquire() bool {
	for {
		n := st.refs.Load()
		if n <= 0 {
			return false
		}
		if st.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release gives up a reference; the last one closes the root.
func (st *exportState) release() {
	if st.refs.Add(-1) == 0 && st.root != nil {
		st.root.Close()
	}
}

// fresh reports whether the cached export may still be used: a failure is
// retried after retryFailedAfter; a loaded export is re-checked every
// revalidateAfter to still be the directory that was opened (an export
// removed or replaced under the same name is reopened).
func (st *exportState) fresh(now time.Time) bool {
	if st.err != nil {
		return now.Sub(st.loadedAt) < retryFailedAfter
	}
	if now.UnixNano()-st.checked.Load() < int64(revalidateAfter) {
		return true
	}
	fi, err := os.Lstat(st.dir)
	if err != nil || !os.SameFile(fi, st.dirInfo) {
		return false
	}
	st.checked.Store(now.UnixNano())
	return true
}

// openRoot opens the export directory, which must be a real directory (not
// a symlink), as an os.Root.
func (st *exportState) openRoot() error {
	fi, err := os.Lstat(st.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return unavailable("no active export", fmt.Errorf("export directory %s does not exist", st.dir))
	case err != nil:
		return err
	case !fi.IsDir():
		return unavailable("no active export", fmt.Errorf("export %s: %s is not a directory (symlinked exports are not served)", st.id, st.dir))
	}
	root, err := os.OpenRoot(st.dir)
	if err != nil {
		return err
	}
	ri, err := root.Stat(".")
	if err != nil || !os.SameFile(fi, ri) {
		root.Close()
		return unavailable("no active export", fmt.Errorf("export %s: directory changed while it was opened", st.id))
	}
	st.root, st.dirInfo = root, fi
	return nil
}

// errNotRegular marks a path that is not a regular file.
var errNotRegular = errors.New("not a regular file")

// openRegular opens path inside the export. O_NONBLOCK keeps a FIFO from
// blocking the open; anything but a regular file is refused.
func (st *exportState) openRegular(path string) (*os.File, os.FileInfo, error) {
	f, err := st.root.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errNotRegular
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// readIndex reads a whole index file (at most maxIndexBytes).
func (st *exportState) readIndex(path string) ([]byte, os.FileInfo, error) {
	f, fi, err := st.openRegular(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if fi.Size() > maxIndexBytes {
		return nil, nil, fmt.Errorf("%s: %d bytes, more than the limit of %d", path, fi.Size(), maxIndexBytes)
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, fi, nil
}

func sha256Of(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:]
}

// loadConcelier parses mirror/index.json and prepares every domain's files.
func loadConcelier(st *exportState) error {
	data, fi, err := st.readIndex(export.IndexPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return unavailable("the active export is incomplete", fmt.Errorf("export %s has no %s", st.id, export.IndexPath))
		}
		return fmt.Errorf("%s: %w", export.IndexPath, err)
	}
	ix, err := export.ParseIndex(data)
	if err != nil {
		return unavailable("the active export's index is malformed", fmt.Errorf("export %s: %w", st.id, err))
	}
	if ix.ExportID != st.id {
		st.product.logger.Warn("index names another export", "product", st.product.name, "export_id", st.id, "index_export_id", ix.ExportID)
	}
	st.index = newFileData(data, fi, sha256Of(data))
	st.generatedAt = ix.GeneratedAt
	st.concelier = make(map[string]*concelierDomain, len(ix.Domains))
	for _, d := range ix.Domains {
		st.concelier[d.DomainID] = &concelierDomain{
			manifest:  newEntry(export.ManifestPath(d.DomainID), d.Manifest.Digest, d.Manifest.SizeBytes),
			bundle:    newEntry(export.BundlePath(d.DomainID), d.Bundle.Digest, d.Bundle.SizeBytes),
			signature: newEntry(export.BundleSignaturePath(d.DomainID), "", -1),
		}
	}
	return nil
}

// loadExcititor parses every excititor/<domain>/index.json. A domain whose
// index is malformed is kept with its error (its paths answer 503 and the
// origin is not ready); an export without any domain index is incomplete.
func loadExcititor(st *exportState) error {
	dir, err := st.root.Open("excititor")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return unavailable("the active export is incomplete", fmt.Errorf("export %s has no excititor directory", st.id))
		}
		return err
	}
	entries, err := dir.ReadDir(-1)
	dir.Close()
	if err != nil {
		return fmt.Errorf("listing excititor domains: %w", err)
	}
	st.excititor = make(map[string]*excititorDomain, len(entries))
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !export.ValidDomainID(name) {
			continue
		}
		data, fi, err := st.readIndex(export.ExcititorIndexPath(name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // not a domain
		}
		d := &excititorDomain{}
		st.excititor[name] = d
		st.excititorOrder = append(st.excititorOrder, name)
		if err != nil {
			d.err = err
			continue
		}
		ix, err := export.ParseExcititorIndex(data)
		switch {
		case err != nil:
			d.err = err
			continue
		case ix.DomainID != name:
			d.err = fmt.Errorf("%s names domain %q", export.ExcititorIndexPath(name), ix.DomainID)
			continue
		}
		d.index = newFileData(data, fi, sha256Of(data))
		d.generatedAt = ix.GeneratedAt
		if ix.GeneratedAt.After(st.generatedAt) {
			st.generatedAt = ix.GeneratedAt
		}
		d.exports = make(map[string]*excititorExport, len(ix.Exports))
		for _, x := range ix.Exports {
			d.exports[x.ExportKey] = &excititorExport{
				contentType: []string{export.Formats[x.Format]},
				file:        newEntry(export.ExcititorExportPath(name, x.ExportKey), x.Digest, x.SizeBytes),
				sig:         newEntry(export.ExcititorSignaturePath(name, x.ExportKey), "", -1),
			}
		}
	}
	if len(st.excititor) == 0 {
		return unavailable("the active export is incomplete", fmt.Errorf("export %s has no excititor/<domain>/index.json", st.id))
	}
	slices.Sort(st.excititorOrder)
	return nil
}

// file returns e's data, loading and verifying it on first use. Failures
// are not remembered: the next request tries again.
func (st *exportState) file(e *fileEntry) (*fileData, error) {
	if fd := e.data.Load(); fd != nil {
		return fd, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if fd := e.data.Load(); fd != nil {
		return fd, nil
	}
	fd, err := st.loadFile(e)
	if err != nil {
		return nil, err
	}
	e.data.Store(fd)
	return fd, nil
}

// loadFile reads e once: small files into memory, large ones only through
// a hash. The SHA-256 becomes the ETag and must match the digest (and the
// size) the index declares, so a tampered or half-written file is never
// served.
func (st *exportState) loadFile(e *fileEntry) (*fileData, error) {
	f, fi, err := st.openRegular(e.path)
	if err != nil {
		return nil, fileError(st, e.path, err)
	}
	defer f.Close()
	size := fi.Size()
	if e.size >= 0 && size != e.size {
		return nil, integrityError(st, e.path, fmt.Errorf("size %d, the index declares %d", size, e.size))
	}
	// Small files are kept in memory while the export's budget lasts;
	// everything else is only hashed here and streamed from disk later.
	small := size < st.product.smallMax
	if small && st.smallBytes.Add(size) > maxSmallBytesPerExport {
		st.smallBytes.Add(-size)
		small = false
	}
	var body []byte
	h := sha256.New()
	if small {
		body = make([]byte, size)
		if _, err := io.ReadFull(f, body); err != nil {
			st.smallBytes.Add(-size)
			return nil, internalError(fmt.Errorf("export %s: reading %s: %w", st.id, e.path, err))
		}
		h.Write(body)
	} else {
		n, err := io.Copy(h, f)
		if err != nil {
			return nil, internalError(fmt.Errorf("export %s: reading %s: %w", st.id, e.path, err))
		}
		if n != size {
			return nil, integrityError(st, e.path, fmt.Errorf("read %d bytes, expected %d (file changed while it was read)", n, size))
		}
	}
	sum := h.Sum(nil)
	if e.digest != "" && e.digest != export.DigestPrefix+hex.EncodeToString(sum) {
		return nil, integrityError(st, e.path, fmt.Errorf("digest %s%x, the index declares %s", export.DigestPrefix, sum, e.digest))
	}
	return newFileData(body, fi, sum), nil
}

// openLarge opens a large file for one response and checks it is still
// the file that was verified (same inode, size and mtime); if not, the
// entry is forgotten so the next request verifies the file again.
func (st *exportState) openLarge(e *fileEntry, fd *fileData) (*os.File, error) {
	f, fi, err := st.openRegular(e.path)
	if err != nil {
		return nil, fileError(st, e.path, err)
	}
	if !os.SameFile(fi, fd.info) || fi.Size() != fd.size || !fi.ModTime().Equal(fd.modTime) {
		f.Close()
		e.data.CompareAndSwap(fd, nil)
		return nil, integrityError(st, e.path, errors.New("file changed since it was verified"))
	}
	return f, nil
}

// fileError classifies a failure to open a file the index references.
func fileError(st *exportState, path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return notFound("not found", fmt.Errorf("export %s: %s is listed but missing", st.id, path))
	case isEscape(err):
		return &httpError{status: http.StatusNotFound, code: "not_found", msg: "not found",
			err: fmt.Errorf("export %s: refusing %s: it leads outside the export directory: %w", st.id, path, err), warn: true}
	case errors.Is(err, errNotRegular):
		return &httpError{status: http.StatusNotFound, code: "not_found", msg: "not found",
			err: fmt.Errorf("export %s: refusing %s: %w", st.id, path, err), warn: true}
	default:
		return internalError(fmt.Errorf("export %s: opening %s: %w", st.id, path, err))
	}
}

// isEscape reports whether err is os.Root refusing a path (through a
// symlink) that leaves the root. The standard library does not export the
// error, so its text is matched; misclassifying only changes the log line.
func isEscape(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// integrityError is a file that does not match what the export declares.
func integrityError(st *exportState, path string, err error) error {
	return unavailable("the export is inconsistent", fmt.Errorf("export %s: %s: %w", st.id, path, err))
}
