package helm

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadValuesFail checks that a values file with a typo or a value out of
// range fails `helm template` and `helm lint` with a message naming the
// value (values.schema.json and templates/validate.yaml).
func TestBadValuesFail(t *testing.T) {
	cases := []struct {
		name, values string
		want         []string // every string must be in helm's error output
		lint         bool     // also run helm lint
	}{
		{"typo in a key", "gateway:\n  replicass: 3\n", []string{"/gateway", "'replicass' not allowed"}, true},
		{"typo at the top", "sycn:\n  mode: cronjob\n", []string{"'sycn' not allowed"}, false},
		{"one gateway", "gateway:\n  replicas: 1\n", []string{"/gateway/replicas", "minimum: got 1, want 2"}, true},
		{"bad schedule", "sync:\n  schedule: every 5 minutes\n", []string{"/sync/schedule", "'every 5 minutes' does not match"}, true},
		{"four cron fields", "sync:\n  schedule: \"*/5 * * *\"\n", []string{"/sync/schedule"}, false},
		{"bad backup schedule", "backup:\n  schedule: \"61 2 * * * *\"\n", []string{"/backup/schedule"}, false},
		{"keep 1", "sync:\n  keep: 1\n", []string{"/sync/keep", "minimum: got 1, want 2"}, false},
		{"unknown sync mode", "sync:\n  mode: loop\n", []string{"/sync/mode", "one of 'cronjob', 'sidecar'"}, false},
		// The FROM scratch image has no rsync nor /bin/sh: every run would fail.
		{"rsync source", "sync:\n  source: rsync://mirror.example.org/exports\n", []string{"/sync/source", "does not match pattern"}, true},
		{"ssh rsync source", "sync:\n  source: mirror.example.org:/srv/exports\n", []string{"/sync/source"}, false},
		{"bad CIDR", "origin:\n  bypassNetworks: [10.0.0.0]\n", []string{"/origin/bypassNetworks/0"}, false},
		{"foreign key in extraEnv", "gateway:\n  extraEnv:\n    SYNC__SOURCE: x\n", []string{"'SYNC__SOURCE' does not match pattern '^(GATEWAY)__"}, false},
		{"ACME is not offered", "gateway:\n  sites:\n    - name: a\n      hosts: [a.example.org]\n      domains: [primary]\n      acme: true\n", []string{"/gateway/sites/0", "'acme' not allowed"}, false},
		{"duplicate site", "gateway:\n  sites:\n    - {name: a, hosts: [a.example.org], domains: [primary]}\n    - {name: a, hosts: [b.example.org], domains: [community]}\n",
			[]string{"gateway.sites[1].name", `"a" is used by another site`}, false},
		{"PDB blocks drains", "gateway:\n  replicas: 2\n  pdb:\n    minAvailable: 2\n", []string{"gateway.pdb.minAvailable (2) must be below gateway.replicas (2)"}, false},
		{"origin unreachable", "origin:\n  bypassNetworks: []\n", []string{"origin.bypassNetworks", "gateway.upstreamAuthority"}, false},
		{"peer token typo", "peerToken:\n  enable: true\n", []string{"/peerToken", "'enable' not allowed"}, false},
		{"peer token without bypass networks", "peerToken:\n  enabled: true\norigin:\n  bypassNetworks: []\n  authority:\n    enabled: true\n    issuer: https://authority.example.org\n" +
			"gateway:\n  upstreamAuthority:\n    enabled: true\n    tokenURL: https://authority.example.org/connect/token\n    clientID: gw\n",
			[]string{"peerToken.enabled with an empty origin.bypassNetworks"}, false},
		{"cert-manager without issuer", "tls:\n  certManager:\n    enabled: true\n", []string{"tls.certManager.issuerRef.name is required"}, false},
		{"HPA replicas", "gateway:\n  replicas: 1\n  hpa:\n    enabled: true\n    minReplicas: 1\n", []string{"/gateway/hpa/minReplicas"}, false},
		// `sync --every` refuses an interval below 1m (exit 2): the sidecar
		// would crash-loop; 0 would run once, exit 0 and be restarted.
		{"sidecar interval below 1m", "sync:\n  mode: sidecar\n  every: 30s\n", []string{"sync.every", "30s", "at least 1m"}, false},
		{"sidecar interval 0", "sync:\n  mode: sidecar\n  every: 0s\n", []string{"sync.every", "at least 1m"}, false},
		{"sidecar interval in ms", "sync:\n  mode: sidecar\n  every: 59999ms\n", []string{"sync.every", "at least 1m"}, false},
		// A tmpfs cache counts against the memory limit (3072Mi vs 1Gi).
		{"memory cache above the memory limit", "gateway:\n  cache:\n    medium: Memory\n",
			[]string{"gateway.cache.medium Memory", "3072Mi", "gateway.resources.limits.memory (1Gi)"}, false},
		// SIGKILL would cut the gateway's drain short.
		{"shutdown outlives the grace period", "gateway:\n  shutdownTimeout: 1m\n  terminationGracePeriodSeconds: 40\n",
			[]string{"gateway.shutdownTimeout", "gateway.terminationGracePeriodSeconds (40)"}, false},
		{"shutdown outlives the grace period (hh:mm:ss)", "gateway:\n  shutdownTimeout: \"00:01:00\"\n",
			[]string{"gateway.shutdownTimeout (00:01:00)", "gateway.terminationGracePeriodSeconds (40)"}, false},
		// The drain delay comes before the shutdown timeout: their sum
		// must stay below the grace period, for both components.
		{"drain and shutdown outlive the grace period", "gateway:\n  shutdownDelay: 11s\n",
			[]string{"gateway.shutdownDelay (11s) + gateway.shutdownTimeout (30s)", "gateway.terminationGracePeriodSeconds (40)"}, false},
		{"drain and shutdown outlive the grace period (hh:mm:ss)", "gateway:\n  shutdownDelay: \"00:00:10\"\n",
			[]string{"gateway.shutdownDelay (00:00:10)", "gateway.terminationGracePeriodSeconds (40)"}, false},
		{"origin drain outlives the grace period", "origin:\n  shutdownDelay: 15s\n",
			[]string{"origin.shutdownDelay (15s)", "15s shutdown timeout", "origin.terminationGracePeriodSeconds (30)"}, false},
		{"drain above 5m", "gateway:\n  shutdownDelay: 6m\n  terminationGracePeriodSeconds: 1000\n",
			[]string{"gateway.shutdownDelay (6m)", "at most 5m"}, false},
		{"negative drain", "origin:\n  shutdownDelay: -1s\n", []string{"/origin/shutdownDelay", "does not match pattern"}, false},
		// extraEnv must not silently replace a key the chart sets (here the
		// admin listener the probes and the NetworkPolicy rely on).
		{"extraEnv redefines a chart key", "origin:\n  extraEnv:\n    ORIGIN__ADMINLISTEN: 127.0.0.1:9090\n",
			[]string{"origin.extraEnv.ORIGIN__ADMINLISTEN", "set by the chart"}, false},
		{"gateway extraEnv redefines a chart key", "gateway:\n  extraEnv:\n    GATEWAY__ORIGIN: http://elsewhere:8080\n",
			[]string{"gateway.extraEnv.GATEWAY__ORIGIN", "set by the chart"}, false},
		{"sync extraEnv redefines a chart key", "sync:\n  extraEnv:\n    SYNC__DEST: /tmp/x\n",
			[]string{"sync.extraEnv.SYNC__DEST", "set by the chart"}, false},
	}
	dir := t.TempDir()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(file, []byte(tc.values), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := Template(t, []string{file}, nil)
			if err == nil {
				t.Fatalf("helm template accepted %q (case %d); rendered %d bytes", tc.values, i, len(out))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("helm template error does not mention %q:\n%v", w, err)
				}
			}
			if tc.lint {
				out, err := Lint(t, []string{file}, nil)
				if err == nil {
					t.Fatalf("helm lint accepted %q:\n%s", tc.values, out)
				}
				for _, w := range tc.want {
					if !strings.Contains(out, w) {
						t.Errorf("helm lint output does not mention %q:\n%s", w, out)
					}
				}
			}
		})
	}
	// Intervals of 1m and more, in any unit, and extraEnv keys the chart
	// does not set, pass.
	for _, set := range []map[string]string{
		{"sync.mode": "sidecar", "sync.every": "1m"},
		{"sync.mode": "sidecar", "sync.every": "60s"},
		{"sync.mode": "sidecar", "sync.every": "1h30m"},
		{"sync.mode": "sidecar", "sync.every": "0.5h"},
		{"gateway.shutdownTimeout": "39s", "gateway.shutdownDelay": "0s"},
		{"gateway.shutdownTimeout": "00:00:39", "gateway.shutdownDelay": "00:00:00"},
		{"gateway.shutdownTimeout": "34s"}, // + the default 5s drain: 39s
		{"gateway.shutdownDelay": "9s"},
		{"gateway.shutdownDelay": "00:00:09"},
		{"origin.shutdownDelay": "14s"},
		{"origin.shutdownDelay": "0s"},
		{"gateway.shutdownDelay": "5m", "gateway.terminationGracePeriodSeconds": "331"},
		{"gateway.cache.medium": "Memory", "gateway.cache.maxSizeMiB": "256"},
		{"gateway.cache.medium": "Memory", "gateway.resources.limits.memory": "4G"},
		{"origin.extraEnv.ORIGIN__ADMINPPROF": "false"},
	} {
		if _, err := Template(t, nil, set); err != nil {
			t.Errorf("%v: %v", set, err)
		}
	}
	// The HPA lifts the two-replica minimum (the HPA's own minimum is 2).
	if _, err := Template(t, nil, map[string]string{"gateway.replicas": "1", "gateway.hpa.enabled": "true"}); err != nil {
		t.Errorf("gateway.replicas 1 with the HPA on: %v", err)
	}
}

