package upstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

// bigExport writes one domain whose bundle is about size bytes and returns
// the fixture and the bundle's exact size.
func bigExport(t *testing.T, root string, size int64) (*fixture.Result, int64) {
	t.Helper()
	fx, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: size, VEXSize: 4 << 10,
		Seed: 1, Key: testKey, SetLatest: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fx.Files {
		if f.Path == export.BundlePath("primary") {
			return fx, f.SizeBytes
		}
	}
	t.Fatal("no bundle in the fixture")
	return nil, 0
}

// TestResumeAfterInterruptedRun: a run stopped half-way through a 48 MiB
// bundle leaves a .part; the next run asks the origin for the rest only
// (Range, 206) and publishes a verified export.
func TestResumeAfterInterruptedRun(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fx, size := bigExport(t, src, 48<<20)
	served := &sourcetest.ServedBytes{Next: newOrigin(t, src).Handler()}
	up := httptest.NewServer(served)
	defer up.Close()
	bundle := export.BundlePath("primary")
	half := size / 2

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := mirrorsync.Run(ctx, mirrorsync.Options{Root: dst, Keys: keys,
		Source: sourcetest.Interrupt(newSource(t, up.URL, nil), bundle, half, cancel)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	part := filepath.Join(dst, export.StagingDir, fx.ExportID, "mirror", "primary", ".bundle.json.part")
	if fi, err := os.Stat(part); err != nil || fi.Size() != half {
		t.Fatalf("partial file after the interrupted run: %v, %v; want %d bytes", fi, err, half)
	}

	served.Reset()
	res, err := run(t, dst, newSource(t, up.URL, nil))
	if err != nil || !res.Published {
		t.Fatalf("resumed run: %+v %v", res, err)
	}
	sourcetest.CheckPublished(t, dst, fx)
	got := served.Bytes("/primary/bundle.json")
	t.Logf("bundle %d bytes, interrupted at %d: the second run fetched %d bytes of it (%d in all), kept %d",
		size, half, got, res.BytesDownloaded, res.BytesResumed)
	if got != size-half || res.BytesResumed != half {
		t.Errorf("second run: %d bundle bytes served, %d resumed; want %d and %d", got, res.BytesResumed, size-half, half)
	}
	if r := served.Ranges("/primary/bundle.json"); !slices.Equal(r, []string{fmt.Sprintf("bytes=%d-", half)}) {
		t.Errorf("bundle requests' Range headers: %q", r)
	}
	if _, err := os.Stat(part + ".info"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the partial-file record is left: %v", err)
	}
}

// abortOnce cuts the first response for a path ending in suffix after n
// body bytes (the connection is closed, as by a crashed proxy).
func abortOnce(next http.Handler, suffix string, n int64) http.Handler {
	var done atomic.Bool
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, suffix) && done.CompareAndSwap(false, true) {
			w = &abortWriter{ResponseWriter: w, left: n}
		}
		next.ServeHTTP(w, r)
	})
}

type abortWriter struct {
	http.ResponseWriter
	left int64
}

