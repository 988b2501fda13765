package helm

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// mirrorValues is the example values file (relative to the repository root).
const mirrorValues = "charts/stella-mirror/values-mirror.yaml"

// renderCase is one set of values the chart must lint, render and pass the
// policies with.
type renderCase struct {
	name  string
	files []string
	set   map[string]string
	// want lists "Kind name-suffix" objects this case must render, and
	// wantNot those it must not.
	want, wantNot []string
}

var renderCases = []renderCase{
	{name: "default",
		want:    []string{"CronJob -sync", "CronJob -backup", "PersistentVolumeClaim -exports", "PodDisruptionBudget -gateway"},
		wantNot: []string{"HorizontalPodAutoscaler -gateway", "ServiceMonitor ", "PrometheusRule ", "Certificate -primary"}},
	{name: "values-mirror", files: []string{mirrorValues},
		want: []string{"CronJob -sync", "CronJob -backup", "Deployment -gateway", "Deployment -origin"}},
	{name: "sidecar", set: map[string]string{"sync.mode": "sidecar"},
		want:    []string{"ConfigMap -sync-env", "CronJob -backup"},
		wantNot: []string{"CronJob -sync", "PersistentVolumeClaim -exports"}},
	{name: "mirror-sidecar", files: []string{mirrorValues}, set: map[string]string{"sync.mode": "sidecar"},
		wantNot: []string{"CronJob -sync"}},
	{name: "monitoring", files: []string{mirrorValues},
		set:  map[string]string{"monitoring.serviceMonitor.enabled": "true", "monitoring.prometheusRule.enabled": "true"},
		want: []string{"ServiceMonitor ", "PrometheusRule "}},
	{name: "hpa", files: []string{mirrorValues}, set: map[string]string{"gateway.hpa.enabled": "true"},
		want: []string{"HorizontalPodAutoscaler -gateway"}},
	{name: "cert-manager", files: []string{mirrorValues},
		set:  map[string]string{"tls.certManager.enabled": "true", "tls.certManager.issuerRef.name": "internal-ca", "tls.certManager.duration": "2160h", "tls.certManager.renewBefore": "360h"},
		want: []string{"Certificate -primary", "Certificate -community"}},
	{name: "port-443", files: []string{mirrorValues}, set: map[string]string{"gateway.ports.https": "443", "gateway.ports.http": "80"}},
	{name: "everything-off", set: map[string]string{"sync.enabled": "false", "backup.enabled": "false", "networkPolicy.enabled": "false", "gateway.cache.enabled": "false", "gateway.adminToken.enabled": "false"},
		wantNot: []string{"CronJob -sync", "CronJob -backup", "ConfigMap -sync-env", "NetworkPolicy -origin"}},
}

// TestChart lints and renders the chart for every case, decodes every
// object strictly and checks the policies on the result.
func TestChart(t *testing.T) {
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Lint(t, tc.files, tc.set)
			if err != nil || !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint --strict: %v\n%s", err, out)
			}
			m := Render(t, tc.files, tc.set)
			t.Logf("%s: %d objects", tc.name, m.Count())
			for _, w := range tc.want {
				if !hasSuffixed(m, w) {
					t.Errorf("%s not rendered; rendered: %v", w, m.Kinds())
				}
			}
			for _, w := range tc.wantNot {
				if hasSuffixed(m, w) {
					t.Errorf("%s rendered, but should not be", w)
				}
			}
			checkPolicies(t, m)
		})
	}
}

// hasSuffixed reports whether m has an object "Kind Fullname+suffix".
func hasSuffixed(m *Manifests, kindSuffix string) bool {
	kind, suffix, _ := strings.Cut(kindSuffix, " ")
	return m.Has(kind, Fullname+suffix)
}

// checkPolicies runs every policy check on one render as subtests.
func checkPolicies(t *testing.T, m *Manifests) {
	checks := []struct {
		name string
		fn   func(t testing.TB, m *Manifests)
	}{
		{"security context", checkSecurityContext},
		{"resources", checkResources},
		{"probes", checkProbes},
		{"no inline secrets", checkNoInlineSecrets},
		{"cronjobs", checkCronJobs},
		{"gateway replicas and PDB", checkGatewayAvailability},
		{"network policy", checkNetworkPolicy},
		{"references", checkReferences},
		{"service ports", checkServicePorts},
		{"admin not public", checkAdminNotPublic},
		{"read-only mounts", checkReadOnlyMounts},
		{"PVCs kept", checkPVCsKept},
		{"service account token", checkServiceAccountToken},
		{"gateway cache", checkGatewayCache},
		{"labels", checkLabels},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) { c.fn(t, m) })
	}
}

