package faults

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/internal/devcert"
)

// signingKey signs every export of the suite; its public half is the one
// key sync trusts.
var signingKey = fixture.DerivedKey(16)

// kinds are the source kinds that run here: a local folder, a real rsync
// daemon, an in-process gofakes3 S3 server, a real origin as the upstream
// (plain HTTP on loopback) and the same behind a real gateway (HTTPS with
// a private CA and Basic Auth, as an edge syncs from another edge).
var kinds = []string{"local", "rsync", "s3", "upstream", "https"}

// source is one source of exports for sync: the test writes exports into
// root (a local export root) and publish makes each visible to sync
// through the kind's transport.
type source struct {
	kind string
	// root is where the fixture writes exports.
	root string
	// url is sync's --source; args and env are further flags and
	// environment for sync.
	url  string
	args []string
	env  []string
	// upload copies a written export to the source (S3 only); nil when the
	// transport reads root itself.
	upload func(t *testing.T, exportID string)
	// sent counts the bytes the rsync daemon sent (rsync, hostile only).
	sent *atomic.Int64
	// origin is the origin's URL (upstream and https only) and domains
	// the domains of the exports written.
	origin  string
	domains []string
}

// How a source is set up.
const (
	// plain: the transport as it is.
	plain = iota
	// forKills throttles the transports that can be (rsync: 512 KiB/s)
	// so that transfers last long enough for kills to land mid-transfer.
	forKills
	// hostile serves the files as they are on disk, whatever the export
	// declares: the upstream kind puts a plain file server for the pinned
	// Concelier URLs in front of the origin (the origin itself refuses to
	// serve a file that does not match its manifest).
	hostile
)

// newSource starts a source of the given kind over a fresh export root
// holding a first export (seed 1), which it returns too.
func newSource(t *testing.T, kind string, opts fixture.Options, mode int) (*source, *fixture.Result) {
	t.Helper()
	s := &source{kind: kind, root: filepath.Join(t.TempDir(), "source")}
	first := s.write(t, 1, opts)
	pub := filepath.Join(t.TempDir(), "signing.pub.pem")
	if err := os.WriteFile(pub, first.PublicKeyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	s.args = []string{"--public-key", pub}
	switch kind {
	case "local":
		s.url = s.root
	case "rsync":
		// Throttled (512 KiB/s from the daemon): a transfer lasts long
		// enough that an rsync child outliving a killed sync is seen.
		var extra []string
		if mode == forKills {
			extra = append(extra, "--bwlimit=512")
		}
		s.url = startRsyncDaemon(t, s.root, extra...)
		if mode == hostile {
			// Count what the daemon sends: an oversized object must not be
			// transferred whole.
			s.sent = new(atomic.Int64)
			s.url = "rsync://" + countingProxy(t, strings.TrimSuffix(strings.TrimPrefix(s.url, "rsync://"), "/exports"), s.sent) + "/exports"
		}
	case "s3":
		srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
		t.Cleanup(srv.Close)
		none := filepath.Join(t.TempDir(), "none")
		s.url = "s3://exports/stella"
		s.args = append(s.args, "--s3-endpoint", srv.URL)
		s.env = []string{"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION=us-east-1",
			"AWS_CONFIG_FILE=" + none, "AWS_SHARED_CREDENTIALS_FILE=" + none, "AWS_ENDPOINT_URL="}
		client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
			Credentials: aws.AnonymousCredentials{}, RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired})
		bucket := "exports"
		if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
			t.Fatal(err)
		}
		s.upload = func(t *testing.T, exportID string) { uploadExport(t, client, bucket, "stella/", s.root, exportID) }
	case "upstream", "https":
		s.url = startOrigin(t, s.root)
		s.origin = s.url
		if mode == hostile {
			s.url = rawPinned(t, s.root, s.url)
		}
		if kind == "https" {
			g := startGateway(t, s.url)
			s.url = g.url
			s.args = append(s.args, "--ca-file", g.caFile, "--basic-auth-file", g.authFile)
		}
	default:
		t.Fatalf("unknown source kind %q", kind)
	}
	s.publish(t, first.ExportID)
	return s, first
}

