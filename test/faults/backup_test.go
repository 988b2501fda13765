package faults

import (
	"bytes"
	"crypto/rand"
	"io/fs"
	mathrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/stella-ops/stella-mirror/internal/devcert"
)

// profile is a gateway profile to back up: a site with its certificate,
// key and htpasswd file, an upstream token among the --include files and a
// large include that makes a backup last (kills land mid-run). token is
// the plaintext that must never be found on disk outside an archive.
type profile struct {
	dir, gateway, include, token string
	identity                     *age.X25519Identity
	identityFile                 string
	// signingKey and verifyKey are the backup signing key pair
	// (stella-mirror keygen --alg EdDSA): backup signs, restore verifies.
	signingKey, verifyKey string
}

func newProfile(t *testing.T, bigBytes int) *profile {
	t.Helper()
	dir := t.TempDir()
	p := &profile{dir: dir, gateway: filepath.Join(dir, "gateway.yaml"), include: filepath.Join(dir, "credentials")}
	ca, err := devcert.NewCA("faults CA", 0)
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
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("alice-password\n"), 0o600)
	if out, err := exec.Command(bin, "passwd", "--file", ht, "--user", "alice", "--password-file", pw).CombinedOutput(); err != nil {
		t.Fatalf("passwd: %v\n%s", err, out)
	}
	os.Remove(pw)
	os.Chmod(ht, 0o640)
	if err := os.WriteFile(p.gateway, []byte("gateway:\n  sites:\n    - hosts: [mirror-primary.localhost]\n      domains: [primary]\n      certFile: "+
		cert+"\n      keyFile: "+key+"\n      htpasswdFile: "+ht+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.token = "faults-upstream-token-" + rand.Text()
	if err := os.MkdirAll(p.include, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.include, "upstream-token"), []byte(p.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if bigBytes > 0 {
		// Incompressible, with the token every MiB: wherever the run is
		// stopped, plaintext of a secret is in flight.
		big := make([]byte, bigBytes)
		r := mrand(1)
		for i := range big {
			big[i] = byte(r.Uint32())
		}
		for off := 0; off+len(p.token) < len(big); off += 1 << 20 {
			copy(big[off:], p.token)
		}
		if err := os.WriteFile(filepath.Join(p.include, "large-secret"), big, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	p.identity, p.identityFile = id, filepath.Join(dir, "backup.key")
	if err := os.WriteFile(p.identityFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	signing := filepath.Join(t.TempDir(), "backup-signing")
	if out, err := exec.Command(bin, "keygen", "--alg", "EdDSA", "--out", signing).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	p.signingKey, p.verifyKey = signing+".key.pem", signing+".pub.pem"
	return p
}

func mrand(seed uint64) *mathrand.Rand { return mathrand.New(mathrand.NewPCG(seed, seed)) }

// backupCommand is `stella-mirror backup` of p into out, encrypted to p's
// recipient, with TMPDIR set to tmp.
func (p *profile) backupCommand(out, tmp string) *exec.Cmd {
	cmd := exec.Command(bin, "backup", "--config", p.gateway, "--include", p.include, "--out", out,
		"--age-recipient", p.identity.Recipient().String(), "--signing-key", p.signingKey)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	return cmd
}

// TestBackupStopped stops a backup mid-run, once with SIGKILL and once
// with SIGTERM, at a point observed in the backup folder (1 MiB written
// there), and checks issue 16 item 5: no plaintext of any secret is left
// on disk (the backup folder and TMPDIR are scanned for the token), no
// archive is left; after SIGTERM the run exits non-zero having removed
// its partial output; after SIGKILL the next backup removes the leftovers
// and reports them, and succeeds.
func TestBackupStopped(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			big := 24 << 20
			if full() {
				big = 96 << 20
			}
			p := newProfile(t, big)
			out, tmp := filepath.Join(t.TempDir(), "backups"), t.TempDir()
			cmd := p.backupCommand(out, tmp)
			var output bytes.Buffer
			cmd.Stdout, cmd.Stderr = &output, &output
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			var err error
			stopped := false
			deadline := time.Now().Add(2 * time.Minute)
			for !stopped {
				select {
				case err = <-exited:
					t.Fatalf("the backup finished (%v) before 1 MiB appeared in %s; output:\n%s", err, out, output.String())
				case <-time.After(2 * time.Millisecond):
				}
				if treeBytes(out)+treeBytes(tmp) >= 1<<20 || time.Now().After(deadline) {
					cmd.Process.Signal(sig)
					stopped = true
				}
			}
			select {
			case err = <-exited:
			case <-time.After(2 * time.Minute): // a hang guard, not a measurement
				cmd.Process.Kill()
				err = <-exited
				t.Errorf("the backup was still running 2 minutes after %v", sig)
			}
			code := exitCode(err)
			t.Logf("after %v: exit %d; output:\n%s", sig, code, output.String())
			for _, f := range containing([]string{out, tmp}, []byte(p.token)) {
				t.Errorf("plaintext of a secret on disk after %v: %s", sig, f)
			}
			for _, f := range archives(out) {
				t.Errorf("an archive is left after %v: %s", sig, f)
			}
			left := entries(out)
			if sig == syscall.SIGTERM {
				if code == 0 {
					t.Errorf("SIGTERMed backup exited 0")
				}
				if len(left) > 0 {
					t.Errorf("SIGTERMed backup left %v in %s", left, out)
				}
				return
			}
			// SIGKILL: the next run cleans up and says so.
			next := p.backupCommand(out, tmp)
			text, err := next.CombinedOutput()
			if err != nil {
				t.Fatalf("next backup: %v\n%s", err, text)
			}
			for _, l := range left {
				if !strings.Contains(string(text), l) {
					t.Errorf("the next backup does not report the leftover %s:\n%s", l, text)
				}
			}
			if got := entries(out); len(got) != 1 || len(archives(out)) != 1 {
				t.Errorf("after the next backup %s holds %v, want one archive", out, got)
			}
		})
	}
}

// treeBytes sums the sizes of the regular files under dir.
func treeBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// containing lists the regular files under dirs whose bytes contain s.
func containing(dirs []string, s []byte) []string {
	var found []string
	for _, dir := range dirs {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, s) {
					found = append(found, p)
				}
			}
			return nil
		})
	}
	return found
}

// archives lists the files in dir named like archives.
func archives(dir string) []string {
	var found []string
	for _, e := range entries(dir) {
		if strings.HasSuffix(e, ".tar.gz") || strings.HasSuffix(e, ".tar.gz.age") {
			found = append(found, e)
		}
	}
	return found
}

// entries lists the names in dir (none when it does not exist).
func entries(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
