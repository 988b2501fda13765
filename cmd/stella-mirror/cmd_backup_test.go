package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/stella-ops/stella-mirror/internal/devcert"
	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// TestBackupRestoreDrillCommands runs backup, restore --dry-run, the drill
// and a real restore through the command line.
func TestBackupRestoreDrillCommands(t *testing.T) {
	testenv.Tool(t, "htpasswd", "apache2-utils")
	dir := t.TempDir()
	ca, err := devcert.NewCA("cmd test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(devcert.LeafOptions{Names: []string{"mirror-primary.localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, ht := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "htpasswd")
	if err := leaf.WriteFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("htpasswd", "-c", "-B", "-C", "4", "-b", ht, "alice", "pw").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	os.Chmod(ht, 0o640) // validate refuses a world-readable htpasswd file
	gw := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(gw, []byte("gateway:\n  sites:\n    - hosts: [mirror-primary.localhost]\n      domains: [primary]\n      certFile: "+cert+"\n      keyFile: "+key+"\n      htpasswdFile: "+ht+"\n"), 0o644)
	id, _ := age.GenerateX25519Identity()
	idFile := filepath.Join(dir, "backup.key")
	os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600)
	out := filepath.Join(dir, "backups")

	var stdout, stderr bytes.Buffer
	runOK := func(args ...string) string {
		t.Helper()
		stdout.Reset()
		stderr.Reset()
		if code := run(args, &stdout, &stderr); code != 0 {
			t.Fatalf("%v: exit %d\nstdout: %s\nstderr: %s", args, code, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	runOK("keygen", "--alg", "EdDSA", "--out", filepath.Join(dir, "backup-signing"))
	sk, vk := filepath.Join(dir, "backup-signing.key.pem"), filepath.Join(dir, "backup-signing.pub.pem")
	text := runOK("backup", "--config", gw, "--out", out, "--dry-run")
	if !strings.Contains(text, "dry run: would write") || !strings.Contains(text, "secret "+ht) {
		t.Errorf("backup --dry-run:\n%s", text)
	}
	// Two old archives that retention (1 day, no months) removes, and a
	// file it never touches.
	os.MkdirAll(out, 0o700)
	for _, n := range []string{"2020-01-01T000000Z.tar.gz.age", "2020-01-02T000000Z.tar.gz.age", "notes.txt"} {
		os.WriteFile(filepath.Join(out, n), nil, 0o600)
	}
	text = runOK("backup", "--config", gw, "--out", out, "--age-recipient", id.Recipient().String(), "--keep-daily", "1", "--keep-monthly", "0", "--signing-key", sk)
	for _, want := range []string{"encrypted for 1 age recipient", "signed by key ", "removed 2020-01-01T000000Z.tar.gz.age\nremoved 2020-01-02T000000Z.tar.gz.age\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("backup output lacks %q:\n%s", want, text)
		}
	}
	if err := os.Remove(filepath.Join(out, "notes.txt")); err != nil {
		t.Errorf("retention touched notes.txt: %v", err)
	}
	ents, _ := os.ReadDir(out)
	if len(ents) != 1 {
		t.Fatalf("%d files in %s", len(ents), out)
	}
	archive := filepath.Join(out, ents[0].Name())

	root := filepath.Join(dir, "root")
	text = runOK("restore", "--from", archive, "--identity", idFile, "--verify-key", vk, "--to", root, "--dry-run")
	if !strings.Contains(text, "would write "+filepath.Join(root, ht)) {
		t.Errorf("restore --dry-run:\n%s", text)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("dry run created %s", root)
	}
	text = runOK("restore", "--drill", "--from", archive, "--identity", idFile, "--verify-key", vk)
	t.Logf("drill:\n%s", text)
	if _, rest, ok := strings.Cut(text, " into "); ok {
		drillRoot, _, _ := strings.Cut(rest, "\n")
		if _, err := os.Stat(drillRoot); !os.IsNotExist(err) {
			t.Errorf("the drill left %s behind (%v)", drillRoot, err)
		}
	} else {
		t.Error("the drill did not name its root")
	}
	for _, want := range []string{"every checksum verified", "signature verified with key", "restored profile validates", "presents its restored certificate and asks for credentials", "certificate", "drill passed"} {
		if !strings.Contains(text, want) {
			t.Errorf("drill output lacks %q:\n%s", want, text)
		}
	}
	text = runOK("restore", "--from", archive, "--identity", idFile, "--verify-key", vk, "--to", root)
	if b, _ := os.ReadFile(filepath.Join(root, ht)); len(b) == 0 {
		t.Error("htpasswd not restored")
	}

	// Usage errors and a wrong identity.
	if code := run([]string{"restore", "--from", archive}, &stdout, &stderr); code != 2 {
		t.Errorf("restore without --to: exit %d", code)
	}
	other, _ := age.GenerateX25519Identity()
	os.WriteFile(idFile, []byte(other.String()+"\n"), 0o600)
	stderr.Reset()
	if code := run([]string{"restore", "--from", archive, "--identity", idFile, "--verify-key", vk, "--to", filepath.Join(dir, "r2")}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "wrong identity") {
		t.Errorf("wrong identity: exit %d, %s", code, stderr.String())
	}
	if code := run([]string{"backup", "--config", gw, "--out", out, "--age-recipient", "nope"}, &stdout, &stderr); code != 1 {
		t.Errorf("bad recipient: exit %d", code)
	}
}