// allContainers returns a pod's init containers and containers.
func allContainers(p *corev1.PodSpec) []*corev1.Container {
	var cs []*corev1.Container
	for i := range p.InitContainers {
		cs = append(cs, &p.InitContainers[i])
	}
	for i := range p.Containers {
		cs = append(cs, &p.Containers[i])
	}
	return cs
}

func checkSecurityContext(t testing.TB, m *Manifests) {
	for _, w := range m.Workloads() {
		psc := w.Pod.SecurityContext
		if psc == nil {
			t.Errorf("%s %s: no pod securityContext", w.Kind, w.Name)
			continue
		}
		for _, c := range allContainers(w.Pod) {
			where := fmt.Sprintf("%s %s container %s", w.Kind, w.Name, c.Name)
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				continue
			}
			nonRoot := sc.RunAsNonRoot
			if nonRoot == nil {
				nonRoot = psc.RunAsNonRoot
			}
			if nonRoot == nil || !*nonRoot {
				t.Errorf("%s: runAsNonRoot is not true", where)
			}
			user := sc.RunAsUser
			if user == nil {
				user = psc.RunAsUser
			}
			if user == nil || *user != 65532 {
				t.Errorf("%s: runAsUser %v, want 65532", where, ptrVal(user))
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem is not true", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation is not false", where)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: privileged", where)
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
				t.Errorf("%s: capabilities %+v, want drop [ALL] and no add", where, sc.Capabilities)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: seccompProfile %+v, want RuntimeDefault", where, seccomp)
			}
		}
		if w.Pod.HostNetwork || w.Pod.HostPID || w.Pod.HostIPC {
			t.Errorf("%s %s: uses a host namespace", w.Kind, w.Name)
		}
		for _, s := range psc.Sysctls {
			// The only sysctl the chart may set: the safe one that lets the
			// non-root gateway bind 443/80 in its own network namespace.
			if s.Name != "net.ipv4.ip_unprivileged_port_start" || s.Value != "0" {
				t.Errorf("%s %s: sysctl %s=%s", w.Kind, w.Name, s.Name, s.Value)
			}
		}
	}
}

func ptrVal[T any](p *T) any {
	if p == nil {
		return "unset"
	}
	return *p
}

func checkResources(t testing.TB, m *Manifests) {
	for _, w := range m.Workloads() {
		for _, c := range allContainers(w.Pod) {
			where := fmt.Sprintf("%s %s container %s", w.Kind, w.Name, c.Name)
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
					t.Errorf("%s: no %s request", where, r)
				}
				if q, ok := c.Resources.Limits[r]; !ok || q.IsZero() {
					t.Errorf("%s: no %s limit", where, r)
				}
				if req, lim := c.Resources.Requests[r], c.Resources.Limits[r]; req.Cmp(lim) > 0 {
					t.Errorf("%s: %s request %s above the limit %s", where, r, req.String(), lim.String())
				}
			}
		}
	}
}

// adminHealthPaths are the admin listeners' health endpoints of both
// servers (gateway.AdminHandler and the origin's route table register
// "GET /health/live" and "GET /health/ready"; docs/configuration.md,
// ORIGIN__ADMINLISTEN and GATEWAY__ADMINLISTEN).
var adminHealthPaths = []string{"/health/live", "/health/ready"}