// write writes the export of seed into the source root (latest names it)
// without publishing it.
func (s *source) write(t *testing.T, seed uint64, opts fixture.Options) *fixture.Result {
	t.Helper()
	opts.Seed, opts.Key, opts.SetLatest = seed, signingKey, true
	if opts.Domains == nil {
		opts.Domains = []string{"primary", "community"}
	}
	res, err := fixture.Write(s.root, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.domains = opts.Domains
	return res
}

// publish makes the export visible to sync: S3 gets it uploaded; an
// origin is waited for until every product serves it (Concelier and
// Excititor each notice a switch of latest within 100 ms, independently,
// and a sync that straddles the two refuses the mix and exits 1).
func (s *source) publish(t *testing.T, exportID string) {
	t.Helper()
	if s.upload != nil {
		s.upload(t, exportID)
	}
	if s.origin != "" {
		paths := []string{"/concelier/exports/index.json"}
		for _, d := range s.domains {
			paths = append(paths, "/excititor/mirror/"+d+"/index")
		}
		waitServed(t, s.origin, exportID, paths)
	}
}

// waitServed polls the origin (an external process; bounded: 10 s) until
// each of paths answers for export id.
func waitServed(t *testing.T, origin, id string, paths []string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range paths {
		for {
			resp, err := client.Get(origin + p)
			got := ""
			if err == nil {
				got = resp.Header.Get(export.ExportIDHeader)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if got == id {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the origin still serves %s for export %q (%v), want %s", p, got, err, id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// syncArgs are the arguments of a sync from s into dest.
func (s *source) syncArgs(dest string, extra ...string) []string {
	args := append([]string{"sync", "--source", s.url, "--dest", dest, "--log-format", "json"}, s.args...)
	return append(args, extra...)
}

// command is a sync run from s into dest, not started.
func (s *source) command(dest string, extra ...string) *exec.Cmd {
	cmd := exec.Command(bin, s.syncArgs(dest, extra...)...)
	cmd.Env = append(os.Environ(), s.env...)
	return cmd
}

// uploadExport puts every file of root/exportID under bucket/prefix, the
// mirror index last (what a careful publisher does, so that a complete
// index never names files still to come).
func uploadExport(t *testing.T, c *s3.Client, bucket, prefix, root, exportID string) {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(root, exportID), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	index := filepath.Join(root, exportID, "mirror", "index.json")
	for i, p := range files {
		if p == index {
			files = append(append(files[:i:i], files[i+1:]...), p)
			break
		}
	}
	for _, p := range files {
		rel, _ := filepath.Rel(root, p)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		key := prefix + filepath.ToSlash(rel)
		if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key,
			Body: bytes.NewReader(data)}); err != nil {
			t.Fatalf("uploading %s: %v", key, err)
		}
	}
}

// startRsyncDaemon runs a real rsync daemon on 127.0.0.1 exporting dir as
// module "exports" (with further daemon options extra) and returns its
// rsync:// URL.
func startRsyncDaemon(t *testing.T, dir string, extra ...string) (url string) {
	t.Helper()
	rsync := requireTool(t, "rsync")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfgDir := t.TempDir()
	conf := filepath.Join(cfgDir, "rsyncd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("use chroot = no\nreverse lookup = no\nuid = %d\ngid = %d\npid file = %s\n[exports]\npath = %s\nread only = yes\n",
		os.Getuid(), os.Getgid(), filepath.Join(cfgDir, "pid"), dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(rsync, append([]string{"--daemon", "--no-detach", "--config=" + conf, fmt.Sprintf("--port=%d", port),
		"--address=127.0.0.1", "--log-file=" + filepath.Join(cfgDir, "log")}, extra...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url = fmt.Sprintf("rsync://127.0.0.1:%d/exports", port)
	// Readiness: poll the daemon (an external process) with a deadline.
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command(rsync, "--list-only", url+"/").Run() != nil {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(cfgDir, "log"))
			t.Fatalf("rsync daemon not ready: %s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return url
}

// rawPinned starts a hostile upstream on 127.0.0.1: the pinned Concelier
// URLs /concelier/exports/{exportId}/mirror/… are served from root as the
// files are (a missing file is a 404, an oversized one is sent whole);
// everything else is proxied to the real origin at originURL.
func rawPinned(t *testing.T, root, originURL string) string {
	t.Helper()
	target, err := url.Parse(originURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/concelier/exports/")
		if id, file, found := strings.Cut(rest, "/"); ok && found && id != "" && strings.HasPrefix(file, "mirror/") &&
			!strings.Contains(rest, "..") {
			http.ServeFile(w, r, filepath.Join(root, id, filepath.FromSlash(file)))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// countingProxy forwards TCP connections from a new 127.0.0.1 port to
// target and counts the bytes target sends back (what a source transfers).
// It returns the new address.
func countingProxy(t *testing.T, target string, sent *atomic.Int64) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.DialTimeout("tcp", target, 10*time.Second)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
				n, _ := io.Copy(c, u)
				sent.Add(n)
			}()
		}
	}()
	return l.Addr().String()
}

// startOrigin runs `stella-mirror origin` over root on an ephemeral
// loopback port and returns its base URL once it listens; it is stopped
// with SIGINT when the test ends.
func startOrigin(t *testing.T, root string) string {
	t.Helper()
	cmd := exec.Command(bin, "origin", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "CONCELIER__MIRROR__ENABLED=true", "CONCELIER__MIRROR__EXPORTROOT="+root,
		"EXCITITOR__MIRROR__ENABLED=true", "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT="+root)
	return "http://" + startServer(t, cmd, "origin")
}

// gatewayFront is a TLS gateway in front of an origin, as sync's upstream:
// a site for "localhost" (which resolves without DNS) with a certificate
// of a private CA and a Basic Auth user.
type gatewayFront struct {
	url, caFile, authFile string
}

// startGateway runs `stella-mirror gateway` (no cache) in front of
// originURL on an ephemeral loopback port.
func startGateway(t *testing.T, originURL string) *gatewayFront {
	t.Helper()
	dir := t.TempDir()
	ca, err := devcert.NewCA("faults gateway CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(devcert.LeafOptions{Names: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	g := &gatewayFront{caFile: filepath.Join(dir, "ca.pem"), authFile: filepath.Join(dir, "basic-auth")}
	cert, key, ht, pw := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "htpasswd"), filepath.Join(dir, "pw")
	if err := leaf.WriteFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	password := rand.Text()
	os.WriteFile(pw, []byte(password+"\n"), 0o600)
	if out, err := exec.Command(bin, "passwd", "--file", ht, "--user", "sync", "--password-file", pw).CombinedOutput(); err != nil {
		t.Fatalf("passwd: %v\n%s", err, out)
	}
	os.Chmod(ht, 0o640)
	os.WriteFile(g.authFile, []byte("sync:"+password+"\n"), 0o600)
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`gateway:
  origin: %s
  sites:
    - hosts: [localhost]
      domains: [primary, community]
      certFile: %s
      keyFile: %s
      htpasswdFile: %s
`, originURL, cert, key, ht)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "gateway", "--config", cfg)
	cmd.Env = append(os.Environ(), "GATEWAY__LISTEN=127.0.0.1:0", "GATEWAY__ADMINLISTEN=127.0.0.1:0",
		"GATEWAY__HTTPLISTEN=", "GATEWAY__LOGFORMAT=json")
	_, port, _ := net.SplitHostPort(startServer(t, cmd, "gateway"))
	g.url = "https://localhost:" + port
	return g
}

// startServer starts cmd, a stella-mirror server logging JSON to stderr,
// and returns the address of its endpoint once it logs "listening" for
// it; the server is stopped with SIGINT when the test ends.
func startServer(t *testing.T, cmd *exec.Cmd, endpoint string) string {
	t.Helper()
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	addr := make(chan string, 1)
	var log strings.Builder
	go func() {
		defer close(done)
		sent := false
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			var rec struct{ Msg, Endpoint, Addr string }
			if !sent && json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" && rec.Endpoint == endpoint {
				addr <- rec.Addr
				sent = true
			}
		}
		if !sent {
			addr <- ""
		}
		cmd.Wait()
	}()
	select {
	case a := <-addr:
		if a == "" {
			t.Fatalf("%s exited before listening:\n%s", cmd.Args[1], log.String())
		}
		return a
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not listening after 60s", cmd.Args[1])
	}
	return ""
}
