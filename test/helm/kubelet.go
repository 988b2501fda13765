package helm

// A Docker-based stand-in for the kubelet: it starts the chart's rendered
// pods with the Docker engine the way a kubelet would (same image, command,
// args, env, bind-mounted volumes, security context, pod network), so the
// chart is known to start, not just to parse.
//
// It implements exactly the subset of Kubernetes the chart is allowed to
// use, and refuses loudly everything else (an allowlist of fields per
// object), so the chart cannot come to depend on a feature this test does
// not check:
//   - pods: containers; initContainers (in order, to completion; one with
//     restartPolicy Always is a native sidecar, kept running); volumes
//     configMap and secret (items, defaultMode; one file per key, laid
//     out as the kubelet's atomic writer does: name -> ..data/name,
//     ..data -> a timestamped folder),
//     emptyDir (medium Memory: a tmpfs Docker volume with the sizeLimit),
//     persistentVolumeClaim (a host directory shared by every pod that
//     mounts the claim); enableServiceLinks and
//     automountServiceAccountToken must be false;
//   - securityContext: runAsUser/runAsGroup -> --user, fsGroup ->
//     --group-add and the volumes' group (setgid, group rw, as the
//     kubelet's volume ownership), runAsNonRoot checked like the kubelet,
//     readOnlyRootFilesystem -> --read-only, capabilities.drop ->
//     --cap-drop, allowPrivilegeEscalation false -> no-new-privileges,
//     seccompProfile RuntimeDefault (none: unconfined, the kubelet's
//     default);
//   - containers: image, command/args (-> --entrypoint and arguments),
//     env (value, valueFrom secretKeyRef/configMapKeyRef/fieldRef
//     metadata.name, metadata.namespace, status.podIP), envFrom, $(VAR)
//     expansion, volumeMounts (readOnly, subPath), ports, httpGet probes
//     (polled from the host at the pod's address), resources (limits ->
//     --memory, --cpus);
//   - Services: a network alias per selecting Service (name, name.ns,
//     name.ns.svc, name.ns.svc.cluster.local) on the pod's pause
//     container; every port must equal its targetPort (no kube-proxy).
//
// Scheduling fields (affinity, topologySpreadConstraints, nodeSelector,
// tolerations, priorityClassName) and serviceAccountName/imagePullSecrets
// are accepted and ignored; probe timings (periods, thresholds) and
// emptyDir sizeLimit on disk are not enforced; a LoadBalancer or NodePort
// Service is reached by its in-cluster name only.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// Kubelet runs pods as Docker containers on one user-defined Docker network.
// Create it with NewKubelet; fill ConfigMaps, Secrets, Services and Claims
// before starting pods. Every container, volume and network it creates is
// removed in the test's cleanup.
type Kubelet struct {
	// Namespace is the namespace of the pods, Services and ConfigMaps.
	Namespace string
	// Network is the Docker network the pods join; NewKubelet creates it.
	Network string
	// PodCIDR is the range the pods' addresses come from (the upper half
	// of Network's /24); HostIP, the host's address on Network, is not in it.
	PodCIDR, HostIP string
	// ConfigMaps are the rendered ConfigMaps by name (Data and BinaryData).
	ConfigMaps map[string]*corev1.ConfigMap
	// Secrets are the test's Secrets: name -> key -> value.
	Secrets map[string]map[string][]byte
	// Services give the pods they select a network alias per Service:
	// <name>, <name>.<ns>, <name>.<ns>.svc and <name>.<ns>.svc.cluster.local.
	Services []corev1.Service
	// Claims are the PersistentVolumeClaims that exist (by name); a pod
	// naming another claim is refused (a real one would stay Pending).
	Claims map[string]bool
	// Timeout bounds a pod's start until ready and a job's run (default 60s).
	Timeout time.Duration

	t          testing.TB
	prefix     string
	root       string
	pauseImage string
	// imageUser returns an image's configured USER (runAsNonRoot checks it
	// when no runAsUser is set); docker image inspect by default.
	imageUser func(image string) (string, error)

	mu        sync.Mutex
	claimDirs map[string]string
	pods      int
}

// Pod is a pod to run: what a controller would create from a Deployment's
// or a CronJob's pod template.
type Pod struct {
	Name      string
	Namespace string // default: the Kubelet's
	Labels    map[string]string
	Spec      corev1.PodSpec
}

// PodFromDeployment returns replica i of a Deployment's pods, named like the
// ReplicaSet controller names them (<deployment>-<hash>-<i>).
func PodFromDeployment(d *appsv1.Deployment, i int) Pod {
	return Pod{Name: fmt.Sprintf("%s-5d8f7c-%d", d.Name, i), Namespace: d.Namespace,
		Labels: d.Spec.Template.Labels, Spec: *d.Spec.Template.Spec.DeepCopy()}
}

// PodFromCronJob returns the pod of one run of a CronJob's job.
func PodFromCronJob(cj *batchv1.CronJob) Pod {
	tpl := cj.Spec.JobTemplate.Spec.Template
	return Pod{Name: cj.Name + "-29000000-x7k2p", Namespace: cj.Namespace,
		Labels: tpl.Labels, Spec: *tpl.Spec.DeepCopy()}
}

// RunningPod is a started pod.
type RunningPod struct {
	// Name is the pod's name (and the hostname of its containers).
	Name string
	// IP is the pod's address on the Kubelet's network (status.podIP).
	IP string
	// Containers maps a container's name (init containers included) to
	// its Docker container name.
	Containers map[string]string
	// Volumes maps a volume's name to its host directory (a Docker volume
	// name for an emptyDir with medium Memory).
	Volumes map[string]string

	pause    string
	finished map[string]bool // init containers that ran to completion (Docker names)
}

// StopPod deletes a pod at once (docker rm -f: no grace period): its
// containers and its pause container. Its emptyDirs stay on disk until
// the test ends; claims are shared and stay.
func (k *Kubelet) StopPod(t testing.TB, rp *RunningPod) {
	t.Helper()
	names := make([]string, 0, len(rp.Containers)+1)
	for _, n := range rp.Containers {
		names = append(names, n)
	}
	if _, err := dockerRun(2*time.Minute, append([]string{"rm", "-f"}, append(names, rp.pause)...)...); err != nil {
		t.Fatal(err)
	}
}

// JobResult is how a run-to-completion pod ended.
type JobResult struct {
	// ExitCode is the first non-zero exit code of the pod's containers,
	// else 0.
	ExitCode int
	// Logs holds each container's output (stdout and stderr) by name.
	Logs map[string]string
	Pod  *RunningPod
}