func checkProbes(t testing.TB, m *Manifests) {
	for _, tc := range []struct{ deployment, container, adminKey string }{
		{Fullname + "-gateway", "gateway", "GATEWAY__ADMINLISTEN"},
		{Fullname + "-origin", "origin", "ORIGIN__ADMINLISTEN"},
	} {
		d := m.Deployment(tc.deployment)
		if d == nil {
			t.Errorf("no Deployment %s", tc.deployment)
			continue
		}
		c := findContainer(&d.Spec.Template.Spec, tc.container)
		if c == nil {
			t.Errorf("%s: no container %s", tc.deployment, tc.container)
			continue
		}
		env, err := m.ContainerEnv(c)
		if err != nil {
			t.Error(err)
			continue
		}
		admin := env[tc.adminKey]
		for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			where := fmt.Sprintf("%s %s probe", tc.deployment, name)
			if p == nil || p.HTTPGet == nil {
				t.Errorf("%s: missing or not httpGet", where)
				continue
			}
			if !slices.Contains(adminHealthPaths, p.HTTPGet.Path) {
				t.Errorf("%s: path %q is not an admin health path %v", where, p.HTTPGet.Path, adminHealthPaths)
			}
			// An origin is ready only with an export to serve: a new origin
			// pod (a sidecar that has not synced yet, a fresh PVC) must not
			// get the gateways' requests.
			if name == "readiness" && tc.container == "origin" && p.HTTPGet.Path != "/health/ready" {
				t.Errorf("%s: path %q; the origin is ready only once it serves an export (/health/ready)", where, p.HTTPGet.Path)
			}
			if name == "liveness" && p.HTTPGet.Path != "/health/live" {
				t.Errorf("%s: path %q; liveness must not depend on the origin (/health/live)", where, p.HTTPGet.Path)
			}
			port, ok := resolvePort(c, p.HTTPGet.Port)
			if !ok {
				t.Errorf("%s: port %s is not a port of the container", where, p.HTTPGet.Port.String())
				continue
			}
			// The probe must reach the admin listener, on every address.
			if want := fmt.Sprintf("0.0.0.0:%d", port); admin != want {
				t.Errorf("%s: probes port %d, but %s=%q (want %q)", where, port, tc.adminKey, admin, want)
			}
		}
	}
}

