package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/origin/origintest"
)

func TestSyncUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no source", []string{"sync", "--dest", "/tmp/x", "--public-key", "k.pem"}, nil, "SYNC__SOURCE (--source): required"},
		{"no key", []string{"sync", "--source", "/src", "--dest", "/tmp/x"}, nil, "no verification key"},
		{"bad domain", []string{"sync", "--source", "/src", "--dest", "/d", "--public-key", "k", "--domain", "Bad_Domain"}, nil, `"Bad_Domain" is not a valid domain id`},
		{"bad env", []string{"sync", "--check-config"}, map[string]string{"CONCELIER__SOURCES__STELLAOPSMIRROR__BASEADRESS": "x"}, "CONCELIER__SOURCES__STELLAOPSMIRROR__BASEADRESS: unknown key"},
		{"keep 1", []string{"sync", "--source", "/src", "--dest", "/d", "--public-key", "k", "--keep", "1"}, nil, "SYNC__KEEP (--keep): 1, must be at least 2"},
		{"bad timeout", []string{"sync", "--check-config"}, map[string]string{"CONCELIER__SOURCES__STELLAOPSMIRROR__HTTPTIMEOUT": "30"}, "CONCELIER__SOURCES__STELLAOPSMIRROR__HTTPTIMEOUT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.want)
			}
		})
	}
}

func TestSyncRunbookEnvAccepted(t *testing.T) {
	for k, v := range map[string]string{
		"CONCELIER__SOURCES__STELLAOPSMIRROR__BASEADDRESS":              "https://mirror.example.org",
		"CONCELIER__SOURCES__STELLAOPSMIRROR__DOMAINID":                 "primary",
		"CONCELIER__SOURCES__STELLAOPSMIRROR__HTTPTIMEOUT":              "00:00:30",
		"CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__ENABLED":       "true",
		"CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__KEYID":         "mirror-2026",
		"CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__PROVIDER":      "default",
		"CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__PUBLICKEYPATH": "/etc/stella/mirror.pub.pem",
		"CONCELIER__MIRROR__ENABLED":                                    "true", // the origin's, ignored here
		"SYNC__DEST":                                                    "/srv/exports",
	} {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"sync", "--check-config"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "configuration OK") {
		t.Fatalf("exit %d: %s %s", code, out.String(), errb.String())
	}
}

func TestSyncHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"sync", "--help"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"s3://bucket/prefix", "rsync://", "Exit status", "SYNC__S3__ENDPOINT", "--every", "SYNC__EVERY", "sidecar", "CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__KEYID", "Examples:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help (stdout) lacks %q", want)
		}
	}
}

func TestIsRemoteShellPath(t *testing.T) {
	for s, want := range map[string]bool{
		"host:/srv/exports": true, "user@host:exports": true, "/srv/exports": false, "./a:b": false, "dir/a:b": false,
		"ftp://host/x": false, "host:/a://b": true,
	} {
		if got := isRemoteShellPath(s); got != want {
			t.Errorf("%q: %v, want %v", s, got, want)
		}
	}
}

// syncFixture writes a signed export into a new root and returns the root,
// the export id and the path of its public key.
func syncFixture(t *testing.T) (string, string, string) {
	t.Helper()
	root := t.TempDir()
	res, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: 16 << 10, VEXSize: 2 << 10, Seed: 5, SetLatest: true})
	if err != nil {
		t.Fatal(err)
	}
	return root, res.ExportID, res.PublicKeyPath
}

func TestSyncCommandS3(t *testing.T) {
	root, id, pub := syncFixture(t)
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	defer srv.Close()
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true, Credentials: aws.AnonymousCredentials{}})
	bucket := "cmd"
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(filepath.Join(root, id), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		data, _ := os.ReadFile(p)
		key := "pfx/" + filepath.ToSlash(rel)
		_, err = c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(t.TempDir(), "aws-credentials")
	os.WriteFile(creds, []byte("[default]\naws_access_key_id = k\naws_secret_access_key = s\n"), 0o600)
	t.Setenv("CREDENTIALS_DIRECTORY", filepath.Dir(creds))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	dst := t.TempDir()
	var out, errb bytes.Buffer
	code := run([]string{"sync", "--source", "s3://cmd/pfx", "--dest", dst, "--public-key", pub,
		"--s3-endpoint", srv.URL, "--s3-region", "eu-west-1", "--s3-path-style", "true",
		"--s3-credentials-file", "${CREDENTIALS_DIRECTORY}/aws-credentials"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if target, _ := os.Readlink(filepath.Join(dst, "latest")); target != id {
		t.Fatalf("latest -> %q, want %s\n%s", target, id, errb.String())
	}
}

func TestSyncCommandUpstreamWithToken(t *testing.T) {
	root, id, pub := syncFixture(t)
	o := origintest.New(t, root)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t0ken" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		o.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()
	credDir := t.TempDir()
	os.WriteFile(filepath.Join(credDir, "secret"), []byte("t0ken\n"), 0o600)
	dst := t.TempDir()
	for k, v := range map[string]string{
		"CREDENTIALS_DIRECTORY":                                         credDir,
		"CONCELIER__SOURCES__STELLAOPSMIRROR__BASEADDRESS":              srv.URL,
		"CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__PUBLICKEYPATH": pub,
		"SYNC__DEST":            dst,
		"SYNC__BEARERTOKENFILE": "${CREDENTIALS_DIRECTORY}/secret",
	} {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"sync", "--log-format", "json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if target, _ := os.Readlink(filepath.Join(dst, "latest")); target != id {
		t.Fatalf("latest -> %q, want %s", target, id)
	}
	if strings.Contains(errb.String(), "t0ken") {
		t.Errorf("the token appears in the log: %s", errb.String())
	}
}

func TestSyncYAMLConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "sync.yaml")
	os.WriteFile(good, []byte(`sync:
  source: s3://exports/stella
  dest: /srv/exports
  keep: 5
  publicKeys: [/etc/stella/a.pem, /etc/stella/b.pem]
  s3:
    endpoint: http://127.0.0.1:9000
    pathStyle: true
concelier:
  sources:
    stellaOpsMirror:
      signature:
        keyId: mirror-2026
`), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("sync:\n  kepp: 5\n"), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"sync", "--config", good, "--check-config"}, &out, &errb); code != 0 {
		t.Fatalf("good file: exit %d: %s", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"sync", "--config", bad, "--check-config"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "SYNC__KEPP: unknown key") {
		t.Fatalf("bad file: exit %d: %s", code, errb.String())
	}
}