func (w *abortWriter) Write(p []byte) (int, error) {
	if int64(len(p)) >= w.left {
		w.ResponseWriter.Write(p[:w.left])
		w.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	w.left -= int64(len(p))
	return w.ResponseWriter.Write(p)
}

// TestResumeWithinRun: a connection cut mid-bundle is retried in the same
// run from where it stopped, not from 0.
func TestResumeWithinRun(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fx, size := bigExport(t, src, 8<<20)
	cut := size/2 + 12345
	served := &sourcetest.ServedBytes{Next: abortOnce(newOrigin(t, src).Handler(), "/primary/bundle.json", cut)}
	up := httptest.NewServer(served)
	defer up.Close()
	res, err := run(t, dst, newSource(t, up.URL, nil))
	if err != nil || !res.Published {
		t.Fatalf("run: %+v %v", res, err)
	}
	sourcetest.CheckPublished(t, dst, fx)
	if got := served.Bytes("/primary/bundle.json"); got != size || res.BytesResumed != cut {
		t.Errorf("bundle bytes served %d (want %d, once), resumed %d (want %d)", got, size, res.BytesResumed, cut)
	}
	if r := served.Ranges("/primary/bundle.json"); !slices.Equal(r, []string{"", fmt.Sprintf("bytes=%d-", cut)}) {
		t.Errorf("bundle requests' Range headers: %q", r)
	}
}

// TestOpenFrom checks the Range handling against the origin and against
// servers that ignore Range or answer a range that does not fit.
func TestOpenFrom(t *testing.T) {
	src := t.TempDir()
	fx, size := bigExport(t, src, 256<<10)
	bundle := export.BundlePath("primary")
	want, err := os.ReadFile(filepath.Join(fx.Dir, filepath.FromSlash(bundle)))
	if err != nil {
		t.Fatal(err)
	}
	o := newOrigin(t, src).Handler()
	const off = 1000
	for _, tc := range []struct {
		name      string
		handler   http.Handler
		validator func(etag string) string
		offset    int64
		wantStart int64
		wantErr   string
	}{
		{name: "same ETag gives the rest", handler: o, validator: func(e string) string { return e }, offset: off, wantStart: off},
		{name: "no validator gives the rest", handler: o, validator: func(string) string { return "" }, offset: off, wantStart: off},
		{name: "changed ETag gives the whole file", handler: o, validator: func(string) string { return `"0000"` }, offset: off, wantStart: 0},
		{name: "offset past the end gives the whole file", handler: o, validator: func(e string) string { return e }, offset: size + 10, wantStart: 0},
		{name: "no ETag: Last-Modified guards", handler: noETag(o), validator: func(v string) string { return v }, offset: off, wantStart: off},
		{name: "no ETag: another Last-Modified gives the whole file", handler: noETag(o),
			validator: func(string) string { return "Mon, 02 Jan 2006 15:04:05 GMT" }, offset: off, wantStart: 0},
		{name: "server ignoring Range", handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Range")
			o.ServeHTTP(w, r)
		}), validator: func(e string) string { return e }, offset: off, wantStart: 0},
		{name: "range from elsewhere", handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Range") != "" {
				r.Header.Set("Range", "bytes=10-")
			}
			o.ServeHTTP(w, r)
		}), validator: func(e string) string { return e }, offset: off, wantErr: `got Content-Range "bytes 10-`},
		{name: "malformed Content-Range", handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Range") == "" {
				o.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Range", "bytes 1000-5/x")
			w.WriteHeader(http.StatusPartialContent)
		}), validator: func(e string) string { return e }, offset: off, wantErr: `Content-Range "bytes 1000-5/x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := httptest.NewServer(tc.handler)
			defer up.Close()
			s := newSource(t, up.URL, nil)
			ctx := context.Background()
			id, err := s.Resolve(ctx)
			if err != nil {
				t.Fatal(err)
			}
			first, err := s.Open(ctx, id, bundle)
			if err != nil {
				t.Fatal(err)
			}
			etag := first.(mirrorsync.Validator).Validator()
			first.Close()
			if etag == "" {
				t.Fatal("the origin's answer has no ETag")
			}
			rc, start, err := s.OpenFrom(ctx, id, bundle, tc.offset, tc.validator(etag))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if start != tc.wantStart {
				t.Fatalf("start %d, want %d", start, tc.wantStart)
			}
			if n := rc.(mirrorsync.Sizer).Size(); n != size {
				t.Errorf("Size() = %d, want %d", n, size)
			}
			got, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(got, want[start:]) {
				t.Errorf("body: %d bytes (%v), want the %d bytes from %d", len(got), err, len(want)-int(start), start)
			}
		})
	}
}

// noETag strips the ETag from next's answers, as some servers send none.
func noETag(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&etagStripper{ResponseWriter: w}, r)
	})
}

type etagStripper struct{ http.ResponseWriter }

func (w *etagStripper) WriteHeader(code int) {
	w.Header().Del("Etag")
	w.ResponseWriter.WriteHeader(code)
}

func (w *etagStripper) Write(p []byte) (int, error) {
	w.Header().Del("Etag")
	return w.ResponseWriter.Write(p)
}