// NewKubelet creates the Docker network and a FROM-scratch pause image (it
// holds each pod's network namespace, as the kubelet's pause container
// does), both named uniquely after the test, and removes everything the
// Kubelet creates when the test ends. The caller checks for Docker first.
func NewKubelet(t testing.TB, namespace string) *Kubelet {
	t.Helper()
	k := newKubelet(t, namespace)
	k.pauseImage = buildPauseImage(t, k.prefix)
	k.Network = k.prefix + "-net"
	k.createNetwork()
	t.Cleanup(func() {
		// Containers first (they hold the network), then volumes and the network.
		ids := k.dockerQuiet("ps", "-aq", "--filter", "label="+labelKey+"="+k.prefix)
		if ids = strings.TrimSpace(ids); ids != "" {
			k.dockerQuiet(append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...)
		}
		vols := k.dockerQuiet("volume", "ls", "-q", "--filter", "label="+labelKey+"="+k.prefix)
		if vols = strings.TrimSpace(vols); vols != "" {
			k.dockerQuiet(append([]string{"volume", "rm", "-f"}, strings.Fields(vols)...)...)
		}
		k.dockerQuiet("network", "rm", k.Network)
	})
	return k
}

// createNetwork creates the pods' network on a random 10.213.N.0/24 that
// overlaps no address of this host: the bridge (the host, as seen from the
// pods) is .1 and the pods get addresses from the upper half, PodCIDR, as
// they would from a cluster's pod CIDR that excludes the nodes.
func (k *Kubelet) createNetwork() {
	k.t.Helper()
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		var b [1]byte
		if _, err := rand.Read(b[:]); err != nil {
			k.t.Fatal(err)
		}
		subnet := fmt.Sprintf("10.213.%d.0/24", b[0])
		if hostUses(subnet) {
			continue
		}
		podCIDR := fmt.Sprintf("10.213.%d.128/25", b[0])
		_, lastErr = dockerRun(time.Minute, "network", "create", "--label", labelKey+"="+k.prefix,
			"--subnet", subnet, "--ip-range", podCIDR, "--gateway", fmt.Sprintf("10.213.%d.1", b[0]), k.Network)
		if lastErr == nil {
			k.PodCIDR, k.HostIP = podCIDR, fmt.Sprintf("10.213.%d.1", b[0])
			return
		}
		if !strings.Contains(lastErr.Error(), "overlaps") {
			break
		}
	}
	k.t.Fatalf("creating the pods' network: %v", lastErr)
}

// hostUses reports whether a CIDR overlaps a network of this host's
// interfaces.
func hostUses(cidr string) bool {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true
	}
	for _, a := range addrs {
		if in, ok := a.(*net.IPNet); ok && (in.Contains(n.IP) || n.Contains(in.IP)) {
			return true
		}
	}
	return false
}

// labelKey labels every Docker object a Kubelet creates (value: its prefix),
// so cleanup removes exactly those.
const labelKey = "stella-mirror.test.kubelet"

func newKubelet(t testing.TB, namespace string) *Kubelet {
	// Volumes get the kubelet's ownership (root-owned files, group fsGroup).
	testenv.Root(t, "the kubelet emulator (it gives volumes the kubelet's ownership: chown to fsGroup)")
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	if len(name) > 30 {
		name = name[:30]
	}
	k := &Kubelet{Namespace: namespace, t: t, root: t.TempDir(),
		prefix:     "kubelet-" + strings.Trim(name, "-") + "-" + hex.EncodeToString(rnd[:]),
		ConfigMaps: map[string]*corev1.ConfigMap{}, Secrets: map[string]map[string][]byte{},
		Claims: map[string]bool{}, claimDirs: map[string]string{}, Timeout: 60 * time.Second}
	k.imageUser = func(image string) (string, error) {
		out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Config.User}}", image).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("docker image inspect %s: %v: %s", image, err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	return k
}

