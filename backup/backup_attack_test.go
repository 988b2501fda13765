package backup

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestBackupReferencedFIFORefused: a file a configuration references
// (here the upstream token) that is a named pipe must fail the backup with
// an error naming it — not block the run forever in open(2), where neither
// SIGTERM (the context) nor anything else stops it. (Before the fix this
// test hangs until go test's -timeout.)
func TestBackupReferencedFIFORefused(t *testing.T) {
	p := newProfile(t)
	token := filepath.Join(p.dir, "etc", "stella-mirror", "credentials", "upstream-token")
	if err := os.Remove(token); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(token, 0o600); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	_, err := testBackup(Options{Configs: p.configs, OutDir: out})
	if err == nil || !strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v, want a refusal naming %s as not a regular file", err, token)
	}
	emptyDir(t, out)
}