// TestAlertsCopyIsIdentical: the chart's PrometheusRule reads
// files/alerts.yml (Helm reads no file outside the chart), which must be
// the same bytes as monitoring/prometheus/alerts.yml; and the rendered
// rule carries every group and alert of it.
func TestAlertsCopyIsIdentical(t *testing.T) {
	orig, err := os.ReadFile(filepath.Join(RepoRoot(), "monitoring", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := os.ReadFile(filepath.Join(ChartDir(), "files", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig, cp) {
		t.Fatalf("charts/stella-mirror/files/alerts.yml differs from monitoring/prometheus/alerts.yml: cp monitoring/prometheus/alerts.yml charts/stella-mirror/files/alerts.yml")
	}
	m := Render(t, nil, map[string]string{"monitoring.prometheusRule.enabled": "true"})
	if len(m.PrometheusRules) != 1 {
		t.Fatalf("%d PrometheusRules rendered, want 1", len(m.PrometheusRules))
	}
	var alerts []string
	for _, g := range m.PrometheusRules[0].Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts = append(alerts, r.Alert)
				if r.Expr.String() == "" {
					t.Errorf("alert %s: empty expr", r.Alert)
				}
			}
		}
	}
	for _, line := range strings.Split(string(orig), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: "); ok {
			if !contains(alerts, strings.TrimSpace(name)) {
				t.Errorf("alert %s of alerts.yml is not in the rendered PrometheusRule", name)
			}
		}
	}
	if len(alerts) < 10 {
		t.Errorf("only %d alerts rendered: %v", len(alerts), alerts)
	}
	// Prometheus templates in annotations pass through Helm untouched.
	if !strings.Contains(renderedAnnotations(m), "{{ $labels.job }}") {
		t.Error("the rendered annotations lost the {{ $labels.job }} template of alerts.yml")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func renderedAnnotations(m *Manifests) string {
	var b strings.Builder
	for _, pr := range m.PrometheusRules {
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				for _, v := range r.Annotations {
					b.WriteString(v + "\n")
				}
			}
		}
	}
	return b.String()
}

