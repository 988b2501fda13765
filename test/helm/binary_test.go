package helm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// chartBinary returns the stella-mirror binary under test: $STELLA_MIRROR_BIN
// (make test), else one built now that t's cleanup removes. (No TestMain:
// the package's other tests need no binary.)
func chartBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(testenv.BinaryEnv); p != "" {
		return p
	}
	p, cleanup, err := testenv.Binary()
	if err != nil {
		t.Fatalf("building stella-mirror: %v", err)
	}
	t.Cleanup(cleanup)
	return p
}

// podFS lays out, under a temporary root, the files the chart's pods see:
// the site certificates and htpasswd files, tokens and keys as Kubernetes
// Secret volumes do (each file a symlink through ..data to a timestamped
// folder), and an export tree. Paths in the rendered configuration are
// mapped below root.
type podFS struct {
	root string
	bin  string
	// sites are "index=name" of the gateway's sites, sorted.
	sites []string
	// work holds what made the files: tls/ (dev-certs: ca.pem and the
	// sites' certificates) and the htpasswd sources.
	work string
}

// peerToken is the peer token the pods' Secret holds (peerToken.enabled).
const peerToken = "peer-token-0123456789abcdef0123456789abcdef0123456789abcdef"

// mountPrefixes are the container paths the chart mounts volumes at.
var mountPrefixes = []string{"/etc/stella-mirror", "/run/secrets", "/srv/stella-mirror", "/var/cache/stella-mirror", "/var/backups/stella-mirror"}

// host maps a container path below the root.
func (p *podFS) host(path string) string { return filepath.Join(p.root, path) }

// mapValue rewrites the container paths in a configuration value.
func (p *podFS) mapValue(v string) string {
	for _, pre := range mountPrefixes {
		if v == pre || strings.HasPrefix(v, pre+"/") {
			return p.host(v)
		}
	}
	return v
}