// pauseSource is the pause program: it holds a pod's network namespace and
// exits on SIGTERM/SIGINT.
const pauseSource = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
`

// buildPauseImage builds a FROM scratch image holding the pause program.
func buildPauseImage(t testing.TB, prefix string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(pauseSource), 0o644); err != nil {
		t.Fatal(err)
	}
	ctxDir := filepath.Join(dir, "ctx")
	if err := os.Mkdir(ctxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module pause\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	goCmd, err := goBinary()
	if err != nil {
		testenv.Missing(t, "the go command (to build the pause program): %v", err)
	}
	build := exec.Command(goCmd, "build", "-trimpath", "-o", filepath.Join(ctxDir, "pause"), ".")
	build.Dir = dir
	// A module of its own, built statically, whatever the caller's settings.
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=on", "GOFLAGS=", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the pause program: %v\n%s", err, out)
	}
	df := "FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT [\"/pause\"]\n"
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	image := prefix + "-pause:test"
	cmd := exec.Command("docker", "build", "--pull=false", "-q", "--label", labelKey+"="+prefix, "-t", image, ctxDir)
	if os.Getenv("DOCKER_BUILDKIT") == "" {
		// As compose/build-image.sh: BuildKit needs the buildx plugin;
		// without it the classic builder does the same job.
		kit := "0"
		if exec.Command("docker", "buildx", "version").Run() == nil {
			kit = "1"
		}
		cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT="+kit)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the pause image: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })
	return image
}

// dockerQuiet runs the Docker CLI for cleanup, logging an error.
func (k *Kubelet) dockerQuiet(args ...string) string {
	out, err := dockerRun(time.Minute, args...)
	if err != nil {
		k.t.Logf("cleanup: %v", err)
	}
	return out
}

func dockerRun(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// --- refusals: the contract's subset of the pod API, nothing else -------

// allowed lists, per object, the JSON fields the emulator implements (or
// may ignore because they only matter to a scheduler or an API server).
var allowed = map[string][]string{
	"pod": {"containers", "initContainers", "volumes", "securityContext", "restartPolicy",
		"terminationGracePeriodSeconds", "serviceAccountName", "automountServiceAccountToken",
		"enableServiceLinks", "affinity", "topologySpreadConstraints", "nodeSelector",
		"tolerations", "priorityClassName", "imagePullSecrets"},
	// fsGroupChangePolicy only decides when the kubelet re-owns a volume;
	// the emulator's volumes are new, so it always owns them (as both
	// policies would).
	"podSecurityContext": {"runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "fsGroupChangePolicy", "seccompProfile"},
	"container": {"name", "image", "imagePullPolicy", "command", "args", "env", "envFrom",
		"volumeMounts", "ports", "readinessProbe", "livenessProbe", "startupProbe",
		"securityContext", "resources", "restartPolicy"},
	"securityContext": {"runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem",
		"allowPrivilegeEscalation", "capabilities", "seccompProfile", "privileged"},
	"capabilities": {"drop"},
	"probe":        {"httpGet", "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold"},
	"httpGet":      {"path", "port", "scheme"},
	"volume":       {"name", "configMap", "secret", "emptyDir", "persistentVolumeClaim"},
	"volumeMount":  {"name", "mountPath", "readOnly", "subPath"},
	"env":          {"name", "value", "valueFrom"},
	"valueFrom":    {"secretKeyRef", "configMapKeyRef", "fieldRef"},
	"envFrom":      {"configMapRef", "secretRef", "prefix"},
	"port":         {"name", "containerPort", "protocol"},
	"resources":    {"requests", "limits"},
	"configMap":    {"name", "items", "defaultMode", "optional"},
	"secret":       {"secretName", "items", "defaultMode", "optional"},
	"emptyDir":     {"medium", "sizeLimit"},
	"claim":        {"claimName", "readOnly"},
	"keyToPath":    {"key", "path", "mode"},
	"servicePort":  {"name", "port", "targetPort", "protocol"},
	"serviceSpec": {"selector", "ports", "type", "clusterIP", "sessionAffinity",
		// External exposure (a LoadBalancer's or a NodePort's) is not
		// emulated: pods reach a Service by its in-cluster name only.
		"externalTrafficPolicy", "loadBalancerSourceRanges"},
}

// checkFields refuses a field of v (marshalled to JSON) that is not in
// allowed[kind]; where names the object in the error.
func checkFields(kind, where string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	var bad []string
	for f := range m {
		if !slices.Contains(allowed[kind], f) {
			bad = append(bad, f)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("%s: %s not emulated (not in the chart contract): refusing to run", where, strings.Join(bad, ", "))
	}
	return nil
}

// validatePod refuses a pod that uses anything the contract does not name.
func validatePod(p Pod) error {
	s := p.Spec
	where := "pod " + p.Name
	if err := checkFields("pod", where, s); err != nil {
		return err
	}
	if len(s.Containers) == 0 {
		return fmt.Errorf("%s: no containers", where)
	}
	// Two kubelet defaults that inject what the emulator does not: a
	// <SVC>_SERVICE_HOST/_PORT variable set per Service, and a
	// ServiceAccount token volume. A pod must turn both off.
	if s.EnableServiceLinks == nil || *s.EnableServiceLinks {
		return fmt.Errorf("%s: enableServiceLinks unset or true: the kubelet would inject <SERVICE>_SERVICE_HOST/_PORT variables per Service; not emulated (set enableServiceLinks: false)", where)
	}
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		return fmt.Errorf("%s: automountServiceAccountToken unset or true: the kubelet would mount a token at /var/run/secrets/kubernetes.io/serviceaccount; not emulated (set it false)", where)
	}
	if sc := s.SecurityContext; sc != nil {
		if err := checkFields("podSecurityContext", where+" securityContext", sc); err != nil {
			return err
		}
		if err := checkSeccomp(where, sc.SeccompProfile); err != nil {
			return err
		}
	}
	switch s.RestartPolicy {
	case "", corev1.RestartPolicyAlways, corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure:
	default:
		return fmt.Errorf("%s: restartPolicy %q", where, s.RestartPolicy)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range s.Volumes {
		vw := where + " volume " + v.Name
		if err := checkFields("volume", vw, v); err != nil {
			return fmt.Errorf("%w (volume kinds emulated: configMap, secret, emptyDir, persistentVolumeClaim)", err)
		}
		kinds := 0
		switch {
		case v.ConfigMap != nil:
			kinds++
			if err := checkFields("configMap", vw, v.ConfigMap); err != nil {
				return err
			}
			if err := checkItems(vw, v.ConfigMap.Items); err != nil {
				return err
			}
		case v.Secret != nil:
			kinds++
			if err := checkFields("secret", vw, v.Secret); err != nil {
				return err
			}
			if err := checkItems(vw, v.Secret.Items); err != nil {
				return err
			}
		case v.EmptyDir != nil:
			kinds++
			if err := checkFields("emptyDir", vw, v.EmptyDir); err != nil {
				return err
			}
			if m := v.EmptyDir.Medium; m != "" && m != corev1.StorageMediumMemory {
				return fmt.Errorf("%s: emptyDir medium %q not emulated", vw, m)
			}
		case v.PersistentVolumeClaim != nil:
			kinds++
			if err := checkFields("claim", vw, v.PersistentVolumeClaim); err != nil {
				return err
			}
		}
		if kinds != 1 {
			return fmt.Errorf("%s: no volume source (emulated: configMap, secret, emptyDir, persistentVolumeClaim)", vw)
		}
		if _, dup := vols[v.Name]; dup {
			return fmt.Errorf("%s: duplicate volume name", vw)
		}
		vols[v.Name] = v
	}
	names := map[string]bool{}
	all := append(slices.Clone(s.InitContainers), s.Containers...)
	for i, c := range all {
		init := i < len(s.InitContainers)
		cw := where + " container " + c.Name
		if init {
			cw = where + " initContainer " + c.Name
		}
		if names[c.Name] || c.Name == "" {
			return fmt.Errorf("%s: empty or duplicate container name", cw)
		}
		names[c.Name] = true
		if err := validateContainer(cw, c, init, vols); err != nil {
			return err
		}
	}
	return nil
}

func checkItems(where string, items []corev1.KeyToPath) error {
	for _, it := range items {
		if err := checkFields("keyToPath", where+" item "+it.Key, it); err != nil {
			return err
		}
		if it.Path == "" || path.IsAbs(it.Path) || slices.Contains(strings.Split(it.Path, "/"), "..") {
			return fmt.Errorf("%s: item path %q must be relative without ..", where, it.Path)
		}
	}
	return nil
}

func checkSeccomp(where string, p *corev1.SeccompProfile) error {
	if p != nil && p.Type != corev1.SeccompProfileTypeRuntimeDefault {
		return fmt.Errorf("%s: seccompProfile %q not emulated (only RuntimeDefault)", where, p.Type)
	}
	return nil
}

func validateContainer(where string, c corev1.Container, init bool, vols map[string]corev1.Volume) error {
	if err := checkFields("container", where, c); err != nil {
		return err
	}
	if c.Image == "" {
		return fmt.Errorf("%s: no image", where)
	}
	if c.RestartPolicy != nil && (!init || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
		return fmt.Errorf("%s: restartPolicy %q is only emulated on an initContainer as Always (a native sidecar)", where, *c.RestartPolicy)
	}
	sidecar := init && c.RestartPolicy != nil
	if init && !sidecar && (c.ReadinessProbe != nil || c.LivenessProbe != nil || c.StartupProbe != nil) {
		return fmt.Errorf("%s: probes on an init container (Kubernetes rejects them)", where)
	}
	if sc := c.SecurityContext; sc != nil {
		if err := checkFields("securityContext", where+" securityContext", sc); err != nil {
			return err
		}
		if sc.Privileged != nil && *sc.Privileged {
			return fmt.Errorf("%s: privileged not emulated", where)
		}
		if cp := sc.Capabilities; cp != nil {
			if err := checkFields("capabilities", where+" capabilities", cp); err != nil {
				return err
			}
		}
		if err := checkSeccomp(where, sc.SeccompProfile); err != nil {
			return err
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		if err := checkFields("port", where+" port", p); err != nil {
			return err
		}
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			return fmt.Errorf("%s: port protocol %s not emulated", where, p.Protocol)
		}
		if p.Name != "" {
			ports[p.Name] = p.ContainerPort
		}
	}
	for kind, pr := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe} {
		if pr == nil {
			continue
		}
		if err := checkFields("probe", where+" "+kind, pr); err != nil {
			return fmt.Errorf("%w (only httpGet probes are emulated)", err)
		}
		if pr.HTTPGet == nil {
			return fmt.Errorf("%s %s: only httpGet probes are emulated", where, kind)
		}
		if err := checkFields("httpGet", where+" "+kind+" httpGet", pr.HTTPGet); err != nil {
			return err
		}
		if _, err := probePort(c, pr.HTTPGet.Port); err != nil {
			return fmt.Errorf("%s %s: %v", where, kind, err)
		}
	}
	if r := c.Resources; len(r.Limits)+len(r.Requests) > 0 {
		if err := checkFields("resources", where+" resources", r); err != nil {
			return err
		}
		for _, l := range []corev1.ResourceList{r.Limits, r.Requests} {
			for n := range l {
				if n != corev1.ResourceCPU && n != corev1.ResourceMemory && n != corev1.ResourceEphemeralStorage {
					return fmt.Errorf("%s: resource %s not emulated", where, n)
				}
			}
		}
	}
	for _, e := range c.Env {
		if err := checkFields("env", where+" env "+e.Name, e); err != nil {
			return err
		}
		if vf := e.ValueFrom; vf != nil {
			if err := checkFields("valueFrom", where+" env "+e.Name+" valueFrom", vf); err != nil {
				return err
			}
			if f := vf.FieldRef; f != nil && !slices.Contains([]string{"metadata.name", "metadata.namespace", "status.podIP"}, f.FieldPath) {
				return fmt.Errorf("%s env %s: fieldRef %s not emulated (metadata.name, metadata.namespace, status.podIP)", where, e.Name, f.FieldPath)
			}
		}
	}
	for _, e := range c.EnvFrom {
		if err := checkFields("envFrom", where+" envFrom", e); err != nil {
			return err
		}
	}
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mw := where + " volumeMount " + m.MountPath
		if err := checkFields("volumeMount", mw, m); err != nil {
			return err
		}
		v, ok := vols[m.Name]
		if !ok {
			return fmt.Errorf("%s: no volume %q in the pod", mw, m.Name)
		}
		if !path.IsAbs(m.MountPath) || strings.ContainsAny(m.MountPath, ",\n") || mounts[path.Clean(m.MountPath)] {
			return fmt.Errorf("%s: mountPath must be absolute, unique and without commas", mw)
		}
		mounts[path.Clean(m.MountPath)] = true
		if m.SubPath != "" {
			if path.IsAbs(m.SubPath) || slices.Contains(strings.Split(m.SubPath, "/"), "..") {
				return fmt.Errorf("%s: subPath %q must be relative without ..", mw, m.SubPath)
			}
			if v.EmptyDir != nil && v.EmptyDir.Medium == corev1.StorageMediumMemory {
				return fmt.Errorf("%s: subPath of a medium Memory emptyDir not emulated", mw)
			}
		}
	}
	return nil
}

// probePort resolves a probe's port (a number or a container port's name).
func probePort(c corev1.Container, p intstr.IntOrString) (int32, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 {
			return 0, fmt.Errorf("port %d", p.IntVal)
		}
		return p.IntVal, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("port name %q names no container port", p.StrVal)
}

// serviceAliases returns the network aliases of a pod: one set per Service
// of its namespace whose selector matches its labels. A selected pod's
// Service must map each port to the same number (port == targetPort): the
// alias resolves to the pod itself, there is no kube-proxy to translate.
func (k *Kubelet) serviceAliases(p Pod) ([]string, error) {
	ns := p.Namespace
	var aliases []string
	for _, svc := range k.Services {
		sns := svc.Namespace
		if sns == "" {
			sns = k.Namespace
		}
		if sns != ns || len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(p.Labels)) {
			continue
		}
		where := "service " + svc.Name
		if err := checkFields("serviceSpec", where, svc.Spec); err != nil {
			return nil, err
		}
		switch svc.Spec.Type {
		case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort:
		default:
			return nil, fmt.Errorf("%s: type %s not emulated (ClusterIP; LoadBalancer and NodePort by their in-cluster name only)", where, svc.Spec.Type)
		}
		for _, sp := range svc.Spec.Ports {
			if err := checkFields("servicePort", where+" port", sp); err != nil {
				return nil, err
			}
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				return nil, fmt.Errorf("%s: protocol %s not emulated", where, sp.Protocol)
			}
			target := sp.TargetPort
			var n int32
			switch {
			case target.Type == intstr.Int && target.IntVal == 0:
				n = sp.Port // targetPort defaults to port
			case target.Type == intstr.Int:
				n = target.IntVal
			default:
				found := false
				for _, c := range p.Spec.Containers {
					for _, cp := range c.Ports {
						if cp.Name == target.StrVal {
							n, found = cp.ContainerPort, true
						}
					}
				}
				if !found {
					return nil, fmt.Errorf("%s: targetPort %q names no container port of pod %s", where, target.StrVal, p.Name)
				}
			}
			if n != sp.Port {
				return nil, fmt.Errorf("%s: port %d != targetPort %d: not emulated (the contract wants port == targetPort)", where, sp.Port, n)
			}
		}
		aliases = append(aliases, svc.Name, svc.Name+"."+ns, svc.Name+"."+ns+".svc", svc.Name+"."+ns+".svc.cluster.local")
	}
	return aliases, nil
}

// --- volumes --------------------------------------------------------------

// hostVolume is where a pod volume lives on the host.
type hostVolume struct {
	dir      string // host directory (bind mounts)
	docker   string // Docker volume name (medium Memory emptyDir)
	readOnly bool   // persistentVolumeClaim.readOnly
	tmpfsOpt string // for a Docker volume: its mount options
}

// prepareVolumes writes a pod's configMap and secret volumes as one file per
// key, creates its emptyDirs and finds (or creates) its claims' shared
// directories, with the ownership and modes the kubelet gives them: files
// root-owned, group fsGroup with group read (write for emptyDir and
// claims), directories setgid. Docker volumes (medium Memory) are only
// named here; startPod creates them.
func (k *Kubelet) prepareVolumes(p Pod, podDir string) (map[string]hostVolume, error) {
	var fsGroup *int64
	if sc := p.Spec.SecurityContext; sc != nil {
		fsGroup = sc.FSGroup
	}
	out := map[string]hostVolume{}
	for _, v := range p.Spec.Volumes {
		dir := filepath.Join(podDir, "volumes", v.Name)
		switch {
		case v.ConfigMap != nil:
			var data map[string][]byte
			if cm, ok := k.ConfigMaps[v.ConfigMap.Name]; ok {
				data = map[string][]byte{}
				for key, val := range cm.Data {
					data[key] = []byte(val)
				}
				for key, val := range cm.BinaryData {
					data[key] = val
				}
			}
			if err := writeKeyVolume(dir, "configMap "+v.ConfigMap.Name, data, v.ConfigMap.Items, v.ConfigMap.DefaultMode, v.ConfigMap.Optional, fsGroup); err != nil {
				return nil, fmt.Errorf("pod %s volume %s: %w", p.Name, v.Name, err)
			}
			out[v.Name] = hostVolume{dir: dir}
		case v.Secret != nil:
			if err := writeKeyVolume(dir, "secret "+v.Secret.SecretName, k.Secrets[v.Secret.SecretName], v.Secret.Items, v.Secret.DefaultMode, v.Secret.Optional, fsGroup); err != nil {
				return nil, fmt.Errorf("pod %s volume %s: %w", p.Name, v.Name, err)
			}
			out[v.Name] = hostVolume{dir: dir}
		case v.EmptyDir != nil && v.EmptyDir.Medium == corev1.StorageMediumMemory:
			opt := "mode=0777"
			if fsGroup != nil {
				opt = fmt.Sprintf("mode=02777,gid=%d", *fsGroup)
			}
			if q := v.EmptyDir.SizeLimit; q != nil {
				opt += fmt.Sprintf(",size=%d", q.Value())
			}
			out[v.Name] = hostVolume{docker: fmt.Sprintf("%s-%s-%s", k.prefix, p.Name, v.Name), tmpfsOpt: opt}
		case v.EmptyDir != nil:
			if err := makeSharedDir(dir, 0o777, fsGroup); err != nil {
				return nil, err
			}
			out[v.Name] = hostVolume{dir: dir}
		case v.PersistentVolumeClaim != nil:
			dir, err := k.claimDir(v.PersistentVolumeClaim.ClaimName, fsGroup)
			if err != nil {
				return nil, fmt.Errorf("pod %s volume %s: %w", p.Name, v.Name, err)
			}
			out[v.Name] = hostVolume{dir: dir, readOnly: v.PersistentVolumeClaim.ReadOnly}
		}
	}
	return out, nil
}

// writeKeyVolume writes a configMap or secret volume: every key (or the
// listed items) as a file.
func writeKeyVolume(dir, what string, data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32, optional *bool, fsGroup *int64) error {
	opt := optional != nil && *optional
	if data == nil && !opt {
		return fmt.Errorf("%s does not exist (the pod would stay ContainerCreating)", what)
	}
	mode := fs.FileMode(0o644)
	if defaultMode != nil {
		mode = fs.FileMode(*defaultMode)
	}
	if mode&^0o777 != 0 {
		return fmt.Errorf("%s: defaultMode %o", what, mode)
	}
	files := map[string]fs.FileMode{}
	content := map[string][]byte{}
	if len(items) == 0 {
		for key, val := range data {
			files[key], content[key] = mode, val
		}
	} else {
		for _, it := range items {
			val, ok := data[it.Key]
			if !ok {
				if opt {
					continue
				}
				return fmt.Errorf("%s has no key %q", what, it.Key)
			}
			m := mode
			if it.Mode != nil {
				m = fs.FileMode(*it.Mode)
			}
			files[it.Path], content[it.Path] = m, val
		}
	}
	if err := makeSharedDir(dir, 0o755, fsGroup); err != nil {
		return err
	}
	// The kubelet's atomic writer: the files in a timestamped folder,
	// ..data a symlink to it, and each top-level name a symlink into ..data
	// (what the binary follows, and what an update swaps).
	const ts = "..2026_12_07_23_00_00.000000001"
	if err := makeSharedDir(filepath.Join(dir, ts), 0o755, fsGroup); err != nil {
		return err
	}
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	top := map[string]bool{}
	for name, m := range files {
		first, _, _ := strings.Cut(name, "/")
		if !top[first] {
			top[first] = true
			if err := os.Symlink(path.Join("..data", first), filepath.Join(dir, first)); err != nil {
				return err
			}
		}
		f := filepath.Join(dir, ts, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, content[name], 0o600); err != nil {
			return err
		}
		gid := 0
		if fsGroup != nil {
			gid, m = int(*fsGroup), m|0o440
		}
		if err := os.Chown(f, 0, gid); err != nil {
			return err
		}
		if err := os.Chmod(f, m); err != nil {
			return err
		}
	}
	return nil
}

// makeSharedDir creates dir with mode perm, and with fsGroup applies the
// kubelet's volume ownership: group fsGroup, setgid, group rwx.
func makeSharedDir(dir string, perm fs.FileMode, fsGroup *int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if fsGroup != nil {
		if err := os.Chown(dir, 0, int(*fsGroup)); err != nil {
			return err
		}
		perm |= 0o770 | fs.ModeSetgid
	}
	return os.Chmod(dir, perm)
}

// claimDir returns the host directory backing a claim, shared by every pod
// that mounts it. A new claim's directory is root's, 0755 (a fresh
// filesystem); a pod with fsGroup makes it and its contents group-owned and
// group-writable, recursively, as the kubelet does on each mount.
func (k *Kubelet) claimDir(claim string, fsGroup *int64) (string, error) {
	if !k.Claims[claim] {
		return "", fmt.Errorf("persistentVolumeClaim %q does not exist (the pod would stay Pending)", claim)
	}
	k.mu.Lock()
	dir, ok := k.claimDirs[claim]
	if !ok {
		dir = filepath.Join(k.root, "claims", claim)
		k.claimDirs[claim] = dir
	}
	k.mu.Unlock()
	if !ok {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
	}
	if fsGroup == nil {
		return dir, nil
	}
	return dir, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.Lchown(p, -1, int(*fsGroup)); err != nil {
			return err
		}
		m := info.Mode() | 0o660
		if d.IsDir() {
			m |= 0o110 | fs.ModeSetgid
		}
		return os.Chmod(p, m&(fs.ModePerm|fs.ModeSetgid|fs.ModeSticky))
	})
}

// ClaimDir returns the host directory of a claim (created by the first pod
// that mounted it), or "" before that.
func (k *Kubelet) ClaimDir(claim string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.claimDirs[claim]
}

// --- env and $(VAR) -------------------------------------------------------

// expand applies Kubernetes' $(VAR) expansion: $(NAME) becomes the value
// of NAME when defined and stays as written otherwise; $$ is a literal $.
// (The algorithm of k8s.io/kubernetes third_party/forked/golang/expansion.)
func expand(in string, vars map[string]string) string {
	var buf strings.Builder
	checkpoint := 0
	for cur := 0; cur < len(in); cur++ {
		if in[cur] != '$' || cur+1 >= len(in) {
			continue
		}
		buf.WriteString(in[checkpoint:cur])
		rest := in[cur+1:]
		advance := 1
		switch rest[0] {
		case '$':
			buf.WriteByte('$')
		case '(':
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				buf.WriteString("$(")
				break
			}
			name := rest[1:end]
			if v, ok := vars[name]; ok {
				buf.WriteString(v)
			} else {
				buf.WriteString("$(" + name + ")")
			}
			advance = end + 1
		default:
			buf.WriteString("$" + rest[:1])
		}
		cur += advance
		checkpoint = cur + 1
	}
	return buf.String() + in[checkpoint:]
}

// envVar is one resolved environment variable.
type envVar struct{ name, value string }

// containerEnv resolves a container's environment the way the kubelet's
// makeEnvironmentVariables does: envFrom sources in order, then env in
// order, each value expanded against the variables defined before it;
// valueFrom values are not expanded.
func (k *Kubelet) containerEnv(p Pod, c corev1.Container, podIP string) ([]envVar, map[string]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(n, v string) {
		if _, ok := vars[n]; !ok {
			order = append(order, n)
		}
		vars[n] = v
	}
	where := "pod " + p.Name + " container " + c.Name
	for _, ef := range c.EnvFrom {
		var data map[string]string
		var opt bool
		var what string
		switch {
		case ef.ConfigMapRef != nil:
			what, opt = "configMap "+ef.ConfigMapRef.Name, ef.ConfigMapRef.Optional != nil && *ef.ConfigMapRef.Optional
			if cm, ok := k.ConfigMaps[ef.ConfigMapRef.Name]; ok {
				data = cm.Data
				if data == nil {
					data = map[string]string{}
				}
			}
		case ef.SecretRef != nil:
			what, opt = "secret "+ef.SecretRef.Name, ef.SecretRef.Optional != nil && *ef.SecretRef.Optional
			if s, ok := k.Secrets[ef.SecretRef.Name]; ok {
				data = map[string]string{}
				for key, v := range s {
					data[key] = string(v)
				}
			}
		default:
			return nil, nil, fmt.Errorf("%s: envFrom without configMapRef or secretRef", where)
		}
		if data == nil {
			if opt {
				continue
			}
			return nil, nil, fmt.Errorf("%s: envFrom %s does not exist", where, what)
		}
		keys := make([]string, 0, len(data))
		for key := range data {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			set(ef.Prefix+key, data[key])
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			set(e.Name, expand(e.Value, vars))
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				set(e.Name, p.Name)
			case "metadata.namespace":
				set(e.Name, p.Namespace)
			case "status.podIP":
				set(e.Name, podIP)
			}
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			s, ok := k.Secrets[r.Name]
			v, has := s[r.Key]
			if !ok || !has {
				if r.Optional != nil && *r.Optional {
					continue
				}
				return nil, nil, fmt.Errorf("%s env %s: secret %s key %s does not exist", where, e.Name, r.Name, r.Key)
			}
			set(e.Name, string(v))
		case e.ValueFrom.ConfigMapKeyRef != nil:
			r := e.ValueFrom.ConfigMapKeyRef
			var v string
			has := false
			if cm, ok := k.ConfigMaps[r.Name]; ok {
				v, has = cm.Data[r.Key]
			}
			if !has {
				if r.Optional != nil && *r.Optional {
					continue
				}
				return nil, nil, fmt.Errorf("%s env %s: configMap %s key %s does not exist", where, e.Name, r.Name, r.Key)
			}
			set(e.Name, v)
		default:
			return nil, nil, fmt.Errorf("%s env %s: valueFrom kind not emulated", where, e.Name)
		}
	}
	env := make([]envVar, 0, len(order))
	for _, n := range order {
		env = append(env, envVar{n, vars[n]})
	}
	return env, vars, nil
}

// --- docker run -------------------------------------------------------------

// runArgs translates one container of a pod into `docker run` arguments
// (without "run" and without -d/--rm): name, the pod's network namespace
// (netns, the pause container), labels, env, user and groups, security
// options, resource limits, mounts, entrypoint, image and arguments.
func (k *Kubelet) runArgs(p Pod, c corev1.Container, vols map[string]hostVolume, podIP, netns, name string) ([]string, error) {
	where := "pod " + p.Name + " container " + c.Name
	args := []string{"--name", name, "--label", labelKey + "=" + k.prefix,
		"--label", "io.kubernetes.pod.name=" + p.Name, "--label", "io.kubernetes.container.name=" + c.Name,
		"--network", "container:" + netns, "--pull", "never", "--no-healthcheck"}

	psc := p.Spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	csc := c.SecurityContext
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	uid, gid := psc.RunAsUser, psc.RunAsGroup
	if csc.RunAsUser != nil {
		uid = csc.RunAsUser
	}
	if csc.RunAsGroup != nil {
		gid = csc.RunAsGroup
	}
	nonRoot := psc.RunAsNonRoot
	if csc.RunAsNonRoot != nil {
		nonRoot = csc.RunAsNonRoot
	}
	if gid != nil && uid == nil {
		return nil, fmt.Errorf("%s: runAsGroup without runAsUser not emulated", where)
	}
	if nonRoot != nil && *nonRoot {
		if uid == nil {
			u, err := k.imageUser(c.Image)
			if err != nil {
				return nil, err
			}
			id, _, _ := strings.Cut(u, ":")
			n, err := strconv.Atoi(id)
			if err != nil {
				return nil, fmt.Errorf("%s: runAsNonRoot and the image's user %q is not numeric (the kubelet refuses to verify it)", where, u)
			}
			if n == 0 {
				return nil, fmt.Errorf("%s: runAsNonRoot and the image runs as root", where)
			}
		} else if *uid == 0 {
			return nil, fmt.Errorf("%s: runAsNonRoot and runAsUser 0", where)
		}
	}
	if uid != nil {
		u := strconv.FormatInt(*uid, 10)
		if gid != nil {
			u += ":" + strconv.FormatInt(*gid, 10)
		}
		args = append(args, "--user", u)
	}
	if psc.FSGroup != nil {
		args = append(args, "--group-add", strconv.FormatInt(*psc.FSGroup, 10))
	}
	if csc.ReadOnlyRootFilesystem != nil && *csc.ReadOnlyRootFilesystem {
		args = append(args, "--read-only")
	}
	if csc.AllowPrivilegeEscalation != nil && !*csc.AllowPrivilegeEscalation {
		args = append(args, "--security-opt", "no-new-privileges")
	}
	if cp := csc.Capabilities; cp != nil {
		for _, d := range cp.Drop {
			args = append(args, "--cap-drop", string(d))
		}
	}
	seccomp := psc.SeccompProfile
	if csc.SeccompProfile != nil {
		seccomp = csc.SeccompProfile
	}
	if seccomp == nil {
		// The kubelet's default (without SeccompDefault) is Unconfined.
		args = append(args, "--security-opt", "seccomp=unconfined")
	}
	if lim := c.Resources.Limits; lim != nil {
		if q, ok := lim[corev1.ResourceMemory]; ok {
			args = append(args, "--memory", strconv.FormatInt(q.Value(), 10))
		}
		if q, ok := lim[corev1.ResourceCPU]; ok {
			args = append(args, "--cpus", cpus(q))
		}
	}
	if g := p.Spec.TerminationGracePeriodSeconds; g != nil {
		args = append(args, "--stop-timeout", strconv.FormatInt(*g, 10))
	}

	env, vars, err := k.containerEnv(p, c, podIP)
	if err != nil {
		return nil, err
	}
	for _, e := range env {
		args = append(args, "--env", e.name+"="+e.value)
	}

	for _, m := range c.VolumeMounts {
		hv := vols[m.Name]
		ro := m.ReadOnly || hv.readOnly
		var spec string
		if hv.docker != "" {
			spec = "type=volume,source=" + hv.docker + ",target=" + m.MountPath
		} else {
			src := hv.dir
			if m.SubPath != "" {
				src = filepath.Join(hv.dir, filepath.FromSlash(m.SubPath))
				if _, err := os.Lstat(src); os.IsNotExist(err) {
					// The kubelet creates a missing subPath as a directory.
					if err := os.MkdirAll(src, 0o755); err != nil {
						return nil, err
					}
				}
			}
			spec = "type=bind,source=" + src + ",target=" + m.MountPath
		}
		if ro {
			spec += ",readonly"
		}
		args = append(args, "--mount", spec)
	}

	command := make([]string, len(c.Command))
	for i, s := range c.Command {
		command[i] = expand(s, vars)
	}
	cargs := make([]string, len(c.Args))
	for i, s := range c.Args {
		cargs[i] = expand(s, vars)
	}
	if len(command) > 0 {
		args = append(args, "--entrypoint", command[0], c.Image)
		args = append(args, command[1:]...)
	} else {
		args = append(args, c.Image)
	}
	return append(args, cargs...), nil
}

// cpus formats a CPU quantity for docker --cpus.
func cpus(q resource.Quantity) string {
	return strconv.FormatFloat(float64(q.MilliValue())/1000, 'f', 3, 64)
}

// --- running pods -----------------------------------------------------------

// StartPod runs a long-running pod: its init containers to completion in
// order (a native sidecar, restartPolicy Always, is started and kept), then
// its containers, and returns once every container with a readinessProbe
// is ready (its startupProbe first; a livenessProbe must then answer too).
// A container that exits (a cluster would restart it: CrashLoopBackOff),
// or a pod not ready within Timeout, fails t with the containers' logs.
func (k *Kubelet) StartPod(t testing.TB, p Pod) *RunningPod {
	t.Helper()
	rp, err := k.startPod(p, false)
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

// RunJob runs a run-to-completion pod (a CronJob's job): init containers,
// then its containers until they all exit (bounded by Timeout). It returns
// the exit code and logs; it fails t only when the pod cannot run.
func (k *Kubelet) RunJob(t testing.TB, p Pod) JobResult {
	t.Helper()
	rp, err := k.startPod(p, true)
	if err != nil {
		t.Fatal(err)
	}
	res := JobResult{Logs: map[string]string{}, Pod: rp}
	deadline := time.Now().Add(k.Timeout)
	for _, c := range p.Spec.Containers {
		code, err := k.wait(rp.Containers[c.Name], time.Until(deadline))
		if err != nil {
			t.Fatalf("pod %s container %s: %v\n%s", p.Name, c.Name, err, k.logs(rp))
		}
		if code != 0 && res.ExitCode == 0 {
			res.ExitCode = code
		}
	}
	for name, id := range rp.Containers {
		res.Logs[name] = k.containerLogs(id)
	}
	return res
}

func (k *Kubelet) startPod(p Pod, job bool) (*RunningPod, error) {
	if p.Namespace == "" {
		p.Namespace = k.Namespace
	}
	if err := validatePod(p); err != nil {
		return nil, err
	}
	if job && p.Spec.RestartPolicy != corev1.RestartPolicyNever && p.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		return nil, fmt.Errorf("pod %s: a job's pod needs restartPolicy Never or OnFailure, not %q", p.Name, p.Spec.RestartPolicy)
	}
	aliases, err := k.serviceAliases(p)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.pods++
	n := k.pods
	k.mu.Unlock()
	podDir := filepath.Join(k.root, "pods", fmt.Sprintf("%d-%s", n, p.Name))
	vols, err := k.prepareVolumes(p, podDir)
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("%s-%d", k.prefix, n)
	pause := base + "-pause"
	rp := &RunningPod{Name: p.Name, Containers: map[string]string{}, Volumes: map[string]string{}, pause: pause, finished: map[string]bool{}}
	for name, v := range vols {
		if v.docker != "" {
			if _, err := dockerRun(time.Minute, "volume", "create", "--label", labelKey+"="+k.prefix, "--driver", "local",
				"--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o="+v.tmpfsOpt, v.docker); err != nil {
				return nil, err
			}
			rp.Volumes[name] = v.docker
		} else {
			rp.Volumes[name] = v.dir
		}
	}
	pargs := []string{"run", "-d", "--name", pause, "--label", labelKey + "=" + k.prefix,
		"--hostname", p.Name, "--network", k.Network, "--read-only", "--cap-drop", "ALL",
		"--security-opt", "no-new-privileges", "--no-healthcheck", "--pull", "never"}
	for _, a := range aliases {
		pargs = append(pargs, "--network-alias", a)
	}
	if _, err := dockerRun(time.Minute, append(pargs, k.pauseImage)...); err != nil {
		return nil, err
	}
	ip, err := dockerRun(time.Minute, "inspect", "--format", `{{(index .NetworkSettings.Networks "`+k.Network+`").IPAddress}}`, pause)
	if err != nil {
		return nil, err
	}
	rp.IP = strings.TrimSpace(ip)
	if net.ParseIP(rp.IP) == nil {
		return nil, fmt.Errorf("pod %s: no IP on %s (%q)", p.Name, k.Network, rp.IP)
	}
	deadline := time.Now().Add(k.Timeout)
	for _, c := range p.Spec.InitContainers {
		name := base + "-init-" + c.Name
		args, err := k.runArgs(p, c, vols, rp.IP, pause, name)
		if err != nil {
			return nil, err
		}
		rp.Containers[c.Name] = name
		if _, err := dockerRun(time.Minute, append([]string{"run", "-d"}, args...)...); err != nil {
			return nil, err
		}
		if c.RestartPolicy != nil { // a native sidecar: started, kept running
			if err := k.probe(rp, c, c.StartupProbe, deadline); err != nil {
				return nil, fmt.Errorf("pod %s sidecar %s startupProbe: %v\n%s", p.Name, c.Name, err, k.logs(rp))
			}
			continue
		}
		code, err := k.wait(name, time.Until(deadline))
		if err != nil || code != 0 {
			return nil, fmt.Errorf("pod %s initContainer %s: exit %d %v\n%s", p.Name, c.Name, code, err, k.logs(rp))
		}
		rp.finished[name] = true
	}
	for _, c := range p.Spec.Containers {
		name := base + "-" + c.Name
		args, err := k.runArgs(p, c, vols, rp.IP, pause, name)
		if err != nil {
			return nil, err
		}
		rp.Containers[c.Name] = name
		if _, err := dockerRun(time.Minute, append([]string{"run", "-d"}, args...)...); err != nil {
			return nil, err
		}
	}
	if job {
		return rp, nil
	}
	all := append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...)
	for _, c := range all {
		if _, started := rp.Containers[c.Name]; !started || (c.RestartPolicy == nil && slices.ContainsFunc(p.Spec.InitContainers, func(ic corev1.Container) bool { return ic.Name == c.Name })) {
			continue
		}
		for _, pr := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			if err := k.probe(rp, c, pr, deadline); err != nil {
				return nil, fmt.Errorf("pod %s container %s: %v\n%s", p.Name, c.Name, err, k.logs(rp))
			}
		}
	}
	return rp, nil
}

// probe polls an httpGet probe against the pod's IP from the host until it
// answers 2xx or 3xx (the kubelet's success), the container exits, or the
// deadline passes. Like the kubelet it does not verify HTTPS certificates.
func (k *Kubelet) probe(rp *RunningPod, c corev1.Container, pr *corev1.Probe, deadline time.Time) error {
	if pr == nil {
		return nil
	}
	hg := pr.HTTPGet
	port, err := probePort(c, hg.Port)
	if err != nil {
		return err
	}
	scheme := "http"
	if hg.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	p := hg.Path
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	url := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(rp.IP, strconv.Itoa(int(port))), p)
	client := &http.Client{Timeout: 2 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the kubelet's probes skip verification
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 400 {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if err := k.allRunning(rp); err != nil {
			return fmt.Errorf("probe %s: %v", url, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("probe %s not passing by the deadline: %s", url, last)
		}
		<-tick.C
	}
}

// allRunning returns an error naming a long-running container of the pod
// (not a finished init container) that is not running.
func (k *Kubelet) allRunning(rp *RunningPod) error {
	names := make([]string, 0, len(rp.Containers))
	for _, n := range rp.Containers {
		names = append(names, n)
	}
	sort.Strings(names)
	out, err := dockerRun(30*time.Second, append([]string{"inspect", "--format", "{{.Name}} {{.State.Status}} {{.State.ExitCode}}"}, names...)...)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[1] != "running" && !(rp.finished[strings.TrimPrefix(f[0], "/")] && f[2] == "0") {
			return fmt.Errorf("container %s is %s (exit %s); a cluster would restart it (CrashLoopBackOff)", strings.TrimPrefix(f[0], "/"), f[1], f[2])
		}
	}
	return nil
}

// wait waits for a container to exit and returns its exit code.
func (k *Kubelet) wait(name string, d time.Duration) (int, error) {
	if d <= 0 {
		d = time.Second
	}
	out, err := dockerRun(d, "wait", name)
	if err != nil {
		return -1, fmt.Errorf("not finished within the deadline: %v", err)
	}
	return strconv.Atoi(strings.TrimSpace(out))
}

func (k *Kubelet) containerLogs(name string) string {
	cmd := exec.Command("docker", "logs", name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(docker logs %s: %v) %s", name, err, out)
	}
	return string(out)
}

// logs returns every started container's logs, for a failure message.
func (k *Kubelet) logs(rp *RunningPod) string {
	names := make([]string, 0, len(rp.Containers))
	for n := range rp.Containers {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "--- %s (%s)\n%s", n, rp.Containers[n], k.containerLogs(rp.Containers[n]))
	}
	return b.String()
}
