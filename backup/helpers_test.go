package backup

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"

	bprofile "github.com/stella-ops/stella-mirror/backup/profile"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/internal/devcert"
	"github.com/stella-ops/stella-mirror/internal/testenv"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

const (
	testHost = "mirror-primary.localhost"
	testUser = "alice"
	testPass = "alice-pw"
)

// profile is a deployment laid out under dir the way an edge host has it.
type profile struct {
	dir      string // everything lives under it
	configs  []string
	ca       *devcert.CA
	htpasswd string
	versions [][]byte // valid htpasswd contents (all authenticate alice)
	exportID string
	exports  string
	files    map[string]os.FileMode // every file the backup must save, with its mode
}

func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	return testenv.Tool(t, name, pkg)
}

// bcryptFile returns an htpasswd file made by the real htpasswd -B.
func bcryptFile(t *testing.T, users ...string) []byte {
	t.Helper()
	needTool(t, "htpasswd", "apache2-utils")
	f := filepath.Join(t.TempDir(), "h")
	for i, u := range users {
		args := []string{"-B", "-b", "-C", "4", f, u, u + "-pw"}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command("htpasswd", args...).CombinedOutput(); err != nil {
			t.Fatalf("htpasswd: %v\n%s", err, out)
		}
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putFile(t *testing.T, name string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, mode); err != nil {
		t.Fatal(err)
	}
}

// newProfile writes a gateway YAML, an origin env file and a sync env
// file with a certificate, key, htpasswd file, bearer token, verification
// key, an export and the sync state.
func newProfile(t *testing.T) *profile {
	t.Helper()
	dir := t.TempDir()
	p := &profile{dir: dir, files: map[string]os.FileMode{}}
	etc := filepath.Join(dir, "etc", "stella-mirror")
	p.exports = filepath.Join(dir, "srv", "exports")
	res, err := fixture.Write(p.exports, fixture.Options{Domains: []string{"primary"}, BundleSize: 32 << 10, VEXSize: 8 << 10, SetLatest: true})
	if err != nil {
		t.Fatal(err)
	}
	p.exportID = res.ExportID
	st, _ := json.Marshal(mirrorsync.State{Source: "https://upstream.example", ExportID: res.ExportID, Fingerprint: "sha256:ab", LastSuccess: time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC)})
	putFile(t, filepath.Join(p.exports, mirrorsync.StateName), st, 0o644)

	if p.ca, err = devcert.NewCA("backup test CA", 0); err != nil {
		t.Fatal(err)
	}
	leaf, err := p.ca.Issue(devcert.LeafOptions{Names: []string{testHost}})
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(etc, "tls", "primary.crt"), filepath.Join(etc, "tls", "primary.key")
	putFile(t, cert, leaf.CertPEM, 0o644)
	putFile(t, key, leaf.KeyPEM, 0o600)
	p.versions = [][]byte{bcryptFile(t, testUser), bcryptFile(t, testUser, "bob")}
	p.htpasswd = filepath.Join(etc, "secrets", "primary.htpasswd")
	putFile(t, p.htpasswd, p.versions[0], 0o640)
	token := filepath.Join(etc, "credentials", "upstream-token")
	putFile(t, token, []byte("s3cr3t-token\n"), 0o600)
	pub := filepath.Join(etc, "signing.pub.pem")
	putFile(t, pub, res.PublicKeyPEM, 0o644)

	gw := filepath.Join(etc, "gateway.yaml")
	putFile(t, gw, []byte(`gateway:
  listen: 127.0.0.1:8443
  httpListen: ""
  adminListen: 127.0.0.1:9091
  sites:
    - name: primary
      hosts: [`+testHost+`]
      domains: [primary]
      certFile: `+cert+`
      keyFile: `+key+`
      htpasswdFile: `+p.htpasswd+`
      maxIndexRequestsPerHour: 100
`), 0o644)
	originEnv := filepath.Join(etc, "origin.env")
	putFile(t, originEnv, []byte("# origin\nCONCELIER__MIRROR__ENABLED=true\nCONCELIER__MIRROR__EXPORTROOT="+p.exports+
		"\nCONCELIER__MIRROR__MAXINDEXREQUESTSPERHOUR=600\nCONCELIER__AUTHORITY__BYPASSNETWORKS__0=127.0.0.0/8\n"), 0o644)
	syncEnv := filepath.Join(etc, "sync", "primary.env")
	putFile(t, syncEnv, []byte("SYNC__SOURCE=https://upstream.example\nSYNC__DEST="+p.exports+
		"\nSYNC__PUBLICKEYS__0="+pub+"\nSYNC__BEARERTOKENFILE=\""+token+"\"\n"), 0o640)
	p.configs = []string{gw, originEnv, syncEnv}
	for _, f := range []string{gw, originEnv, syncEnv, cert, key, p.htpasswd, token, pub, filepath.Join(p.exports, mirrorsync.StateName)} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		p.files[f] = fi.Mode().Perm()
	}
	return p
}

// identity returns a fresh age X25519 identity, also written to a file.
func identity(t *testing.T) (*age.X25519Identity, string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "key.txt")
	putFile(t, f, []byte("# test key\n"+id.String()+"\n"), 0o600)
	return id, f
}

// isVersion reports whether b is one of the htpasswd versions.
func (p *profile) isVersion(b []byte) bool {
	for _, v := range p.versions {
		if bytes.Equal(b, v) {
			return true
		}
	}
	return false
}

// emptyDir fails unless dir is missing or empty.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if len(ents) > 0 {
		t.Fatalf("%s is not empty: %d entries, first %s", dir, len(ents), ents[0].Name())
	}
}

// testSigningKey signs the archives of the tests; testVerifyKey checks them.
// The key is fixed so that the signed seeds of FuzzReadArchive verify.
var testSigningKey, testVerifyKey = func() (ed25519.PrivateKey, ed25519.PublicKey) {
	seed := sha256.Sum256([]byte("stella-mirror backup test signing key"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	return priv, priv.Public().(ed25519.PublicKey)
}()

// testBackup is Backup with the test signing key unless o has one.
func testBackup(o Options) (*Result, error) {
	if o.SigningKey == nil {
		o.SigningKey = testSigningKey
	}
	if o.Load == nil {
		o.Load = bprofile.LoadInventory
	}
	return Backup(context.Background(), o)
}

// testRestore is Restore with the package's References and the test
// verification key unless o says otherwise.
func testRestore(o RestoreOptions) (*RestoreResult, error) {
	if o.References == nil {
		o.References = bprofile.References
	}
	if o.VerifyKeys == nil && !o.AllowUnsigned {
		o.VerifyKeys = []ed25519.PublicKey{testVerifyKey}
	}
	return Restore(context.Background(), o)
}

// restored loads the profile an archive restored under root describes and
// what the checks of package backup/profile need to know of it.
func restored(t *testing.T, m *Manifest, root string) (*bprofile.Profile, bprofile.Restored) {
	t.Helper()
	r := bprofile.Restored{Root: root, PathMap: m.PathMap}
	for _, c := range m.Configs {
		r.Configs = append(r.Configs, c.Path)
	}
	for _, e := range m.Entries {
		r.Paths = append(r.Paths, e.Path)
		r.HasExports = r.HasExports || e.Kind == "export"
	}
	p, err := bprofile.LoadRestored(root, r.Configs, m.PathMap)
	if err != nil {
		t.Fatal(err)
	}
	return p, r
}
