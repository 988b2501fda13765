package helm

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// recorder is a testing.TB that records failures instead of failing, so a
// policy check can be run against a manifest broken on purpose.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, s)
}
func (r *recorder) Helper()                           {}
func (r *recorder) Error(args ...any)                 { r.add(fmt.Sprint(args...)) }
func (r *recorder) Errorf(format string, args ...any) { r.add(fmt.Sprintf(format, args...)) }
func (r *recorder) Fatal(args ...any)                 { r.add(fmt.Sprint(args...)); runtime.Goexit() }
func (r *recorder) Fatalf(format string, args ...any) {
	r.add(fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (r *recorder) Skip(args ...any) { r.add("SKIP " + fmt.Sprint(args...)); runtime.Goexit() }

// failures runs check on m and returns what it reported.
func failures(t *testing.T, check func(testing.TB, *Manifests), m *Manifests) string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(r, m)
	}()
	<-done
	return strings.Join(r.msgs, "\n")
}

// TestPolicyChecksCatchViolations breaks a rendered manifest in one way per
// case and checks that the matching policy check reports it (and that it
// reports nothing on the unbroken render).
func TestPolicyChecksCatchViolations(t *testing.T) {
	gw := Fullname + "-gateway"
	origin := Fullname + "-origin"
	container := func(m *Manifests, deployment, name string) *corev1.Container {
		return findContainer(&m.Deployment(deployment).Spec.Template.Spec, name)
	}
	cases := []struct {
		name   string
		check  func(testing.TB, *Manifests)
		breakM func(m *Manifests)
		want   string
	}{
		{"writable root", checkSecurityContext, func(m *Manifests) {
			f := false
			container(m, gw, "gateway").SecurityContext.ReadOnlyRootFilesystem = &f
		}, "readOnlyRootFilesystem is not true"},
		{"root user", checkSecurityContext, func(m *Manifests) {
			var root int64
			container(m, origin, "origin").SecurityContext.RunAsUser = &root
		}, "runAsUser 0, want 65532"},
		{"capability added", checkSecurityContext, func(m *Manifests) {
			container(m, gw, "gateway").SecurityContext.Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"}
		}, "want drop [ALL] and no add"},
		{"no memory limit", checkResources, func(m *Manifests) {
			delete(container(m, origin, "origin").Resources.Limits, corev1.ResourceMemory)
		}, "no memory limit"},
		{"probe path", checkProbes, func(m *Manifests) {
			container(m, gw, "gateway").ReadinessProbe.HTTPGet.Path = "/healthz"
		}, `path "/healthz" is not an admin health path`},
		{"probe on the public port", checkProbes, func(m *Manifests) {
			container(m, origin, "origin").LivenessProbe.HTTPGet.Port = intstr.FromString("http")
		}, "ORIGIN__ADMINLISTEN"},
		{"origin ready without an export", checkProbes, func(m *Manifests) {
			container(m, origin, "origin").ReadinessProbe.HTTPGet.Path = "/health/live"
		}, "ready only once it serves an export"},
		{"liveness on readiness", checkProbes, func(m *Manifests) {
			container(m, gw, "gateway").LivenessProbe.HTTPGet.Path = "/health/ready"
		}, "liveness must not depend on the origin"},
		{"inline token env", checkNoInlineSecrets, func(m *Manifests) {
			c := container(m, gw, "gateway")
			c.Env = append(c.Env, corev1.EnvVar{Name: "UPSTREAM_TOKEN", Value: "s3cr3t"})
		}, "env UPSTREAM_TOKEN has an inline value"},
		{"key outside a Secret volume", checkNoInlineSecrets, func(m *Manifests) {
			m.ConfigMap(Fullname + "-gateway-env").Data["GATEWAY__SITES__0__KEYFILE"] = "/tmp/primary.key"
		}, "GATEWAY__SITES__0__KEYFILE=\"/tmp/primary.key\" is not a file on a Secret volume"},
		{"secret with data", checkNoInlineSecrets, func(m *Manifests) {
			m.Secrets = append(m.Secrets, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "leak"}, StringData: map[string]string{"token": "x"}})
		}, "Secret leak is rendered with data"},
		{"schedule", checkCronJobs, func(m *Manifests) {
			m.CronJob(Fullname + "-sync").Spec.Schedule = "*/10 * * * *"
		}, "schedule \"*/10 * * * *\""},
		{"concurrency", checkCronJobs, func(m *Manifests) {
			m.CronJob(Fullname + "-sync").Spec.ConcurrencyPolicy = "Allow"
		}, "want Forbid"},
		{"bad configuration retried", checkCronJobs, func(m *Manifests) {
			m.CronJob(Fullname + "-sync").Spec.JobTemplate.Spec.PodFailurePolicy = nil
		}, "FailJob on exit code 2"},
		{"origin writes its exports", checkReadOnlyMounts, func(m *Manifests) {
			for i, vm := range container(m, origin, "origin").VolumeMounts {
				if vm.Name == "exports" {
					container(m, origin, "origin").VolumeMounts[i].ReadOnly = false
				}
			}
		}, "exports mounted writable"},
		{"writable Secret", checkReadOnlyMounts, func(m *Manifests) {
			c := container(m, gw, "gateway")
			for i, vm := range c.VolumeMounts {
				if strings.HasPrefix(vm.Name, "tls-") {
					c.VolumeMounts[i].ReadOnly = false
				}
			}
		}, "Secret volume tls-primary mounted writable"},
		{"one gateway", checkGatewayAvailability, func(m *Manifests) {
			one := int32(1)
			m.Deployment(gw).Spec.Replicas = &one
		}, "gateway replicas 1, want >= 2"},
		{"rollout below capacity", checkGatewayAvailability, func(m *Manifests) {
			one := intstr.FromInt32(1)
			m.Deployment(gw).Spec.Strategy.RollingUpdate.MaxUnavailable = &one
		}, "maxUnavailable"},
		{"exports deleted on uninstall", checkPVCsKept, func(m *Manifests) {
			delete(m.PVCs[0].Annotations, "helm.sh/resource-policy")
		}, "no helm.sh/resource-policy: keep"},
		{"no PDB", checkGatewayAvailability, func(m *Manifests) { m.PDBs = nil }, "no PodDisruptionBudget selects the gateway pods"},
		{"origin open to a namespace", checkNetworkPolicy, func(m *Manifests) {
			for _, np := range m.NetworkPolicies {
				if np.Name == Fullname+"-origin" {
					np.Spec.Ingress[0].From = append(np.Spec.Ingress[0].From, networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}})
				}
			}
		}, "only gateway pods may"},
		{"origin open to all", checkNetworkPolicy, func(m *Manifests) {
			for _, np := range m.NetworkPolicies {
				if np.Name == Fullname+"-origin" {
					np.Spec.Ingress[0].From = nil
				}
			}
		}, "admits every peer to the origin"},
		{"origin open to another release's gateways", checkNetworkPolicy, func(m *Manifests) {
			for _, np := range m.NetworkPolicies {
				if np.Name == Fullname+"-origin" {
					np.Spec.Ingress[0].From[0].PodSelector.MatchLabels = map[string]string{"app.kubernetes.io/component": "gateway"}
				}
			}
		}, "only gateway pods may"},
		{"gateway admin port open to all", checkNetworkPolicy, func(m *Manifests) {
			for _, np := range m.NetworkPolicies {
				if np.Name == Fullname+"-gateway" {
					admin := intstr.FromString("admin")
					np.Spec.Ingress[0].Ports = append(np.Spec.Ingress[0].Ports, networkingv1.NetworkPolicyPort{Port: &admin})
				}
			}
		}, "admits every peer to the gateway admin port"},
		{"origin admin port open to every namespace", checkNetworkPolicy, func(m *Manifests) {
			for _, np := range m.NetworkPolicies {
				if np.Name == Fullname+"-origin" {
					admin := intstr.FromString("admin")
					np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
						From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
						Ports: []networkingv1.NetworkPolicyPort{{Port: &admin}}})
				}
			}
		}, "to the origin admin port"},
		{"admin on the public Service", checkAdminNotPublic, func(m *Manifests) {
			s := m.Service(gw)
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "admin", Port: 9091, TargetPort: intstr.FromString("admin")})
		}, "targets the gateway's admin listener"},
		{"no default deny", checkNetworkPolicy, func(m *Manifests) {
			var keep []*networkingv1.NetworkPolicy
			for _, np := range m.NetworkPolicies {
				if len(np.Spec.Ingress) > 0 {
					keep = append(keep, np)
				}
			}
			m.NetworkPolicies = keep
		}, "no default-deny NetworkPolicy"},
		{"unknown secret", checkReferences, func(m *Manifests) {
			p := &m.Deployment(gw).Spec.Template.Spec
			for i := range p.Volumes {
				if p.Volumes[i].Secret != nil {
					p.Volumes[i].Secret.SecretName = "somebody-elses-secret"
					break
				}
			}
		}, "Secret somebody-elses-secret is neither rendered nor documented"},
		{"subPath", checkReferences, func(m *Manifests) {
			c := container(m, gw, "gateway")
			c.VolumeMounts[0].SubPath = "tls.crt"
		}, "with subPath"},
		{"missing configmap", checkReferences, func(m *Manifests) {
			container(m, origin, "origin").EnvFrom[0].ConfigMapRef.Name = "nope"
		}, "envFrom ConfigMap nope is not rendered"},
		{"service port differs", checkServicePorts, func(m *Manifests) {
			m.Service(gw).Spec.Ports[0].Port = 443
		}, "443 does not equal a container port"},
		{"token mounted", checkServiceAccountToken, func(m *Manifests) {
			yes := true
			m.Deployment(origin).Spec.Template.Spec.AutomountServiceAccountToken = &yes
		}, "automountServiceAccountToken is not false"},
		{"cache limit", checkGatewayCache, func(m *Manifests) {
			for i, v := range m.Deployment(gw).Spec.Template.Spec.Volumes {
				if v.Name == "cache" {
					q := resource.MustParse("1Gi")
					m.Deployment(gw).Spec.Template.Spec.Volumes[i].EmptyDir.SizeLimit = &q
				}
			}
		}, "is not above GATEWAY__CACHE__MAXSIZE"},
		{"label", checkLabels, func(m *Manifests) {
			delete(m.Deployment(gw).Labels, "app.kubernetes.io/instance")
		}, "no label app.kubernetes.io/instance"},
	}
	out, err := Template(t, []string{mirrorValues}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fresh := func() *Manifests {
				m, err := Decode([]byte(out))
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
			if got := failures(t, tc.check, fresh()); got != "" {
				t.Fatalf("the check fails on the unbroken render: %s", got)
			}
			m := fresh()
			tc.breakM(m)
			got := failures(t, tc.check, m)
			if !strings.Contains(got, tc.want) {
				t.Fatalf("broken render: check reported %q, want it to mention %q", got, tc.want)
			}
		})
	}
}
