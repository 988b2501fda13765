package backup

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	bprofile "github.com/stella-ops/stella-mirror/backup/profile"
	"github.com/stella-ops/stella-mirror/gateway"
	"github.com/stella-ops/stella-mirror/origin"
)

// TestRestoredProfileServes restores an archive into an empty root, checks
// the restored profile, and serves from it: the origin over the restored
// export, the gateway with the restored certificate and htpasswd file.
func TestRestoredProfileServes(t *testing.T) {
	p := newProfile(t)
	id, idFile := identity(t)
	res, err := testBackup(Options{Configs: p.configs, IncludeExports: true, OutDir: t.TempDir(), Recipients: []age.Recipient{id.Recipient()}})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	rr, err := testRestore(RestoreOptions{Archive: res.Archive, Identities: []age.Identity{id}, IdentityFile: idFile, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	rp, rs := restored(t, rr.Manifest, root)
	rep, err := bprofile.ValidateRestored(context.Background(), rs, rp)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Checked) == 0 {
		t.Fatalf("restored profile does not validate: %v (%d checks)", rep.Findings, len(rep.Checked))
	}
	for _, f := range rep.Findings {
		t.Logf("validate: %s", f)
	}
	for _, c := range rep.Checked {
		t.Logf("validate checked: %s", c)
	}
	// validate looks at the restored files, not the originals: without the
	// restored htpasswd file the profile fails.
	os.Rename(filepath.Join(root, p.htpasswd), filepath.Join(root, p.htpasswd)+".away")
	if bad, err := bprofile.ValidateRestored(context.Background(), rs, rp); err != nil || bad.OK() {
		t.Errorf("validate passed without the restored htpasswd file (%v)", err)
	} else {
		t.Logf("without htpasswd: %v", bad.Errors())
	}
	os.Rename(filepath.Join(root, p.htpasswd)+".away", filepath.Join(root, p.htpasswd))
	var ocfg *origin.Config
	var gcfg *gateway.Config
	for _, c := range rp.Configs {
		if !strings.HasPrefix(c.Path, root+"/") {
			t.Errorf("config %s not under the restored root", c.Path)
		}
		if c.Origin != nil {
			ocfg = c.Origin
		}
		if c.Gateway != nil {
			gcfg = c.Gateway
		}
	}
	if ocfg == nil || gcfg == nil {
		t.Fatal("restored profile lacks the origin or the gateway")
	}
	if want := filepath.Join(root, p.exports); ocfg.Concelier.Mirror.ExportRoot != want {
		t.Fatalf("origin export root %s, want %s", ocfg.Concelier.Mirror.ExportRoot, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lines, err := bprofile.ProbeGateways(ctx, rp)
	if err != nil || len(lines) != 1 {
		t.Fatalf("probe: %v %v", lines, err)
	}

	// Origin over the restored export, gateway from the restored files.
	o, err := origin.New(*ocfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ots := httptest.NewServer(o.Handler())
	defer ots.Close()
	cfg := *gcfg
	g := &cfg.Gateway
	g.Listen, g.HTTPListen, g.AdminListen, g.Origin = "127.0.0.1:0", "", "127.0.0.1:0", ots.URL
	g.ShutdownTimeout = 2 * time.Second
	gw, err := gateway.New(cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := gateway.Listen(*g)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done, up := make(chan error, 1), make(chan struct{})
	go func() { done <- gw.Serve(sctx, ls, func() { close(up) }) }()
	defer func() { stop(); <-done }()
	select {
	case <-up:
	case err := <-done:
		t.Fatalf("gateway stopped: %v", err)
	}
	addr := ls.HTTPS.Addr().String()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: p.ca.Pool(), ServerName: testHost},
	}}
	get := func(user, pass string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+testHost+"/concelier/exports/index.json", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := get("", ""); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("no credentials: %s, want 401", r.Status)
	}
	r := get(testUser, testPass)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("alice: %s, want 200", r.Status)
	}
	if got := r.Header.Get("X-Stella-Export-Id"); got != p.exportID {
		t.Errorf("served export %q, want %s", got, p.exportID)
	}

	// The checklist names what the restored files hold.
	var text strings.Builder
	for _, it := range bprofile.Checklist(rp, time.Now()) {
		if it.Warn {
			t.Errorf("checklist warns: %s %s", it.Topic, it.Text)
		}
		text.WriteString(it.Topic + " " + it.Text + "\n")
	}
	for _, want := range []string{"health origin: curl -fsS http://127.0.0.1:9090/health/ready", "health gateway: curl -fsS http://127.0.0.1:9091/health/ready",
		"index budget 600", "site primary: 100 index", "last synced export " + p.exportID, "certificate site primary: certificate"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("checklist lacks %q:\n%s", want, text.String())
		}
	}
}

