package localsrc_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stella-ops/stella-mirror/mirrorsync/localsrc"
)

// TestOpenFIFORefused: a file of the source folder that is a named pipe
// (an incoming folder another process writes) is refused at once as not a
// regular file. open(2) of a FIFO waits for a writer: sync would hang
// there forever, holding the lock, deaf to SIGTERM. (Before the fix this
// test hangs until go test's -timeout.)
func TestOpenFIFORefused(t *testing.T) {
	root := t.TempDir()
	id := "20260101T010000Z"
	dir := filepath.Join(root, id, "mirror", "primary")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "bundle.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := localsrc.New(root)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := d.Open(context.Background(), id, "mirror/primary/bundle.json")
	if err == nil {
		rc.Close()
		t.Fatal("a FIFO was opened as a source file")
	}
	if !strings.Contains(err.Error(), "mirror/primary/bundle.json") || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("err = %v, want it to name the file as not a regular file", err)
	}
}