func findContainer(p *corev1.PodSpec, name string) *corev1.Container {
	for _, c := range allContainers(p) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// resolvePort resolves a numeric or named port against a container's ports.
func resolvePort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// sensitiveName matches environment variable names that look like they
// carry a credential.
var sensitiveName = regexp.MustCompile(`(?i)PASSWORD|PASSWD|TOKEN|KEY|SECRET|CREDENTIAL`)

func checkNoInlineSecrets(t testing.TB, m *Manifests) {
	for _, s := range m.Secrets {
		if len(s.Data) > 0 || len(s.StringData) > 0 {
			t.Errorf("Secret %s is rendered with data", s.Name)
		}
	}
	for _, w := range m.Workloads() {
		mounts := secretMountPaths(w.Pod)
		for _, c := range allContainers(w.Pod) {
			for _, e := range c.Env {
				if sensitiveName.MatchString(e.Name) && e.ValueFrom == nil {
					t.Errorf("%s %s container %s: env %s has an inline value", w.Kind, w.Name, c.Name, e.Name)
				}
			}
			env, err := m.ContainerEnv(c)
			if err != nil {
				t.Error(err)
				continue
			}
			// envFrom ConfigMaps: a credential-like key must name a file
			// on a Secret volume of this container, never hold the value.
			for k, v := range env {
				if !sensitiveName.MatchString(k) {
					continue
				}
				if !underAny(v, mounts[c.Name]) {
					t.Errorf("%s %s container %s: %s=%q is not a file on a Secret volume of the container", w.Kind, w.Name, c.Name, k, v)
				}
			}
		}
	}
}

// secretMountPaths returns, per container, the mount paths of Secret volumes.
func secretMountPaths(p *corev1.PodSpec) map[string][]string {
	secretVols := map[string]bool{}
	for _, v := range p.Volumes {
		if v.Secret != nil {
			secretVols[v.Name] = true
		}
	}
	out := map[string][]string{}
	for _, c := range allContainers(p) {
		for _, vm := range c.VolumeMounts {
			if secretVols[vm.Name] {
				out[c.Name] = append(out[c.Name], vm.MountPath)
			}
		}
	}
	return out
}

func underAny(path string, dirs []string) bool {
	for _, d := range dirs {
		if strings.HasPrefix(path, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

func checkCronJobs(t testing.TB, m *Manifests) {
	for _, cj := range m.CronJobs {
		if cj.Spec.ConcurrencyPolicy != "Forbid" {
			t.Errorf("CronJob %s: concurrencyPolicy %q, want Forbid", cj.Name, cj.Spec.ConcurrencyPolicy)
		}
		if cj.Spec.StartingDeadlineSeconds == nil {
			t.Errorf("CronJob %s: no startingDeadlineSeconds", cj.Name)
		}
		js := cj.Spec.JobTemplate.Spec
		if js.BackoffLimit == nil || js.ActiveDeadlineSeconds == nil {
			t.Errorf("CronJob %s: backoffLimit %v, activeDeadlineSeconds %v: both must be set", cj.Name, ptrVal(js.BackoffLimit), ptrVal(js.ActiveDeadlineSeconds))
		}
		if rp := js.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyNever && rp != corev1.RestartPolicyOnFailure {
			t.Errorf("CronJob %s: restartPolicy %q", cj.Name, rp)
		}
	}
	if cj := m.CronJob(Fullname + "-sync"); cj != nil {
		if cj.Spec.Schedule != "*/5 * * * *" {
			t.Errorf("sync CronJob schedule %q, want */5 * * * *", cj.Spec.Schedule)
		}
		// Exit 2 (invalid configuration) cannot heal: no retry.
		failsOn2 := false
		if pfp := cj.Spec.JobTemplate.Spec.PodFailurePolicy; pfp != nil {
			for _, r := range pfp.Rules {
				if r.Action == batchv1.PodFailurePolicyActionFailJob && r.OnExitCodes != nil &&
					r.OnExitCodes.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn && slices.Contains(r.OnExitCodes.Values, 2) {
					failsOn2 = true
				}
			}
		}
		if !failsOn2 {
			t.Errorf("sync CronJob: no podFailurePolicy rule FailJob on exit code 2 (a bad configuration would be retried)")
		}
		c := findContainer(&cj.Spec.JobTemplate.Spec.Template.Spec, "sync")
		if c == nil || !slices.Equal(c.Args, []string{"sync"}) {
			t.Errorf("sync CronJob: container sync with args [sync] expected, got %+v", c)
		} else if env, err := m.ContainerEnv(c); err != nil || env["SYNC__DEST"] == "" || env["SYNC__SOURCE"] == "" {
			t.Errorf("sync CronJob: SYNC__DEST and SYNC__SOURCE must be set (env %v, %v)", env, err)
		}
	}
}

func checkGatewayAvailability(t testing.TB, m *Manifests) {
	d := m.Deployment(Fullname + "-gateway")
	if d == nil {
		t.Fatal("no gateway Deployment")
	}
	var hpaMin int32
	for _, h := range m.HPAs {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == d.Name && h.Spec.MinReplicas != nil {
			hpaMin = *h.Spec.MinReplicas
		}
	}
	switch {
	case hpaMin > 0:
		if hpaMin < 2 {
			t.Errorf("HPA minReplicas %d, want >= 2", hpaMin)
		}
		if d.Spec.Replicas != nil {
			t.Errorf("gateway Deployment sets replicas %d although an HPA owns the count", *d.Spec.Replicas)
		}
	case d.Spec.Replicas == nil || *d.Spec.Replicas < 2:
		t.Errorf("gateway replicas %v, want >= 2", ptrVal(d.Spec.Replicas))
	}
	found := false
	for _, p := range m.PDBs {
		sel, err := metav1LabelSelector(p.Spec.Selector)
		if err != nil {
			t.Errorf("PDB %s: %v", p.Name, err)
			continue
		}
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		found = true
		if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() < 1 {
			t.Errorf("PDB %s: minAvailable %v, want >= 1", p.Name, p.Spec.MinAvailable)
		}
	}
	if !found {
		t.Error("no PodDisruptionBudget selects the gateway pods")
	}
	if len(d.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
		t.Error("gateway: no topologySpreadConstraints")
	}
	// A rollout removes an old gateway only once a new one is ready.
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("gateway: rolling update maxUnavailable %v, want 0", ru)
	}
}

func checkNetworkPolicy(t testing.TB, m *Manifests) {
	if len(m.NetworkPolicies) == 0 {
		t.Skip("networkPolicy.enabled is false in this case")
	}
	origin := m.Deployment(Fullname + "-origin")
	gateway := m.Deployment(Fullname + "-gateway")
	if origin == nil || gateway == nil {
		t.Fatal("origin or gateway Deployment missing")
	}
	originLabels := labels.Set(origin.Spec.Template.Labels)
	gatewayLabels := labels.Set(gateway.Spec.Template.Labels)
	// The gateway pods of another release in the namespace are not this
	// origin's bypass peers: the origin's selector must tell them apart.
	otherGateway := labels.Set{}
	for k, v := range gatewayLabels {
		otherGateway[k] = v
	}
	otherGateway["app.kubernetes.io/instance"] = "another-release"
	checkAdminPeers(t, m, gatewayLabels, &gateway.Spec.Template.Spec, "gateway")
	checkAdminPeers(t, m, originLabels, &origin.Spec.Template.Spec, "origin")
	originPod := &origin.Spec.Template.Spec
	httpPort := namedPort(originPod, "origin", "http")
	selecting := 0
	for _, np := range m.NetworkPolicies {
		sel, err := metav1LabelSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatalf("NetworkPolicy %s: %v", np.Name, err)
		}
		if !sel.Matches(originLabels) {
			continue
		}
		selecting++
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("NetworkPolicy %s selects the origin without policyType Ingress", np.Name)
		}
		for i, rule := range np.Spec.Ingress {
			admitsHTTP := len(rule.Ports) == 0
			for _, p := range rule.Ports {
				if p.Port == nil {
					admitsHTTP = true
					continue
				}
				if n, ok := resolvePort(findContainer(originPod, "origin"), *p.Port); ok && n == httpPort {
					admitsHTTP = true
				}
			}
			if len(rule.From) == 0 {
				t.Errorf("NetworkPolicy %s ingress[%d] admits every peer to the origin", np.Name, i)
				continue
			}
			for _, peer := range rule.From {
				gatewayOnly := peer.PodSelector != nil && peer.NamespaceSelector == nil && peer.IPBlock == nil
				if gatewayOnly {
					ps, err := metav1LabelSelector(peer.PodSelector)
					gatewayOnly = err == nil && ps.Matches(gatewayLabels) && !ps.Empty() && !ps.Matches(originLabels) && !ps.Matches(otherGateway)
				}
				if admitsHTTP && !gatewayOnly {
					t.Errorf("NetworkPolicy %s ingress[%d] admits %+v to the origin's public port: only gateway pods may", np.Name, i, peer)
				}
			}
		}
	}
	if selecting == 0 {
		t.Error("no NetworkPolicy selects the origin pods")
	}
	// Default deny: a policy with no ingress rule selects every pod of the release.
	deny := false
	for _, np := range m.NetworkPolicies {
		sel, err := metav1LabelSelector(&np.Spec.PodSelector)
		if err == nil && len(np.Spec.Ingress) == 0 && sel.Matches(originLabels) && sel.Matches(gatewayLabels) {
			deny = true
		}
	}
	if !deny {
		t.Error("no default-deny NetworkPolicy over the release's pods")
	}
}

// checkAdminPeers: the admin port (health, /metrics, /status, the cache
// purge) of the pods with podLabels is admitted by the NetworkPolicies only
// from peers that name namespaces (Prometheus's) or pods; never from every
// peer, an empty selector or an ipBlock.
func checkAdminPeers(t testing.TB, m *Manifests, podLabels labels.Set, pod *corev1.PodSpec, container string) {
	admin := namedPort(pod, container, "admin")
	for _, np := range m.NetworkPolicies {
		sel, err := metav1LabelSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(podLabels) {
			continue
		}
		for i, rule := range np.Spec.Ingress {
			admits := len(rule.Ports) == 0
			for _, p := range rule.Ports {
				if p.Port == nil {
					admits = true
				} else if n, ok := resolvePort(findContainer(pod, container), *p.Port); ok && n == admin {
					admits = true
				}
			}
			if !admits {
				continue
			}
			if len(rule.From) == 0 {
				t.Errorf("NetworkPolicy %s ingress[%d] admits every peer to the %s admin port %d", np.Name, i, container, admin)
			}
			for _, peer := range rule.From {
				if peer.IPBlock != nil || (peer.NamespaceSelector != nil && len(peer.NamespaceSelector.MatchLabels)+len(peer.NamespaceSelector.MatchExpressions) == 0) ||
					(peer.PodSelector != nil && peer.NamespaceSelector == nil && len(peer.PodSelector.MatchLabels)+len(peer.PodSelector.MatchExpressions) == 0) {
					t.Errorf("NetworkPolicy %s ingress[%d] admits %+v to the %s admin port %d: only Prometheus's namespace or this release's pods may", np.Name, i, peer, container, admin)
				}
			}
		}
	}
}

// checkReadOnlyMounts: only the sync writes the exports; the origin (which
// serves them) and the backup (which saves them) mount them read-only, and
// no container mounts a Secret writable.
func checkReadOnlyMounts(t testing.TB, m *Manifests) {
	for _, w := range m.Workloads() {
		secretVols := map[string]bool{}
		for _, v := range w.Pod.Volumes {
			if v.Secret != nil {
				secretVols[v.Name] = true
			}
		}
		for _, c := range allContainers(w.Pod) {
			for _, vm := range c.VolumeMounts {
				if vm.ReadOnly {
					continue
				}
				if vm.Name == "exports" && c.Name != "sync" {
					t.Errorf("%s %s container %s: exports mounted writable (only the sync writes them)", w.Kind, w.Name, c.Name)
				}
				if secretVols[vm.Name] {
					t.Errorf("%s %s container %s: Secret volume %s mounted writable", w.Kind, w.Name, c.Name, vm.Name)
				}
			}
		}
	}
}

// checkPVCsKept: the exports (hours to re-sync) and the backup archives
// survive `helm uninstall` (docs §14, "Upgrades").
func checkPVCsKept(t testing.TB, m *Manifests) {
	for _, pvc := range m.PVCs {
		if pvc.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("PersistentVolumeClaim %s: no helm.sh/resource-policy: keep (helm uninstall would delete it)", pvc.Name)
		}
	}
}

