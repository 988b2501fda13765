package flock

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestTryLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".lock")
	release, err := TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	// A second open file description is refused while the first holds it.
	if _, err := TryLock(path); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second TryLock = %v, want ErrLocked naming %s", err, path)
	}
	release()
	again, err := TryLock(path)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again()
	if _, err := TryLock(filepath.Join(t.TempDir(), "missing-dir", ".lock")); err == nil || errors.Is(err, ErrLocked) {
		t.Fatalf("lock in a missing directory = %v, want an open error", err)
	}
}
