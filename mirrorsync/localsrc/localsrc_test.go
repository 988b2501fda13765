package localsrc_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/localsrc"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

func TestConformance(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T, root string) mirrorsync.Source {
		s, err := localsrc.New(root)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestOpenFrom: the rest of an unchanged file by a seek, the whole file
// when it changed since the validator was taken, and the size up front.
func TestOpenFrom(t *testing.T) {
	root := t.TempDir()
	id := "20260101T010000Z"
	dir := filepath.Join(root, id, "mirror", "primary")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "bundle.json")
	data := bytes.Repeat([]byte("0123456789"), 1000)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := localsrc.New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rel := "mirror/primary/bundle.json"
	rc, err := s.Open(ctx, id, rel)
	if err != nil {
		t.Fatal(err)
	}
	validator := rc.(mirrorsync.Validator).Validator()
	if n := rc.(mirrorsync.Sizer).Size(); n != int64(len(data)) {
		t.Errorf("Size() = %d, want %d", n, len(data))
	}
	rc.Close()

	read := func(offset int64, validator string) (int64, []byte) {
		t.Helper()
		rc, start, err := s.OpenFrom(ctx, id, rel, offset, validator)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		got, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return start, got
	}
	if start, got := read(4321, validator); start != 4321 || !bytes.Equal(got, data[4321:]) {
		t.Errorf("unchanged file: start %d, %d bytes; want 4321 and the rest", start, len(got))
	}
	// Rewritten with another modification time: the validator no longer
	// matches, so the whole file comes.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	if start, got := read(4321, validator); start != 0 || !bytes.Equal(got, data) {
		t.Errorf("changed file: start %d, %d bytes; want 0 and the whole file", start, len(got))
	}
}
