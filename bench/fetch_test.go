package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestFetchBody(t *testing.T) {
	body := strings.Repeat("stella", 50_000)
	sum := sha256.Sum256([]byte(body))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("Cache-Control", ImmutableCacheControl)
			w.Write([]byte(body))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)

	got, err := FetchBody(context.Background(), srv.Client(), srv.URL+"/ok")
	if err != nil {
		t.Fatal(err)
	}
	if got.SHA256 != hex.EncodeToString(sum[:]) || got.Size != int64(len(body)) {
		t.Errorf("got %s (%d bytes), want %x (%d bytes)", got.SHA256, got.Size, sum, len(body))
	}
	if got.Header.Get("Cache-Control") != ImmutableCacheControl {
		t.Errorf("header Cache-Control = %q", got.Header.Get("Cache-Control"))
	}

	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	disk, err := FileBody(path)
	if err != nil {
		t.Fatal(err)
	}
	if disk.SHA256 != got.SHA256 || disk.Size != got.Size {
		t.Errorf("FileBody = %s (%d), want %s (%d)", disk.SHA256, disk.Size, got.SHA256, got.Size)
	}

	if _, err := FetchBody(context.Background(), srv.Client(), srv.URL+"/missing"); err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Errorf("404: err = %v, want status 404", err)
	}
	if _, err := FileBody(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("FileBody of a missing file: want an error")
	}
}

func TestHeaderDiffs(t *testing.T) {
	a := http.Header{"Content-Type": {"application/json"}, "Cache-Control": {IndexCacheControl}, "Content-Length": {"10"}, "Etag": {`"a"`}}
	b := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Cache-Control": {IndexCacheControl}, "Content-Length": {"10"}, "Etag": {`"b"`}}
	got := HeaderDiffs(a, b)
	want := []string{`Content-Type: "application/json" vs "application/json; charset=utf-8"`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("HeaderDiffs = %q, want %q", got, want)
	}
	if d := HeaderDiffs(a, a); len(d) != 0 {
		t.Errorf("HeaderDiffs(a, a) = %q, want none", d)
	}
}
