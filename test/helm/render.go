// Package helm tests the Helm chart in charts/stella-mirror: it lints and
// renders the chart with `go tool helm` (pinned in go.mod), decodes every
// rendered document strictly into its Kubernetes API type (an unknown field
// or an unknown kind is an error), and checks policies on the result.
//
// The rendering and decoding helpers live in this non-test file so that
// other tests of the package (the kubelet-style runner that starts the
// rendered pods with the Docker engine) can build on them: Render returns
// the typed objects of one `helm template` run.
package helm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// Release and Namespace are the release name and namespace Render uses.
// The chart's full name for release "mirror" is "mirror-stella-mirror".
const (
	Release   = "mirror"
	Namespace = "stella-mirror"
)

// Fullname is the prefix of every object name Render produces.
const Fullname = Release + "-stella-mirror"

// ChartDir returns the absolute path of charts/stella-mirror in this
// repository (found from this source file's directory).
func ChartDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("helm: cannot locate the source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "charts", "stella-mirror")
}

// RepoRoot returns the absolute path of the repository root.
func RepoRoot() string {
	return filepath.Clean(filepath.Join(ChartDir(), "..", ".."))
}

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// goBinary finds the go command: PATH first, then GOROOT/bin.
func goBinary() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	for _, root := range []string{os.Getenv("GOROOT"), runtime.GOROOT()} {
		if root == "" {
			continue
		}
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no go command in PATH or GOROOT/bin")
}

// HelmBinary returns the path of the helm executable that `go tool helm`
// runs (built into Go's cache on first use, ~2 min once; later calls reuse
// it), so that each render is one process start rather than a go command.
// A machine without the go command ends t through testenv.Missing.
func HelmBinary(t testing.TB) string {
	t.Helper()
	helmOnce.Do(func() {
		goCmd, err := goBinary()
		if err != nil {
			helmErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goCmd, "tool", "-n", "helm")
		cmd.Dir = RepoRoot()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			helmErr = fmt.Errorf("go tool -n helm: %v: %s", err, stderr.String())
			return
		}
		helmPath = strings.TrimSpace(string(out))
		if _, err := os.Stat(helmPath); err != nil {
			helmErr = fmt.Errorf("go tool -n helm printed %q: %v", helmPath, err)
		}
	})
	if helmErr != nil {
		if strings.Contains(helmErr.Error(), "no go command") {
			testenv.Missing(t, "the go command (to build helm with `go tool helm`): %v", helmErr)
		}
		t.Fatalf("building helm: %v", helmErr)
	}
	return helmPath
}

// RunHelm runs helm with args (from the chart's directory's parent) and
// returns its stdout and stderr; err is non-nil when helm exits non-zero.
func RunHelm(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin := HelmBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = RepoRoot()
	// Keep helm away from the user's helm configuration and caches.
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		// No cluster: nothing here may reach one.
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"),
	)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// valueArgs turns values files and --set pairs into helm arguments (the
// pairs sorted, so runs are reproducible). Values files are relative to
// the repository root or absolute.
func valueArgs(valuesFiles []string, set map[string]string) []string {
	var args []string
	for _, f := range valuesFiles {
		args = append(args, "-f", f)
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--set", k+"="+set[k])
	}
	return args
}

// TemplateArgs are the arguments of `helm template` for Render.
func TemplateArgs(valuesFiles []string, set map[string]string) []string {
	args := []string{"template", Release, ChartDir(), "--namespace", Namespace}
	return append(args, valueArgs(valuesFiles, set)...)
}

// Template runs `helm template` and returns the rendered YAML stream,
// or its error output when helm fails.
func Template(t testing.TB, valuesFiles []string, set map[string]string) (string, error) {
	t.Helper()
	out, errOut, err := RunHelm(t, TemplateArgs(valuesFiles, set)...)
	if err != nil {
		return "", fmt.Errorf("helm template: %v: %s", err, errOut)
	}
	return out, nil
}

// Notes returns the NOTES.txt helm prints after an install, from
// `helm install --dry-run=client` (which contacts no cluster).
func Notes(t testing.TB, valuesFiles []string, set map[string]string) (string, error) {
	t.Helper()
	args := append([]string{"install", Release, ChartDir(), "--namespace", Namespace, "--dry-run=client"}, valueArgs(valuesFiles, set)...)
	out, errOut, err := RunHelm(t, args...)
	if err != nil {
		return "", fmt.Errorf("helm install --dry-run=client: %v: %s", err, errOut)
	}
	_, notes, ok := strings.Cut(out, "\nNOTES:\n")
	if !ok {
		return "", fmt.Errorf("helm install --dry-run=client printed no NOTES")
	}
	return notes, nil
}

