package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAtomicReplacementIsSeen replaces a watched file by rename (what
// editors, mv and Kubernetes do), which a watch on the file itself misses.
func TestAtomicReplacementIsSeen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "watched")
	other := filepath.Join(t.TempDir(), "missing", "elsewhere")
	os.WriteFile(path, []byte("v1"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan string, 8)
	if err := Watch(ctx, []string{path, other}, nil, func(p string) { changed <- p }); err == nil {
		t.Fatal("watching a file in a missing directory succeeded")
	}
	if err := Watch(ctx, []string{path}, nil, func(p string) { changed <- p }); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".tmp")
	os.WriteFile(tmp, []byte("v2"), 0o644)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-changed:
		if p != path {
			t.Fatalf("callback for %q, want %q", p, path)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no callback within 10s of an atomic replacement")
	}
	// A second replacement is seen too (the watch survives the rename).
	os.WriteFile(tmp, []byte("v3"), 0o644)
	os.Rename(tmp, path)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("second replacement not seen")
	}
}
