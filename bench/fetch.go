package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
)

// Body identifies a response body: its SHA-256 and length, plus the
// response headers that the HTTP contract fixes.
type Body struct {
	SHA256 string
	Size   int64
	Header http.Header
}

// FetchBody GETs url, requires 200 and streams the body through SHA-256
// (bounded memory, whatever the size).
func FetchBody(ctx context.Context, client *http.Client, url string) (Body, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Body{}, fmt.Errorf("fetching %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Body{}, fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Body{}, fmt.Errorf("fetching %s: status %s, want 200", url, resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return Body{}, fmt.Errorf("fetching %s: body after %d bytes: %w", url, n, err)
	}
	return Body{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n, Header: resp.Header}, nil
}

// FileBody is FetchBody for a file on disk (no headers).
func FileBody(path string) (Body, error) {
	f, err := os.Open(path)
	if err != nil {
		return Body{}, fmt.Errorf("hashing %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Body{}, fmt.Errorf("hashing %s: %w", path, err)
	}
	return Body{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// ContractHeaders are the response headers compared between the servers
// before measuring: a server that skipped them would do less work.
var ContractHeaders = []string{"Content-Type", "Cache-Control", "Content-Length"}

// HeaderDiffs lists the ContractHeaders whose values differ between a and b
// as "Name: a-value vs b-value".
func HeaderDiffs(a, b http.Header) []string {
	var diffs []string
	for _, k := range ContractHeaders {
		if av, bv := a.Get(k), b.Get(k); av != bv {
			diffs = append(diffs, fmt.Sprintf("%s: %q vs %q", k, av, bv))
		}
	}
	return diffs
}