// Lint runs `helm lint --strict` with the same values and returns its
// combined output and error.
func Lint(t testing.TB, valuesFiles []string, set map[string]string) (string, error) {
	t.Helper()
	args := append([]string{"lint", "--strict", ChartDir()}, valueArgs(valuesFiles, set)...)
	out, errOut, err := RunHelm(t, args...)
	return out + errOut, err
}

// Render runs `helm template` (release Release, namespace Namespace) with
// the values files and --set pairs, decodes the output strictly (Decode)
// and returns the objects; any failure ends t.
func Render(t testing.TB, valuesFiles []string, set map[string]string) *Manifests {
	t.Helper()
	out, err := Template(t, valuesFiles, set)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode([]byte(out))
	if err != nil {
		t.Fatalf("decoding the rendered chart: %v", err)
	}
	return m
}

// Object is one rendered document: its kind, name and the typed value (a
// pointer to a k8s.io/api type, a prometheus-operator type or Certificate).
type Object struct {
	APIVersion, Kind, Name string
	Value                  any
}

// Manifests holds the decoded objects of one render, in stream order
// (Objects) and by type.
type Manifests struct {
	Objects []Object

	ConfigMaps      []*corev1.ConfigMap
	Secrets         []*corev1.Secret
	Services        []*corev1.Service
	ServiceAccounts []*corev1.ServiceAccount
	PVCs            []*corev1.PersistentVolumeClaim
	Deployments     []*appsv1.Deployment
	CronJobs        []*batchv1.CronJob
	PDBs            []*policyv1.PodDisruptionBudget
	HPAs            []*autoscalingv2.HorizontalPodAutoscaler
	NetworkPolicies []*networkingv1.NetworkPolicy
	ServiceMonitors []*monitoringv1.ServiceMonitor
	PrometheusRules []*monitoringv1.PrometheusRule
	Certificates    []*Certificate
}

// SplitDocuments splits a YAML stream at its "---" lines and drops empty
// documents (comments only).
func SplitDocuments(stream []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if hasContent(cur.Bytes()) {
			docs = append(docs, slices.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	for _, line := range strings.SplitAfter(string(stream), "\n") {
		if strings.TrimRight(line, " \t\r\n") == "---" || strings.HasPrefix(line, "--- ") {
			flush()
			continue
		}
		cur.WriteString(line)
	}
	flush()
	return docs
}

func hasContent(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		s := strings.TrimSpace(line)
		if s != "" && !strings.HasPrefix(s, "#") {
			return true
		}
	}
	return false
}

// Decode splits a rendered stream and decodes every document strictly
// (sigs.k8s.io/yaml.UnmarshalStrict: YAML to JSON, then unknown or
// duplicate fields are errors) into the type its apiVersion and kind name.
// A kind not listed here is an error too.
func Decode(stream []byte) (*Manifests, error) {
	m := &Manifests{}
	for i, doc := range SplitDocuments(stream) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %v", i, err)
		}
		gvk := tm.APIVersion + " " + tm.Kind
		var v any
		switch gvk {
		case "v1 ConfigMap":
			o := &corev1.ConfigMap{}
			m.ConfigMaps, v = append(m.ConfigMaps, o), o
		case "v1 Secret":
			o := &corev1.Secret{}
			m.Secrets, v = append(m.Secrets, o), o
		case "v1 Service":
			o := &corev1.Service{}
			m.Services, v = append(m.Services, o), o
		case "v1 ServiceAccount":
			o := &corev1.ServiceAccount{}
			m.ServiceAccounts, v = append(m.ServiceAccounts, o), o
		case "v1 PersistentVolumeClaim":
			o := &corev1.PersistentVolumeClaim{}
			m.PVCs, v = append(m.PVCs, o), o
		case "apps/v1 Deployment":
			o := &appsv1.Deployment{}
			m.Deployments, v = append(m.Deployments, o), o
		case "batch/v1 CronJob":
			o := &batchv1.CronJob{}
			m.CronJobs, v = append(m.CronJobs, o), o
		case "policy/v1 PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			m.PDBs, v = append(m.PDBs, o), o
		case "autoscaling/v2 HorizontalPodAutoscaler":
			o := &autoscalingv2.HorizontalPodAutoscaler{}
			m.HPAs, v = append(m.HPAs, o), o
		case "networking.k8s.io/v1 NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			m.NetworkPolicies, v = append(m.NetworkPolicies, o), o
		case "monitoring.coreos.com/v1 ServiceMonitor":
			o := &monitoringv1.ServiceMonitor{}
			m.ServiceMonitors, v = append(m.ServiceMonitors, o), o
		case "monitoring.coreos.com/v1 PrometheusRule":
			o := &monitoringv1.PrometheusRule{}
			m.PrometheusRules, v = append(m.PrometheusRules, o), o
		case "cert-manager.io/v1 Certificate":
			o := &Certificate{}
			m.Certificates, v = append(m.Certificates, o), o
		default:
			return nil, fmt.Errorf("document %d: unknown apiVersion/kind %q (add it to test/helm Decode)", i, gvk)
		}
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			return nil, fmt.Errorf("document %d (%s): %v", i, gvk, err)
		}
		name := objectMeta(v).Name
		if name == "" {
			return nil, fmt.Errorf("document %d (%s): no metadata.name", i, gvk)
		}
		if c, ok := v.(*Certificate); ok {
			if err := c.Validate(); err != nil {
				return nil, fmt.Errorf("document %d (%s %s): %v", i, gvk, name, err)
			}
		}
		m.Objects = append(m.Objects, Object{APIVersion: tm.APIVersion, Kind: tm.Kind, Name: name, Value: v})
	}
	return m, nil
}

