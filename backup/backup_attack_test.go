package backup

import (
	"archive/tar"
	"bytes"
	"fmt"
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

// TestArchiveLimitsMatchRestore: an archive restore would refuse for its
// size (here a SHA256SUMS over restore's 16 MiB limit: ~110,000 files with
// ordinary path lengths) must fail the backup, not be written as a backup
// that can never be restored. The check is tested directly (a real backup
// of 110,000 files is too slow for make test); that restore refuses the
// same SHA256SUMS is checked with its reader.
func TestArchiveLimitsMatchRestore(t *testing.T) {
	sums := map[string]string{ManifestName: strings.Repeat("0", 64)}
	for i := 0; len(sums)*150 < maxSumsBytes+(1<<20); i++ {
		sums[member(fmt.Sprintf("/srv/stella-mirror/includes/some/deeper/folder/of/files/file-%07d.json", i))] = strings.Repeat("a", 64)
	}
	var sb strings.Builder
	if err := writeSums(&sb, sums); err != nil {
		t.Fatal(err)
	}
	if sb.Len() <= maxSumsBytes {
		t.Fatalf("test setup: SHA256SUMS is %d bytes, not over the limit", sb.Len())
	}
	err := checkArchiveLimits("2026-01-01T000000Z", sums, []byte("{}"), []byte(sb.String()))
	if err == nil || !strings.Contains(err.Error(), SumsName) {
		t.Fatalf("err = %v, want the backup refused naming %s", err, SumsName)
	}
	// Restore's reader refuses exactly this member.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "2026-01-01T000000Z/" + SumsName, Mode: 0o600, Size: int64(sb.Len())})
	tw.Write([]byte(sb.String()))
	tw.Close()
	if _, err := readArchive("a.tar.gz", tar.NewReader(&buf), verifyOptions{allowUnsigned: true}); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("restore's reader: %v, want the size limit", err)
	}
	// Below the limits: accepted.
	small := map[string]string{ManifestName: strings.Repeat("0", 64), member("/etc/x"): strings.Repeat("a", 64)}
	if err := checkArchiveLimits("2026-01-01T000000Z", small, []byte("{}"), []byte("x")); err != nil {
		t.Fatal(err)
	}
}