// TestRestoredWithoutExportsValidates: exports are optional in a backup, so
// a restored profile whose export roots are empty validates with a warning
// that says to sync.
func TestRestoredWithoutExportsValidates(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	rr, err := testRestore(RestoreOptions{Archive: res.Archive, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	rp, rs := restored(t, rr.Manifest, root)
	rep, err := bprofile.ValidateRestored(context.Background(), rs, rp)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("errors: %v", rep.Errors())
	}
	found := false
	for _, w := range rep.Warnings() {
		found = found || strings.Contains(w.Message, "run stella-mirror sync")
	}
	if !found {
		t.Errorf("no warning to sync: %v", rep.Findings)
	}
}

// TestContainerPathsMapped backs up a compose-style env file that names
// container paths (/run/secrets, /etc/stella-mirror/tls) read from host
// folders through PathMap; the restored profile validates and serves.
func TestContainerPathsMapped(t *testing.T) {
	p := newProfile(t)
	host := filepath.Dir(p.htpasswd) // …/etc/stella-mirror/secrets
	tlsDir := filepath.Join(filepath.Dir(host), "tls")
	env := filepath.Join(p.dir, "compose", "mirror.env")
	putFile(t, env, []byte(`GATEWAY__ADMINLISTEN=127.0.0.1:9091
GATEWAY__SITES__0__NAME=primary
GATEWAY__SITES__0__HOSTS__0=`+testHost+`
GATEWAY__SITES__0__DOMAINS__0=primary
GATEWAY__SITES__0__CERTFILE=/etc/stella-mirror/tls/primary.crt
GATEWAY__SITES__0__KEYFILE=/etc/stella-mirror/tls/primary.key
GATEWAY__SITES__0__HTPASSWDFILE=/run/secrets/primary.htpasswd
`), 0o640)
	maps := []PathMapping{{From: "/run/secrets", To: host}, {From: "/etc/stella-mirror/tls", To: tlsDir}}
	res, err := testBackup(Options{Configs: []string{env}, PathMap: maps, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	for _, e := range res.Manifest.Entries {
		paths[e.Path] = true
	}
	for _, want := range []string{p.htpasswd, filepath.Join(tlsDir, "primary.crt"), filepath.Join(tlsDir, "primary.key"), env} {
		if !paths[want] {
			t.Errorf("%s not saved under its host path: %v", want, paths)
		}
	}
	root := filepath.Join(t.TempDir(), "root")
	rr, err := testRestore(RestoreOptions{Archive: res.Archive, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(rr.Manifest.PathMap) != 2 {
		t.Errorf("manifest path map %v", rr.Manifest.PathMap)
	}
	rp, rs := restored(t, rr.Manifest, root)
	rep, err := bprofile.ValidateRestored(context.Background(), rs, rp)
	if err != nil || !rep.OK() {
		t.Fatalf("validate: %v %v", err, rep.Findings)
	}
	lines, err := bprofile.ProbeGateways(context.Background(), rp)
	if err != nil || len(lines) != 1 {
		t.Fatalf("probe: %v %v", lines, err)
	}
}