// objectMeta returns the metadata of a decoded object.
func objectMeta(v any) *metav1.ObjectMeta {
	if o, ok := v.(metav1.ObjectMetaAccessor); ok {
		return o.GetObjectMeta().(*metav1.ObjectMeta)
	}
	panic(fmt.Sprintf("helm: %T has no ObjectMeta", v))
}

// Count returns the number of rendered objects.
func (m *Manifests) Count() int { return len(m.Objects) }

// Kinds returns "Kind name" for every object, in stream order.
func (m *Manifests) Kinds() []string {
	var s []string
	for _, o := range m.Objects {
		s = append(s, o.Kind+" "+o.Name)
	}
	return s
}

// Has reports whether an object of kind and name was rendered.
func (m *Manifests) Has(kind, name string) bool {
	for _, o := range m.Objects {
		if o.Kind == kind && o.Name == name {
			return true
		}
	}
	return false
}

// Deployment returns the Deployment named name, or nil.
func (m *Manifests) Deployment(name string) *appsv1.Deployment {
	for _, d := range m.Deployments {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// CronJob returns the CronJob named name, or nil.
func (m *Manifests) CronJob(name string) *batchv1.CronJob {
	for _, c := range m.CronJobs {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// ConfigMap returns the ConfigMap named name, or nil.
func (m *Manifests) ConfigMap(name string) *corev1.ConfigMap {
	for _, c := range m.ConfigMaps {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Service returns the Service named name, or nil.
func (m *Manifests) Service(name string) *corev1.Service {
	for _, s := range m.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Workload is one pod template of a Deployment or a CronJob.
type Workload struct {
	// Kind is "Deployment" or "CronJob"; Name the object's name.
	Kind, Name string
	// Labels are the pod template's labels.
	Labels map[string]string
	// Pod is the pod template's spec (a pointer into the object).
	Pod *corev1.PodSpec
}

// Workloads returns the pod templates of every Deployment and CronJob.
func (m *Manifests) Workloads() []Workload {
	var w []Workload
	for _, d := range m.Deployments {
		w = append(w, Workload{Kind: "Deployment", Name: d.Name, Labels: d.Spec.Template.Labels, Pod: &d.Spec.Template.Spec})
	}
	for _, c := range m.CronJobs {
		tpl := &c.Spec.JobTemplate.Spec.Template
		w = append(w, Workload{Kind: "CronJob", Name: c.Name, Labels: tpl.Labels, Pod: &tpl.Spec})
	}
	return w
}

// ContainerEnv returns a container's environment as the kubelet would
// assemble it from the rendered objects: envFrom ConfigMaps first, then
// env entries with a literal value (entries with valueFrom are skipped;
// Secrets are not rendered). A referenced ConfigMap that was not rendered
// is an error.
func (m *Manifests) ContainerEnv(c *corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			continue
		}
		cm := m.ConfigMap(from.ConfigMapRef.Name)
		if cm == nil {
			return nil, fmt.Errorf("container %s: envFrom ConfigMap %q is not rendered", c.Name, from.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			env[from.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env, nil
}

// ReferencedSecrets returns, sorted, the names of the Secrets the rendered
// workloads reference (secret volumes, envFrom secretRef, secretKeyRef):
// the Secrets a test (or an operator) must create, since the chart renders
// none. Keys: charts/stella-mirror/README.md.
func (m *Manifests) ReferencedSecrets() []string {
	seen := map[string]bool{}
	for _, w := range m.Workloads() {
		for _, v := range w.Pod.Volumes {
			if v.Secret != nil {
				seen[v.Secret.SecretName] = true
			}
		}
		for _, c := range w.Pod.InitContainers {
			addSecretRefs(seen, &c)
		}
		for _, c := range w.Pod.Containers {
			addSecretRefs(seen, &c)
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func addSecretRefs(seen map[string]bool, c *corev1.Container) {
	for _, f := range c.EnvFrom {
		if f.SecretRef != nil {
			seen[f.SecretRef.Name] = true
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			seen[e.ValueFrom.SecretKeyRef.Name] = true
		}
	}
}

// Certificate mirrors the fields of cert-manager's cert-manager.io/v1
// Certificate that the chart may render (cert-manager's Go types are not a
// dependency of this module). Field names and JSON tags follow
// github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1; strict
// decoding into it rejects any field the chart writes that cert-manager
// does not know, within this subset.
type Certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              CertificateSpec `json:"spec"`
}

// CertificateSpec is the subset of cert-manager's CertificateSpec.
type CertificateSpec struct {
	SecretName  string                 `json:"secretName"`
	CommonName  string                 `json:"commonName,omitempty"`
	DNSNames    []string               `json:"dnsNames,omitempty"`
	IssuerRef   IssuerReference        `json:"issuerRef"`
	Duration    *metav1.Duration       `json:"duration,omitempty"`
	RenewBefore *metav1.Duration       `json:"renewBefore,omitempty"`
	PrivateKey  *CertificatePrivateKey `json:"privateKey,omitempty"`
	Usages      []string               `json:"usages,omitempty"`
}

// IssuerReference is cert-manager's ObjectReference of an issuer.
type IssuerReference struct {
	Name  string `json:"name"`
	Kind  string `json:"kind,omitempty"`
	Group string `json:"group,omitempty"`
}

// CertificatePrivateKey is cert-manager's CertificatePrivateKey.
type CertificatePrivateKey struct {
	RotationPolicy string `json:"rotationPolicy,omitempty"`
	Encoding       string `json:"encoding,omitempty"`
	Algorithm      string `json:"algorithm,omitempty"`
	Size           int    `json:"size,omitempty"`
}

// certUsages are cert-manager's KeyUsage values.
var certUsages = []string{"signing", "digital signature", "content commitment", "key encipherment",
	"key agreement", "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only",
	"any", "server auth", "client auth", "code signing", "email protection", "s/mime",
	"ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
	"microsoft sgc", "netscape sgc"}

// Validate checks the enumerations and required fields cert-manager's
// webhook checks for this subset.
func (c *Certificate) Validate() error {
	s := c.Spec
	var errs []error
	if s.SecretName == "" {
		errs = append(errs, errors.New("spec.secretName is required"))
	}
	if s.CommonName == "" && len(s.DNSNames) == 0 {
		errs = append(errs, errors.New("spec: at least one of commonName and dnsNames is required"))
	}
	if s.IssuerRef.Name == "" {
		errs = append(errs, errors.New("spec.issuerRef.name is required"))
	}
	if k := s.IssuerRef.Kind; k != "" && k != "Issuer" && k != "ClusterIssuer" && s.IssuerRef.Group == "cert-manager.io" {
		errs = append(errs, fmt.Errorf("spec.issuerRef.kind %q: Issuer or ClusterIssuer", k))
	}
	if pk := s.PrivateKey; pk != nil {
		if !slices.Contains([]string{"", "RSA", "ECDSA", "Ed25519"}, pk.Algorithm) {
			errs = append(errs, fmt.Errorf("spec.privateKey.algorithm %q", pk.Algorithm))
		}
		if !slices.Contains([]string{"", "Never", "Always"}, pk.RotationPolicy) {
			errs = append(errs, fmt.Errorf("spec.privateKey.rotationPolicy %q", pk.RotationPolicy))
		}
		if !slices.Contains([]string{"", "PKCS1", "PKCS8"}, pk.Encoding) {
			errs = append(errs, fmt.Errorf("spec.privateKey.encoding %q", pk.Encoding))
		}
		if pk.Algorithm == "ECDSA" && !slices.Contains([]int{0, 256, 384, 521}, pk.Size) {
			errs = append(errs, fmt.Errorf("spec.privateKey.size %d for ECDSA: 256, 384 or 521", pk.Size))
		}
	}
	for _, u := range s.Usages {
		if !slices.Contains(certUsages, u) {
			errs = append(errs, fmt.Errorf("spec.usages: unknown usage %q", u))
		}
	}
	if s.Duration != nil && s.RenewBefore != nil && s.RenewBefore.Duration >= s.Duration.Duration {
		errs = append(errs, errors.New("spec.renewBefore must be shorter than spec.duration"))
	}
	return errors.Join(errs...)
}