// secretDir writes files into dir the way the kubelet's atomic writer does.
func (p *podFS) secretDir(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	d := p.host(dir)
	ts := "..2026_12_07_23_00_00.000000001"
	if err := os.MkdirAll(filepath.Join(d, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(d, ts, name), data, 0o440); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(d, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(ts, filepath.Join(d, "..data")); err != nil {
		t.Fatal(err)
	}
}

// run runs the binary with exactly env (plus HOME) and returns its output.
func (p *podFS) run(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Env = []string{"HOME=" + p.root}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+p.mapValue(v))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRenderedConfigurationIsAccepted renders the chart and hands each
// component's rendered environment to the real binary's --check-config
// (origin, gateway, sync) with the Secrets' files laid out as Kubernetes
// mounts them, and runs the backup job's arguments as a dry run over the
// rendered profile: every key the chart writes is one the binary knows, and
// every file it names is where the pods mount it. The last subtests show
// that the check can fail: a key the binary does not know, passed through
// the chart's extraEnv, is refused by --check-config naming the key. The
// origin is pointed at the sync's textfile (the path the sync writes) with
// ORIGIN__SYNCMETRICSEXPORT=true exactly when the chart runs the sync with
// its textfile, and the binary refuses the export without the textfile.
func TestRenderedConfigurationIsAccepted(t *testing.T) {
	bin := chartBinary(t)
	for _, tc := range []struct {
		name        string
		files       []string
		set         map[string]string
		syncMetrics bool // the origin serves the sync's textfile
	}{
		{"default", nil, nil, true},
		{"values-mirror", []string{mirrorValues}, nil, true},
		{"sidecar", []string{mirrorValues}, map[string]string{"sync.mode": "sidecar"}, true},
		{"without the sync textfile", nil, map[string]string{"sync.metricsTextfile": "false"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Render(t, tc.files, tc.set)
			p := newPodFS(t, bin, m)
			env := func(cm string) map[string]string { return p.env(t, m, cm) }
			gwEnv := env("gateway-env")
			sites := p.sites
			originEnv := env("origin-env")
			if out, err := p.run(t, originEnv, "origin", "--check-config"); err != nil {
				t.Errorf("origin --check-config with the rendered environment: %v\n%s", err, out)
			}
			textfile, export := originEnv["ORIGIN__SYNCMETRICSTEXTFILE"], originEnv["ORIGIN__SYNCMETRICSEXPORT"]
			switch syncFile := env("sync-env")["SYNC__METRICSTEXTFILE"]; {
			case tc.syncMetrics && (textfile == "" || textfile != syncFile || export != "true"):
				t.Errorf("origin: ORIGIN__SYNCMETRICSTEXTFILE %q (the sync writes %q), ORIGIN__SYNCMETRICSEXPORT %q; want the sync's file and true", textfile, syncFile, export)
			case !tc.syncMetrics && (textfile != "" || export != "" || syncFile != ""):
				t.Errorf("without the textfile: ORIGIN__SYNCMETRICSTEXTFILE %q, ORIGIN__SYNCMETRICSEXPORT %q, SYNC__METRICSTEXTFILE %q; want none", textfile, export, syncFile)
			}
			if out, err := p.run(t, gwEnv, "gateway", "--check-config"); err != nil {
				t.Errorf("gateway --check-config with the rendered environment: %v\n%s", err, out)
			}
			if out, err := p.run(t, env("sync-env"), "sync", "--check-config"); err != nil {
				t.Errorf("sync --check-config with the rendered environment: %v\n%s", err, out)
			}

			// The backup job: its args, over the rendered profile files.
			cj := m.CronJob(Fullname + "-backup")
			if cj == nil {
				t.Fatal("no backup CronJob")
			}
			profile := m.ConfigMap(Fullname + "-profile")
			if profile == nil {
				t.Fatal("no profile ConfigMap")
			}
			files := map[string][]byte{}
			for k, v := range profile.Data {
				files[k] = []byte(v)
			}
			p.secretDir(t, "/etc/stella-mirror/profile", files)
			args := slicesMap(cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args, p.mapValue)
			for _, pre := range mountPrefixes {
				args = append(args, "--map", pre+"="+p.host(pre))
			}
			if err := os.MkdirAll(p.host("/var/backups/stella-mirror"), 0o700); err != nil {
				t.Fatal(err)
			}
			out, err := p.run(t, nil, append(args, "--dry-run")...)
			if err != nil {
				t.Fatalf("backup (the CronJob's args) --dry-run: %v\n%s", err, out)
			}
			// What a restore needs: every site's key and users, the sync's key.
			for _, s := range sites {
				_, name, _ := strings.Cut(s, "=")
				for _, f := range []string{"/etc/stella-mirror/tls/" + name + "/tls.key", "/run/secrets/htpasswd/" + name + ".htpasswd"} {
					if !strings.Contains(out, p.host(f)) {
						t.Errorf("the backup does not save %s:\n%s", f, out)
					}
				}
			}
			if !strings.Contains(out, p.host("/run/secrets/sync/signing.pub.pem")) {
				t.Errorf("the backup does not save the sync's public key:\n%s", out)
			}
			// The peer token (values-mirror.yaml turns it on) is saved
			// whenever the origin is given one.
			if peer := env("origin-env")["ORIGIN__PEERTOKENFILE"]; (peer != "") != (len(tc.files) > 0) {
				t.Errorf("ORIGIN__PEERTOKENFILE %q with values files %v: want it set exactly with values-mirror.yaml's peer token", peer, tc.files)
			} else if peer != "" && !strings.Contains(out, p.host(peer)) {
				t.Errorf("the backup does not save the peer token file %s:\n%s", peer, out)
			}
		})
	}
	t.Run("sync metrics export without the textfile refused by origin", func(t *testing.T) {
		m := Render(t, nil, map[string]string{"sync.metricsTextfile": "false", "origin.extraEnv.ORIGIN__SYNCMETRICSEXPORT": "true"})
		p := newPodFS(t, bin, m)
		out, err := p.run(t, p.env(t, m, "origin-env"), "origin", "--check-config")
		if err == nil {
			t.Fatalf("origin --check-config accepted ORIGIN__SYNCMETRICSEXPORT without ORIGIN__SYNCMETRICSTEXTFILE:\n%s", out)
		}
		if !strings.Contains(out, "ORIGIN__SYNCMETRICSEXPORT") || !strings.Contains(out, "ORIGIN__SYNCMETRICSTEXTFILE") {
			t.Errorf("origin --check-config failed without naming both keys:\n%s", out)
		}
	})
	for _, tc := range []struct{ set, component, cm string }{
		{"gateway.extraEnv.GATEWAY__CACHE__MAXSIZ", "gateway", "gateway-env"},
		{"origin.extraEnv.CONCELIER__MIRROR__EXPORTROT", "origin", "origin-env"},
		{"sync.extraEnv.SYNC__KEEPP", "sync", "sync-env"},
	} {
		t.Run("invented key refused by "+tc.component, func(t *testing.T) {
			m := Render(t, nil, map[string]string{tc.set: "1"})
			p := newPodFS(t, bin, m)
			key := tc.set[strings.LastIndexByte(tc.set, '.')+1:]
			out, err := p.run(t, p.env(t, m, tc.cm), tc.component, "--check-config")
			if err == nil {
				t.Fatalf("%s --check-config accepted the unknown key %s:\n%s", tc.component, key, out)
			}
			if !strings.Contains(out, key) {
				t.Errorf("%s --check-config failed without naming %s:\n%s", tc.component, key, out)
			}
		})
	}
}

// newPodFS renders the files the pods of m mount below a temporary root.
func newPodFS(t *testing.T, bin string, m *Manifests) *podFS {
	p := &podFS{root: t.TempDir(), bin: bin}
	gwEnv := p.env(t, m, "gateway-env")

	// Site certificates (dev-certs) and htpasswd files, per site.
	work := t.TempDir()
	var sites []string
	for k, v := range gwEnv {
		if strings.HasPrefix(k, "GATEWAY__SITES__") && strings.HasSuffix(k, "__NAME") {
			sites = append(sites, strings.TrimSuffix(strings.TrimPrefix(k, "GATEWAY__SITES__"), "__NAME")+"="+v)
		}
	}
	sort.Strings(sites)
	htpasswd := map[string][]byte{}
	for _, s := range sites {
		idx, name, _ := strings.Cut(s, "=")
		var hosts []string
		for k, v := range gwEnv {
			if strings.HasPrefix(k, "GATEWAY__SITES__"+idx+"__HOSTS__") {
				hosts = append(hosts, v)
			}
		}
		if out, err := p.run(t, nil, "dev-certs", "--out", filepath.Join(work, "tls"), "--site", name+"="+strings.Join(hosts, ",")); err != nil {
			t.Fatalf("dev-certs: %v\n%s", err, out)
		}
		p.secretDir(t, "/etc/stella-mirror/tls/"+name, map[string][]byte{
			"tls.crt": readFile(t, filepath.Join(work, "tls", name+".crt")),
			"tls.key": readFile(t, filepath.Join(work, "tls", name+".key")),
		})
		hp := filepath.Join(work, name+".htpasswd")
		if out, err := p.run(t, nil, "passwd", "--file", hp, "--user", "alice", "--generate", "24"); err != nil {
			t.Fatalf("passwd: %v\n%s", err, out)
		}
		htpasswd[name+".htpasswd"] = readFile(t, hp)
	}
	p.secretDir(t, "/run/secrets/htpasswd", htpasswd)
	p.secretDir(t, "/run/secrets/gateway-admin", map[string][]byte{"token": []byte("0123456789abcdef0123456789abcdef\n")})
	p.secretDir(t, "/run/secrets/peer-token", map[string][]byte{"token": []byte("# gateway-origin peer token\n" + peerToken + "\n")})

	// An export tree (the origin's root) and the key it is signed with.
	exports := p.host("/srv/stella-mirror/exports")
	if out, err := p.run(t, nil, "fixture", "--out", exports); err != nil {
		t.Fatalf("fixture: %v\n%s", err, out)
	}
	p.secretDir(t, "/run/secrets/sync", map[string][]byte{"signing.pub.pem": readFile(t, filepath.Join(exports, "fixture-signing.pub.pem"))})
	if out, err := p.run(t, nil, "keygen", "--alg", "EdDSA", "--out", filepath.Join(work, "backup-signing")); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	p.secretDir(t, "/run/secrets/backup", map[string][]byte{
		"age-recipients":  []byte("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n"),
		"signing.key.pem": readFile(t, filepath.Join(work, "backup-signing.key.pem")),
	})

	p.sites = sites
	p.work = work
	return p
}

// env returns the data of the rendered ConfigMap Fullname-suffix.
func (p *podFS) env(t *testing.T, m *Manifests, suffix string) map[string]string {
	t.Helper()
	c := m.ConfigMap(Fullname + "-" + suffix)
	if c == nil {
		t.Fatalf("ConfigMap %s-%s not rendered", Fullname, suffix)
	}
	return c.Data
}

func slicesMap(in []string, f func(string) string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = f(s)
	}
	return out
}