// checkAdminNotPublic: the gateway's public Service never carries its admin
// listener (it is on the ClusterIP ...-gateway-admin Service only).
func checkAdminNotPublic(t testing.TB, m *Manifests) {
	d := m.Deployment(Fullname + "-gateway")
	s := m.Service(Fullname + "-gateway")
	if d == nil || s == nil {
		t.Fatal("no gateway Deployment or Service")
	}
	c := findContainer(&d.Spec.Template.Spec, "gateway")
	admin := namedPort(&d.Spec.Template.Spec, "gateway", "admin")
	for _, p := range s.Spec.Ports {
		if n, ok := resolvePort(c, p.TargetPort); ok && n == admin {
			t.Errorf("Service %s (%s) port %s targets the gateway's admin listener %d", s.Name, s.Spec.Type, p.Name, admin)
		}
	}
}

func namedPort(p *corev1.PodSpec, container, name string) int32 {
	c := findContainer(p, container)
	if c == nil {
		return -1
	}
	n, _ := resolvePort(c, intstr.FromString(name))
	return n
}

// expectedSecrets are the Secrets the chart names and the operator creates
// (charts/stella-mirror/README.md and docs/operations.md list them).
func expectedSecrets(m *Manifests) map[string]bool {
	s := map[string]bool{
		Fullname + "-htpasswd": true, Fullname + "-gateway-admin": true, Fullname + "-gateway-authority": true,
		Fullname + "-sync": true, Fullname + "-backup": true, Fullname + "-peer-token": true,
	}
	if cm := m.ConfigMap(Fullname + "-gateway-env"); cm != nil {
		for k, v := range cm.Data {
			if strings.HasSuffix(k, "__NAME") && strings.HasPrefix(k, "GATEWAY__SITES__") {
				s[Fullname+"-tls-"+v] = true
			}
		}
	}
	return s
}