// TestChangedEnvironmentRollsPods: pods read their ConfigMap (envFrom) only
// at start, so a value that changes a Deployment's environment must change
// its pod template (the checksum/env annotation), or `helm upgrade` updates
// the ConfigMap and the running pods keep the old settings; a value that
// does not reach a Deployment must leave its template alone (no needless
// rollout, every gateway cache lost).
func TestChangedEnvironmentRollsPods(t *testing.T) {
	gw, origin := Fullname+"-gateway", Fullname+"-origin"
	template := func(m *Manifests, name string) string {
		t.Helper()
		d := m.Deployment(name)
		if d == nil {
			t.Fatalf("no Deployment %s", name)
		}
		b, err := json.Marshal(d.Spec.Template)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cases := []struct {
		name       string
		base, set  map[string]string
		roll, stay []string
	}{
		{"gateway log level", nil, map[string]string{"gateway.logLevel": "debug"}, []string{gw}, []string{origin}},
		{"origin log level", nil, map[string]string{"origin.logLevel": "debug"}, []string{origin}, []string{gw}},
		{"CDN max-age", nil, map[string]string{"gateway.cdnMaxAge": "120s"}, []string{gw}, []string{origin}},
		{"sidecar sync keep", map[string]string{"sync.mode": "sidecar"}, map[string]string{"sync.mode": "sidecar", "sync.keep": "5"}, []string{origin}, []string{gw}},
		{"cronjob sync keep", nil, map[string]string{"sync.keep": "5"}, nil, []string{gw, origin}},
		{"backup retention", nil, map[string]string{"backup.keepDaily": "10"}, nil, []string{gw, origin}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, after := Render(t, nil, tc.base), Render(t, nil, tc.set)
			for _, d := range tc.roll {
				if template(before, d) == template(after, d) {
					t.Errorf("%v: Deployment %s's pod template is unchanged: its pods would keep the old environment", tc.set, d)
				}
			}
			for _, d := range tc.stay {
				if template(before, d) != template(after, d) {
					t.Errorf("%v: Deployment %s's pod template changed: a needless rollout", tc.set, d)
				}
			}
		})
	}
}