func checkReferences(t testing.TB, m *Manifests) {
	secrets := expectedSecrets(m)
	for _, name := range m.ReferencedSecrets() {
		if !secrets[name] {
			t.Errorf("Secret %s is referenced but not one the chart documents", name)
		}
	}
	for _, w := range m.Workloads() {
		where := w.Kind + " " + w.Name
		vols := map[string]bool{}
		for _, v := range w.Pod.Volumes {
			vols[v.Name] = true
			switch {
			case v.ConfigMap != nil:
				if m.ConfigMap(v.ConfigMap.Name) == nil {
					t.Errorf("%s volume %s: ConfigMap %s is not rendered", where, v.Name, v.ConfigMap.Name)
				}
			case v.Secret != nil:
				if !secrets[v.Secret.SecretName] {
					t.Errorf("%s volume %s: Secret %s is neither rendered nor documented", where, v.Name, v.Secret.SecretName)
				}
			case v.PersistentVolumeClaim != nil:
				if !m.Has("PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName) {
					t.Errorf("%s volume %s: PVC %s is not rendered", where, v.Name, v.PersistentVolumeClaim.ClaimName)
				}
			case v.EmptyDir != nil:
				if v.EmptyDir.SizeLimit == nil {
					t.Errorf("%s volume %s: emptyDir without sizeLimit", where, v.Name)
				}
			default:
				t.Errorf("%s volume %s: a kind the chart does not use (contract: configMap, secret, emptyDir, persistentVolumeClaim)", where, v.Name)
			}
		}
		for _, c := range allContainers(w.Pod) {
			for _, vm := range c.VolumeMounts {
				if !vols[vm.Name] {
					t.Errorf("%s container %s mounts an undefined volume %s", where, c.Name, vm.Name)
				}
				if vm.SubPath != "" {
					t.Errorf("%s container %s mounts %s with subPath: updates of the volume never reach the file", where, c.Name, vm.Name)
				}
			}
			for _, from := range c.EnvFrom {
				if from.ConfigMapRef != nil && m.ConfigMap(from.ConfigMapRef.Name) == nil {
					t.Errorf("%s container %s: envFrom ConfigMap %s is not rendered", where, c.Name, from.ConfigMapRef.Name)
				}
				if from.SecretRef != nil && !secrets[from.SecretRef.Name] {
					t.Errorf("%s container %s: envFrom Secret %s is neither rendered nor documented", where, c.Name, from.SecretRef.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					if cm := m.ConfigMap(r.Name); cm == nil {
						t.Errorf("%s container %s env %s: ConfigMap %s is not rendered", where, c.Name, e.Name, r.Name)
					} else if _, ok := cm.Data[r.Key]; !ok {
						t.Errorf("%s container %s env %s: ConfigMap %s has no key %s", where, c.Name, e.Name, r.Name, r.Key)
					}
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil && !secrets[r.Name] {
					t.Errorf("%s container %s env %s: Secret %s is neither rendered nor documented", where, c.Name, e.Name, r.Name)
				}
			}
			if want := "stella-mirror:"; !strings.Contains(c.Image, want) {
				t.Errorf("%s container %s: image %q is not the project's image", where, c.Name, c.Image)
			}
			if len(c.Command) != 0 || len(c.Args) == 0 {
				t.Errorf("%s container %s: command %v args %v: the image's ENTRYPOINT is the binary, args carry the subcommand", where, c.Name, c.Command, c.Args)
			}
		}
		if sa := w.Pod.ServiceAccountName; sa != "" && !m.Has("ServiceAccount", sa) {
			t.Errorf("%s: ServiceAccount %s is not rendered", where, sa)
		}
	}
}

// checkServicePorts: every Service selects pods of a rendered workload and
// its port equals the target port (the gateway's HTTP redirect names its
// own listen port; the Docker-based runner relies on it too).
func checkServicePorts(t testing.TB, m *Manifests) {
	for _, s := range m.Services {
		sel := labels.SelectorFromSet(s.Spec.Selector)
		var pod *corev1.PodSpec
		for _, w := range m.Workloads() {
			if w.Kind == "Deployment" && sel.Matches(labels.Set(w.Labels)) {
				pod = w.Pod
			}
		}
		if pod == nil {
			t.Errorf("Service %s selects no rendered Deployment", s.Name)
			continue
		}
		for _, p := range s.Spec.Ports {
			ok := false
			for _, c := range allContainers(pod) {
				if n, found := resolvePort(c, p.TargetPort); found && n == p.Port {
					ok = true
				}
			}
			if !ok {
				t.Errorf("Service %s port %s: %d does not equal a container port named/numbered %s", s.Name, p.Name, p.Port, p.TargetPort.String())
			}
		}
	}
}

func checkServiceAccountToken(t testing.TB, m *Manifests) {
	for _, sa := range m.ServiceAccounts {
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s: automountServiceAccountToken is not false", sa.Name)
		}
	}
	for _, w := range m.Workloads() {
		if a := w.Pod.AutomountServiceAccountToken; a == nil || *a {
			t.Errorf("%s %s: automountServiceAccountToken is not false", w.Kind, w.Name)
		}
	}
}

// checkGatewayCache: the cache directory is an emptyDir whose sizeLimit
// is above GATEWAY__CACHE__MAXSIZE.
func checkGatewayCache(t testing.TB, m *Manifests) {
	d := m.Deployment(Fullname + "-gateway")
	c := findContainer(&d.Spec.Template.Spec, "gateway")
	env, err := m.ContainerEnv(c)
	if err != nil {
		t.Fatal(err)
	}
	dir := env["GATEWAY__CACHE__DIR"]
	if dir == "" {
		t.Skip("the cache is off in this case")
	}
	var mib int64
	if _, err := fmt.Sscanf(env["GATEWAY__CACHE__MAXSIZE"], "%dMiB", &mib); err != nil {
		t.Fatalf("GATEWAY__CACHE__MAXSIZE=%q: %v", env["GATEWAY__CACHE__MAXSIZE"], err)
	}
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != dir {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil {
				t.Fatalf("cache volume %s is not an emptyDir with a sizeLimit", v.Name)
			}
			if limit := v.EmptyDir.SizeLimit.Value(); limit <= mib<<20 {
				t.Errorf("cache emptyDir sizeLimit %s is not above GATEWAY__CACHE__MAXSIZE %dMiB", v.EmptyDir.SizeLimit.String(), mib)
			}
			return
		}
	}
	t.Errorf("GATEWAY__CACHE__DIR %s is not a mounted volume", dir)
}

// checkLabels: every object carries the standard app.kubernetes.io labels.
func checkLabels(t testing.TB, m *Manifests) {
	for _, o := range m.Objects {
		l := objectMeta(o.Value).Labels
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if l[k] == "" {
				t.Errorf("%s %s: no label %s (labels %v)", o.Kind, o.Name, k, slices.Sorted(maps.Keys(l)))
			}
		}
	}
}

// metav1LabelSelector converts a LabelSelector (nil: an error).
func metav1LabelSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return nil, fmt.Errorf("no selector")
	}
	return metav1.LabelSelectorAsSelector(s)
}

// TestSecretsAreDocumented: every Secret the chart may reference (the
// expectedSecrets the reference check admits) is listed in the chart's
// README, and the default render references each non-optional one.
func TestSecretsAreDocumented(t *testing.T) {
	readme := string(readFile(t, ChartDir()+"/README.md"))
	m := Render(t, nil, nil)
	for name := range expectedSecrets(m) {
		doc := "<prefix>" + strings.TrimPrefix(name, Fullname)
		if strings.HasPrefix(name, Fullname+"-tls-") {
			doc = "<prefix>-tls-<site>"
		}
		if !strings.Contains(readme, "`"+doc+"`") {
			t.Errorf("charts/stella-mirror/README.md does not list the Secret %s (as `%s`)", name, doc)
		}
	}
	// NOTES.txt names every Secret a release needs.
	for _, files := range [][]string{nil, {mirrorValues}} {
		notes, err := Notes(t, files, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range Render(t, files, nil).ReferencedSecrets() {
			if !strings.Contains(notes, "  - "+name+" (") {
				t.Errorf("NOTES (values %v) do not name the Secret %s:\n%s", files, name, notes)
			}
		}
	}
	got := m.ReferencedSecrets()
	want := []string{Fullname + "-backup", Fullname + "-gateway-admin", Fullname + "-htpasswd", Fullname + "-sync", Fullname + "-tls-primary"}
	if !slices.Equal(got, want) {
		t.Errorf("default render references Secrets %v, want %v", got, want)
	}
}
