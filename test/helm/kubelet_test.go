package helm

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

func ptr[T any](v T) *T { return &v }

// testKubelet is a Kubelet for the translation tests: no Docker objects.
func testKubelet(t *testing.T) *Kubelet {
	k := newKubelet(t, "mirror")
	k.Network = "net"
	k.imageUser = func(image string) (string, error) {
		if image == "rootimage" {
			return "", nil
		}
		return "65532:65532", nil
	}
	k.ConfigMaps["cfg"] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"},
		Data: map[string]string{"ORIGIN__LISTEN": ":8080", "gateway.yaml": "sites: []\n"}}
	k.Secrets["tls"] = map[string][]byte{"tls.crt": []byte("CERT"), "tls.key": []byte("KEY")}
	k.Secrets["tok"] = map[string][]byte{"token": []byte("s3cret")}
	k.Claims["exports"] = true
	return k
}

// basePod is a pod that uses every feature of the contract once.
func basePod() Pod {
	return Pod{Name: "origin-1", Namespace: "mirror", Labels: map[string]string{"app": "origin"},
		Spec: corev1.PodSpec{
			EnableServiceLinks: ptr(false), AutomountServiceAccountToken: ptr(false),
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr[int64](65532), RunAsGroup: ptr[int64](65532),
				RunAsNonRoot: ptr(true), FSGroup: ptr[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Volumes: []corev1.Volume{
				{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
				{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tls",
					DefaultMode: ptr[int32](0o400), Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "site/tls.crt"}}}}},
				{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
					SizeLimit: ptr(resource.MustParse("64Mi"))}}},
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
					Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("16Mi"))}}},
				{Name: "exports", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
					ClaimName: "exports", ReadOnly: true}}},
			},
			Containers: []corev1.Container{{
				Name: "origin", Image: "img:1", Command: []string{"/stella-mirror", "origin"},
				Args: []string{"--listen", "$(POD_IP):8080", "$$(POD_IP)", "$(UNDEFINED)"},
				Env: []corev1.EnvVar{
					{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "ADDR", Value: "http://$(POD_IP):$(ORIGIN__LISTEN)/$(LATER)"},
					{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: "tok"}, Key: "token"}}},
					{Name: "YAML", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "gateway.yaml"}}},
					{Name: "LATER", Value: "x"},
				},
				EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "cfg", MountPath: "/etc/stella-mirror", ReadOnly: true},
					{Name: "tls", MountPath: "/run/secrets/tls.crt", SubPath: "site/tls.crt", ReadOnly: true},
					{Name: "cache", MountPath: "/var/cache/stella-mirror"},
					{Name: "tmp", MountPath: "/tmp"},
					{Name: "exports", MountPath: "/srv/exports"},
				},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "admin", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/health/ready", Port: intstr.FromString("admin")}}, PeriodSeconds: 5},
				LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/health/live", Port: intstr.FromInt32(9090)}}},
				Resources: corev1.ResourceRequirements{
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi"), corev1.ResourceCPU: resource.MustParse("500m")},
					Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}},
				SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr(true), AllowPrivilegeEscalation: ptr(false),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		}}
}

// TestRunArgs checks the translation of a pod's container into docker run
// arguments, for the whole contract at once and for its variations.
func TestRunArgs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(p *Pod)
		want   []string // consecutive arguments that must appear, in order
		absent []string // arguments that must not appear
		tail   []string // the arguments from --entrypoint (or the image) on
	}{
		{name: "contract", want: []string{
			"--network container:PAUSE", "--pull never", "--no-healthcheck",
			"--user 65532:65532", "--group-add 65532", "--read-only", "--security-opt no-new-privileges",
			"--cap-drop ALL", "--memory 268435456", "--cpus 0.500",
			// envFrom first (sorted keys), then env in order, each expanded against what precedes it.
			"--env ORIGIN__LISTEN=:8080", "--env gateway.yaml=sites: []\n",
			"--env POD_IP=172.18.0.5", "--env POD_NAME=origin-1",
			"--env ADDR=http://172.18.0.5::8080/$(LATER)", "--env TOKEN=s3cret", "--env YAML=sites: []\n", "--env LATER=x",
			"--mount type=bind,source=ROOT/volumes/cfg,target=/etc/stella-mirror,readonly",
			"--mount type=bind,source=ROOT/volumes/tls/site/tls.crt,target=/run/secrets/tls.crt,readonly",
			"--mount type=bind,source=ROOT/volumes/cache,target=/var/cache/stella-mirror",
			"--mount type=volume,source=PREFIX-origin-1-tmp,target=/tmp",
			"--mount type=bind,source=CLAIMS/exports,target=/srv/exports,readonly",
		}, absent: []string{"seccomp=unconfined"},
			tail: []string{"--entrypoint", "/stella-mirror", "img:1", "origin", "--listen", "172.18.0.5:8080", "$(POD_IP)", "$(UNDEFINED)"}},
		{name: "args only keep the image entrypoint", edit: func(p *Pod) { p.Spec.Containers[0].Command = nil },
			tail: []string{"img:1", "--listen", "172.18.0.5:8080", "$(POD_IP)", "$(UNDEFINED)"}},
		{name: "command only drops the image CMD", edit: func(p *Pod) {
			p.Spec.Containers[0].Command = []string{"/stella-mirror"}
			p.Spec.Containers[0].Args = nil
		}, tail: []string{"--entrypoint", "/stella-mirror", "img:1"}},
		{name: "neither: the image defaults", edit: func(p *Pod) {
			p.Spec.Containers[0].Command, p.Spec.Containers[0].Args = nil, nil
		}, tail: []string{"img:1"}},
		{name: "container securityContext overrides the pod's", edit: func(p *Pod) {
			p.Spec.Containers[0].SecurityContext.RunAsUser = ptr[int64](1000)
			p.Spec.Containers[0].SecurityContext.RunAsGroup = ptr[int64](2000)
		}, want: []string{"--user 1000:2000"}},
		{name: "no seccompProfile is the kubelet's Unconfined", edit: func(p *Pod) { p.Spec.SecurityContext.SeccompProfile = nil },
			want: []string{"--security-opt seccomp=unconfined"}},
		{name: "no fsGroup, no group-add", edit: func(p *Pod) { p.Spec.SecurityContext.FSGroup = nil },
			absent: []string{"--group-add"}},
		{name: "escalation allowed: no no-new-privileges", edit: func(p *Pod) {
			p.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
			p.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = ptr(false)
		}, absent: []string{"no-new-privileges", "--read-only"}},
		{name: "runAsNonRoot from the image's numeric user", edit: func(p *Pod) {
			p.Spec.SecurityContext.RunAsUser, p.Spec.SecurityContext.RunAsGroup = nil, nil
		}, absent: []string{"--user"}},
		{name: "envFrom prefix and secretRef", edit: func(p *Pod) {
			c := &p.Spec.Containers[0]
			c.EnvFrom = []corev1.EnvFromSource{{Prefix: "P_", SecretRef: &corev1.SecretEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "tok"}}}}
			c.Env = []corev1.EnvVar{{Name: "T", Value: "<$(P_token)>"}}
		}, want: []string{"--env P_token=s3cret", "--env T=<s3cret>"}},
		{name: "env overrides envFrom", edit: func(p *Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "ORIGIN__LISTEN", Value: ":9"}}
		}, want: []string{"--env ORIGIN__LISTEN=:9"}, absent: []string{"ORIGIN__LISTEN=:8080"}},
		{name: "optional missing secret key is skipped", edit: func(p *Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k", Optional: ptr(true)}}}}
		}, absent: []string{"--env X="}},
		{name: "grace period", edit: func(p *Pod) { p.Spec.TerminationGracePeriodSeconds = ptr[int64](30) },
			want: []string{"--stop-timeout 30"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := testKubelet(t)
			p := basePod()
			if tc.edit != nil {
				tc.edit(&p)
			}
			if err := validatePod(p); err != nil {
				t.Fatalf("validatePod: %v", err)
			}
			podDir := filepath.Join(k.root, "pod")
			vols, err := k.prepareVolumes(p, podDir)
			if err != nil {
				t.Fatal(err)
			}
			args, err := k.runArgs(p, p.Spec.Containers[0], vols, "172.18.0.5", "PAUSE", "NAME")
			if err != nil {
				t.Fatal(err)
			}
			joined := "\x00" + strings.Join(args, "\x00") + "\x00"
			subst := strings.NewReplacer("ROOT", podDir, "CLAIMS", filepath.Join(k.root, "claims"), "PREFIX", k.prefix)
			last := 0
			for _, w := range tc.want {
				pat := "\x00" + strings.Replace(subst.Replace(w), " ", "\x00", 1) + "\x00"
				i := strings.Index(joined[last:], pat)
				if i < 0 {
					t.Errorf("no (or out of order) %q in\n%q", w, args)
					continue
				}
				last += i
			}
			for _, a := range tc.absent {
				if strings.Contains(joined, "\x00"+strings.Replace(a, " ", "\x00", 1)) {
					t.Errorf("%q present in %q", a, args)
				}
			}
			if tc.tail != nil {
				i := slices.Index(args, tc.tail[0])
				if i < 0 || !slices.Equal(args[i:], tc.tail) {
					t.Errorf("tail: got %q, want %q", args, tc.tail)
				}
			}
		})
	}
}

// TestRefusals checks that a pod, or a Service selecting it, that uses
// anything outside the contract is refused, naming what.
func TestRefusals(t *testing.T) {
	c0 := func(p *Pod) *corev1.Container { return &p.Spec.Containers[0] }
	for _, tc := range []struct {
		name string
		edit func(p *Pod, k *Kubelet)
		want string
	}{
		{"hostPath volume", func(p *Pod, _ *Kubelet) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "h", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/etc"}}})
		}, "hostPath not emulated"},
		{"projected volume", func(p *Pod, _ *Kubelet) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "pj", VolumeSource: corev1.VolumeSource{
				Projected: &corev1.ProjectedVolumeSource{}}})
		}, "projected not emulated"},
		{"hostNetwork", func(p *Pod, _ *Kubelet) { p.Spec.HostNetwork = true }, "hostNetwork not emulated"},
		{"pod sysctls", func(p *Pod, _ *Kubelet) {
			p.Spec.SecurityContext.Sysctls = []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}}
		}, "sysctls not emulated"},
		{"capabilities add", func(p *Pod, _ *Kubelet) {
			c0(p).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"}
		}, "add not emulated"},
		{"privileged", func(p *Pod, _ *Kubelet) { c0(p).SecurityContext.Privileged = ptr(true) }, "privileged not emulated"},
		{"seccomp Unconfined", func(p *Pod, _ *Kubelet) {
			c0(p).SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}, `seccompProfile "Unconfined" not emulated`},
		{"exec probe", func(p *Pod, _ *Kubelet) {
			c0(p).LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
		}, "exec not emulated"},
		{"tcpSocket probe", func(p *Pod, _ *Kubelet) {
			c0(p).ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(1)}}}
		}, "tcpSocket not emulated"},
		{"probe httpHeaders", func(p *Pod, _ *Kubelet) {
			c0(p).ReadinessProbe.HTTPGet.HTTPHeaders = []corev1.HTTPHeader{{Name: "Host", Value: "x"}}
		}, "httpHeaders not emulated"},
		{"probe port name unknown", func(p *Pod, _ *Kubelet) { c0(p).ReadinessProbe.HTTPGet.Port = intstr.FromString("nope") },
			`port name "nope" names no container port`},
		{"hostPort", func(p *Pod, _ *Kubelet) { c0(p).Ports[0].HostPort = 8080 }, "hostPort not emulated"},
		{"UDP port", func(p *Pod, _ *Kubelet) { c0(p).Ports[0].Protocol = corev1.ProtocolUDP }, "protocol UDP not emulated"},
		{"workingDir", func(p *Pod, _ *Kubelet) { c0(p).WorkingDir = "/x" }, "workingDir not emulated"},
		{"lifecycle hook", func(p *Pod, _ *Kubelet) {
			c0(p).Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1}}}
		}, "lifecycle not emulated"},
		{"fieldRef labels", func(p *Pod, _ *Kubelet) {
			c0(p).Env = append(c0(p).Env, corev1.EnvVar{Name: "L", ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}})
		}, "fieldRef metadata.labels['app'] not emulated"},
		{"resourceFieldRef", func(p *Pod, _ *Kubelet) {
			c0(p).Env = append(c0(p).Env, corev1.EnvVar{Name: "L", ValueFrom: &corev1.EnvVarSource{
				ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"}}})
		}, "resourceFieldRef not emulated"},
		{"subPathExpr", func(p *Pod, _ *Kubelet) { c0(p).VolumeMounts[2].SubPathExpr = "$(POD_NAME)" }, "subPathExpr not emulated"},
		{"mount of a missing volume", func(p *Pod, _ *Kubelet) { c0(p).VolumeMounts[0].Name = "nope" }, `no volume "nope"`},
		{"GPU resource", func(p *Pod, _ *Kubelet) { c0(p).Resources.Limits["nvidia.com/gpu"] = resource.MustParse("1") }, "resource nvidia.com/gpu not emulated"},
		{"restartPolicy on a container", func(p *Pod, _ *Kubelet) {
			c0(p).RestartPolicy = ptr(corev1.ContainerRestartPolicyAlways)
		}, "only emulated on an initContainer"},
		{"shareProcessNamespace", func(p *Pod, _ *Kubelet) { p.Spec.ShareProcessNamespace = ptr(true) }, "shareProcessNamespace not emulated"},
		{"service links by default", func(p *Pod, _ *Kubelet) { p.Spec.EnableServiceLinks = nil }, "enableServiceLinks unset or true"},
		{"service account token", func(p *Pod, _ *Kubelet) { p.Spec.AutomountServiceAccountToken = ptr(true) }, "automountServiceAccountToken unset or true"},
		{"runAsNonRoot with uid 0", func(p *Pod, _ *Kubelet) { p.Spec.SecurityContext.RunAsUser = ptr[int64](0) }, "runAsNonRoot and runAsUser 0"},
		{"runAsNonRoot with a root image", func(p *Pod, _ *Kubelet) {
			p.Spec.SecurityContext.RunAsUser, p.Spec.SecurityContext.RunAsGroup = nil, nil
			c0(p).Image = "rootimage"
		}, "is not numeric"},
		{"missing secret", func(p *Pod, k *Kubelet) { delete(k.Secrets, "tls") }, "secret tls does not exist"},
		{"missing configMap key", func(p *Pod, _ *Kubelet) {
			p.Spec.Volumes[0].ConfigMap.Items = []corev1.KeyToPath{{Key: "nope", Path: "x"}}
		}, `configMap cfg has no key "nope"`},
		{"missing claim", func(p *Pod, k *Kubelet) { delete(k.Claims, "exports") }, `persistentVolumeClaim "exports" does not exist`},
		{"missing secret for env", func(p *Pod, k *Kubelet) { delete(k.Secrets, "tok") }, "secret tok key token does not exist"},
		{"service port != targetPort", func(p *Pod, k *Kubelet) {
			k.Services = []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "origin"}, Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "origin"},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}}
		}, "port 80 != targetPort 8080"},
		{"service ExternalName", func(p *Pod, k *Kubelet) {
			k.Services = []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "origin"}, Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeExternalName, Selector: map[string]string{"app": "origin"},
				Ports: []corev1.ServicePort{{Port: 8080}}}}}
		}, "type ExternalName not emulated"},
		{"service externalIPs", func(p *Pod, k *Kubelet) {
			k.Services = []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "origin"}, Spec: corev1.ServiceSpec{
				ExternalIPs: []string{"192.0.2.7"}, Selector: map[string]string{"app": "origin"},
				Ports: []corev1.ServicePort{{Port: 8080}}}}}
		}, "externalIPs not emulated"},
		{"service UDP", func(p *Pod, k *Kubelet) {
			k.Services = []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "origin"}, Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "origin"},
				Ports:    []corev1.ServicePort{{Port: 8080, Protocol: corev1.ProtocolUDP}}}}}
		}, "protocol UDP not emulated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := testKubelet(t)
			p := basePod()
			tc.edit(&p, k)
			err := validatePod(p)
			if err == nil {
				_, err = k.serviceAliases(p)
			}
			if err == nil {
				var vols map[string]hostVolume
				if vols, err = k.prepareVolumes(p, filepath.Join(k.root, "pod")); err == nil {
					_, err = k.runArgs(p, p.Spec.Containers[0], vols, "172.18.0.5", "PAUSE", "NAME")
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestServiceAliases checks the aliases a pod gets from the Services that
// select it, with targetPort as a name or a number or left out.
func TestServiceAliases(t *testing.T) {
	k := testKubelet(t)
	sel := map[string]string{"app": "origin"}
	k.Services = []corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "origin"}, Spec: corev1.ServiceSpec{Selector: sel,
			Ports: []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromString("http")}, {Port: 9090, TargetPort: intstr.FromInt32(9090)}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "origin-admin", Namespace: "mirror"}, Spec: corev1.ServiceSpec{Selector: sel,
			Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Ports: []corev1.ServicePort{{Port: 9090}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "gateway"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "gateway"},
			Ports: []corev1.ServicePort{{Port: 443, TargetPort: intstr.FromInt32(8443)}}}}, // not selecting: not checked
		{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "other"}, Spec: corev1.ServiceSpec{Selector: sel,
			Ports: []corev1.ServicePort{{Port: 8080}}}},
	}
	got, err := k.serviceAliases(basePod())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"origin", "origin.mirror", "origin.mirror.svc", "origin.mirror.svc.cluster.local",
		"origin-admin", "origin-admin.mirror", "origin-admin.mirror.svc", "origin-admin.mirror.svc.cluster.local"}
	if !slices.Equal(got, want) {
		t.Fatalf("aliases %q, want %q", got, want)
	}
}

// TestVolumeFiles checks what the configMap, secret, emptyDir and claim
// volumes look like on the host: one file per key, modes, fsGroup
// ownership, and a claim shared between pods.
func TestVolumeFiles(t *testing.T) {
	k := testKubelet(t)
	p := basePod()
	vols, err := k.prepareVolumes(p, filepath.Join(k.root, "pod1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file    string
		mode    os.FileMode
		gid     int
		content string
	}{
		{filepath.Join(vols["cfg"].dir, "ORIGIN__LISTEN"), 0o644, 65532, ":8080"},
		{filepath.Join(vols["cfg"].dir, "gateway.yaml"), 0o644, 65532, "sites: []\n"},
		// defaultMode 0400 gains group read with fsGroup, like the kubelet's ownership.
		{filepath.Join(vols["tls"].dir, "site", "tls.crt"), 0o440, 65532, "CERT"},
	} {
		fi, err := os.Stat(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(tc.file)
		gid := int(fi.Sys().(*syscall.Stat_t).Gid)
		if fi.Mode().Perm() != tc.mode || gid != tc.gid || string(data) != tc.content {
			t.Errorf("%s: mode %o gid %d %q, want %o %d %q", tc.file, fi.Mode().Perm(), gid, data, tc.mode, tc.gid, tc.content)
		}
	}
	// The atomic writer's layout: a key is a symlink into ..data.
	for _, f := range []string{filepath.Join(vols["cfg"].dir, "ORIGIN__LISTEN"), filepath.Join(vols["tls"].dir, "site")} {
		if target, err := os.Readlink(f); err != nil || !strings.HasPrefix(target, "..data/") {
			t.Errorf("%s: symlink into ..data expected, got %q %v", f, target, err)
		}
	}
	if _, err := os.Stat(filepath.Join(vols["tls"].dir, "tls.key")); !os.IsNotExist(err) {
		t.Errorf("tls.key not in items but written (%v)", err)
	}
	for _, name := range []string{"cache", "exports"} {
		fi, err := os.Stat(vols[name].dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSetgid == 0 || fi.Mode().Perm()&0o070 != 0o070 {
			t.Errorf("%s: mode %v, want setgid and group rwx", name, fi.Mode())
		}
	}
	if !vols["exports"].readOnly || vols["tmp"].docker == "" || !strings.Contains(vols["tmp"].tmpfsOpt, "size=16777216") {
		t.Errorf("exports readOnly %v, tmp %+v", vols["exports"].readOnly, vols["tmp"])
	}
	// A second pod mounting the claim sees the first one's files.
	if err := os.WriteFile(filepath.Join(vols["exports"].dir, "written"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	vols2, err := k.prepareVolumes(p, filepath.Join(k.root, "pod2"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(vols2["exports"].dir, "written"))
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("claim shared across pods with fsGroup ownership: %v %v", fi, err)
	}
	if vols2["cache"].dir == vols["cache"].dir {
		t.Errorf("emptyDir shared across pods: %s", vols["cache"].dir)
	}
}

// TestExpand checks Kubernetes' $(VAR) expansion rules.
func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"$(A)":          "1",
		"x$(A)y$(B)z":   "x1ytwoz",
		"$$(A)":         "$(A)",
		"$$$(A)":        "$1",
		"$(C)":          "$(C)",
		"$(A":           "$(A",
		"$A":            "$A",
		"a$":            "a$",
		"$$":            "$",
		"$()":           "$()",
		"no vars here.": "no vars here.",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

// kubeletBin is the stella-mirror binary under test (STELLA_MIRROR_BIN).
var kubeletBin string

// TestMain takes the binary from STELLA_MIRROR_BIN (make test) or builds
// it once, and exports it as STELLA_MIRROR_BIN to the package's other
// tests (chartBinary), so one run never builds it twice.
func TestMain(m *testing.M) {
	os.Exit(testenv.MainWithBinary(exportBinary{m}, &kubeletBin))
}

// exportBinary runs the tests with STELLA_MIRROR_BIN set to kubeletBin.
type exportBinary struct{ m *testing.M }

func (e exportBinary) Run() int {
	if err := os.Setenv(testenv.BinaryEnv, kubeletBin); err != nil {
		panic(err)
	}
	code := e.m.Run()
	if imageRepo != "" {
		_, _ = dockerRun(time.Minute, "rmi", "-f", imageRepo+":"+imageTag)
	}
	return code
}

// requireDocker ends the test (testenv.Missing) without a Docker engine.
func requireDocker(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		testenv.Missing(t, "the kubelet emulator needs Docker: no docker CLI on this host (apt-get install docker.io); the chart is NOT started here")
	}
	if out, err := dockerRun(30*time.Second, "info", "--format", "{{.ServerVersion}}"); err != nil {
		testenv.Missing(t, "the kubelet emulator needs a Docker engine: none answers (%v %s); the chart is NOT started here", err, out)
	}
}

var (
	imageOnce sync.Once
	imageRepo string
	imageTag  string
	imageErr  error
)

// buildImage builds the project's FROM scratch image from the binary under
// test with compose/build-image.sh, once per test binary, under a tag of
// its own (TestMain removes it).
func buildImage(t *testing.T) (repo, tag string) {
	t.Helper()
	imageOnce.Do(func() {
		var rnd [4]byte
		_, _ = rand.Read(rnd[:])
		// The tag is never all digits: --set would make it a number.
		repo, tag := "stella-mirror-kubelet-test", "t"+hex.EncodeToString(rnd[:])
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, filepath.Join(RepoRoot(), "compose", "build-image.sh"), kubeletBin, repo+":"+tag, "kubelet-test").CombinedOutput()
		if err != nil {
			imageErr = fmt.Errorf("build-image.sh: %v\n%s", err, out)
			return
		}
		imageRepo, imageTag = repo, tag
		t.Logf("image %s:%s built in %.1fs", repo, tag, time.Since(start).Seconds())
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageRepo, imageTag
}

// restricted is the security context every pod of the tests runs with, the
// chart's own: non-root 65532, read-only root, no capabilities.
func restricted() (*corev1.PodSecurityContext, *corev1.SecurityContext) {
	return &corev1.PodSecurityContext{RunAsUser: ptr[int64](65532), RunAsGroup: ptr[int64](65532), RunAsNonRoot: ptr(true),
			FSGroup: ptr[int64](65532), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		&corev1.SecurityContext{ReadOnlyRootFilesystem: ptr(true), AllowPrivilegeEscalation: ptr(false),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
}

// lab is what an operator prepares before installing: certificates,
// passwords, keys (files on the host) and the Secrets made of them.
type lab struct {
	ca           string            // the dev CA (ca.pem) of every site's certificate
	passwords    map[string]string // site -> file holding its user's password
	ageID        *age.X25519Identity
	upstreamAuth string // user:password of the upstream's user "sync"
}

// chartSecrets creates the Secrets values-mirror.yaml names, as an operator
// would (docs/operations.md "Kubernetes"): site certificates from
// `stella-mirror dev-certs`, htpasswd files from `htpasswd -B`, the gateway's
// admin token, the backup's age recipient and signing key; and the
// upstream's certificate and htpasswd (Secrets upstream-tls and
// upstream-htpasswd). The sync's Secret needs the upstream's key: see
// syncSecret.
func chartSecrets(t *testing.T, k *Kubelet) *lab {
	t.Helper()
	htpasswd := testenv.Tool(t, "htpasswd", "apache2-utils")
	dir := t.TempDir()
	run := func(stdin string, name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tlsDir := filepath.Join(dir, "tls")
	run("", kubeletBin, "dev-certs", "--out", tlsDir, "--site", "primary=mirror-primary.example.org",
		"--site", "community=mirror-community.example.org", "--site", "upstream=upstream."+k.Namespace+".svc.cluster.local")
	l := &lab{ca: filepath.Join(tlsDir, "ca.pem"), passwords: map[string]string{}}
	ht := map[string][]byte{}
	for _, site := range []string{"primary", "community", "upstream"} {
		name := Fullname + "-tls-" + site
		if site == "upstream" {
			name = "upstream-tls"
		}
		k.Secrets[name] = map[string][]byte{"tls.crt": read(filepath.Join(tlsDir, site+".crt")), "tls.key": read(filepath.Join(tlsDir, site+".key"))}
		pw := randHex(t, 12)
		l.passwords[site] = filepath.Join(dir, site+".password")
		if err := os.WriteFile(l.passwords[site], []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, site+".htpasswd")
		run(pw, htpasswd, "-B", "-i", "-c", f, "user-"+site)
		ht[site+".htpasswd"] = read(f)
		if site == "upstream" {
			l.upstreamAuth = "user-upstream:" + pw
		}
	}
	k.Secrets["upstream-htpasswd"] = map[string][]byte{"upstream.htpasswd": ht["upstream.htpasswd"]}
	delete(ht, "upstream.htpasswd")
	k.Secrets[Fullname+"-htpasswd"] = ht
	k.Secrets[Fullname+"-gateway-admin"] = map[string][]byte{"token": []byte(randHex(t, 24))}
	// values-mirror.yaml's peer token (gateway → origin).
	k.Secrets[Fullname+"-peer-token"] = map[string][]byte{"token": []byte(randHex(t, 32) + "\n")}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	l.ageID = id
	run("", kubeletBin, "keygen", "--alg", "EdDSA", "--out", filepath.Join(dir, "backup-signing"))
	k.Secrets[Fullname+"-backup"] = map[string][]byte{"age-recipients": []byte(id.Recipient().String() + "\n"),
		"signing.key.pem": read(filepath.Join(dir, "backup-signing.key.pem"))}
	return l
}

// syncSecret creates the sync's Secret: the upstream's verification key,
// the CA of its certificate and its Basic Auth credentials (keys the
// render names with sync.caKey and sync.basicAuthKey).
func (l *lab) syncSecret(t *testing.T, k *Kubelet, pub []byte) {
	ca, err := os.ReadFile(l.ca)
	if err != nil {
		t.Fatal(err)
	}
	k.Secrets[Fullname+"-sync"] = map[string][]byte{"signing.pub.pem": pub, "upstream-ca.pem": ca,
		"upstream-auth": []byte(l.upstreamAuth + "\n")}
}

// startUpstream is the test's upstream mirror, run by the emulator too: a
// job writes a signed fixture export (seed 7) into the claim
// "upstream-exports"; then one pod holds an origin serving it without
// authentication and, on the same pod network (localhost), a gateway in
// front of it with TLS for upstream.<ns>.svc.cluster.local and Basic Auth
// (Secrets upstream-tls and upstream-htpasswd from chartSecrets), behind
// the Service "upstream" (https 8443, origin admin 9090). It returns the
// fixture's public key (PEM) and the pod.
func startUpstream(t *testing.T, k *Kubelet, image string) ([]byte, *RunningPod) {
	t.Helper()
	k.Claims["upstream-exports"] = true
	psc, csc := restricted()
	vol := corev1.Volume{Name: "exports", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "upstream-exports"}}}
	fixture := Pod{Name: "upstream-fixture", Labels: map[string]string{"job": "fixture"}, Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever, SecurityContext: psc, EnableServiceLinks: ptr(false), AutomountServiceAccountToken: ptr(false), Volumes: []corev1.Volume{vol},
		Containers: []corev1.Container{{Name: "fixture", Image: image, SecurityContext: csc,
			Args:         []string{"fixture", "--out", "/exports", "--seed", "7", "--bundle-size", "256KiB", "--vex-size", "64KiB"},
			VolumeMounts: []corev1.VolumeMount{{Name: "exports", MountPath: "/exports"}}}}}}
	res := k.RunJob(t, fixture)
	if res.ExitCode != 0 {
		t.Fatalf("fixture job exit %d:\n%v", res.ExitCode, res.Logs)
	}
	pub, err := os.ReadFile(filepath.Join(k.ClaimDir("upstream-exports"), "fixture-signing.pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	env := func(m map[string]string) []corev1.EnvVar {
		var env []corev1.EnvVar
		for k, v := range m {
			env = append(env, corev1.EnvVar{Name: k, Value: v})
		}
		sort.Slice(env, func(i, j int) bool { return env[i].Name < env[j].Name })
		return env
	}
	originEnv := map[string]string{"ORIGIN__LISTEN": "127.0.0.1:8080", "ORIGIN__ADMINLISTEN": "0.0.0.0:9090"}
	for _, p := range []string{"CONCELIER", "EXCITITOR"} {
		root := "CONCELIER__MIRROR__EXPORTROOT"
		if p == "EXCITITOR" {
			root = "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT"
		}
		originEnv[p+"__MIRROR__ENABLED"], originEnv[root], originEnv[p+"__MIRROR__REQUIREAUTHENTICATION"] = "true", "/exports", "false"
		for i, d := range []string{"primary", "community"} {
			originEnv[fmt.Sprintf("%s__MIRROR__DOMAINS__%d__ID", p, i)] = d
			originEnv[fmt.Sprintf("%s__MIRROR__DOMAINS__%d__REQUIREAUTHENTICATION", p, i)] = "false"
		}
	}
	host := "upstream." + k.Namespace + ".svc.cluster.local"
	gatewayEnv := map[string]string{"GATEWAY__LISTEN": ":8443", "GATEWAY__HTTPLISTEN": ":8081", "GATEWAY__ADMINLISTEN": "0.0.0.0:9091",
		"GATEWAY__ORIGIN": "http://127.0.0.1:8080", "GATEWAY__SITES__0__NAME": "upstream", "GATEWAY__SITES__0__HOSTS__0": host,
		"GATEWAY__SITES__0__DOMAINS__0": "primary", "GATEWAY__SITES__0__DOMAINS__1": "community",
		"GATEWAY__SITES__0__CERTFILE": "/tls/tls.crt", "GATEWAY__SITES__0__KEYFILE": "/tls/tls.key",
		"GATEWAY__SITES__0__HTPASSWDFILE": "/auth/upstream.htpasswd"}
	vol.PersistentVolumeClaim.ReadOnly = true
	k.Services = append(k.Services, corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "upstream", Namespace: k.Namespace},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "upstream"}, Ports: []corev1.ServicePort{
			{Name: "https", Port: 8443, TargetPort: intstr.FromString("https")}, {Name: "admin", Port: 9090}}}})
	rp := k.StartPod(t, Pod{Name: "upstream-0", Labels: map[string]string{"app": "upstream"}, Spec: corev1.PodSpec{
		SecurityContext: psc, EnableServiceLinks: ptr(false), AutomountServiceAccountToken: ptr(false), Volumes: []corev1.Volume{vol,
			{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "upstream-tls", DefaultMode: ptr[int32](0o440)}}},
			{Name: "auth", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "upstream-htpasswd", DefaultMode: ptr[int32](0o440)}}}},
		Containers: []corev1.Container{{Name: "origin", Image: image, SecurityContext: csc, Args: []string{"origin"}, Env: env(originEnv),
			Ports:          []corev1.ContainerPort{{Name: "admin", ContainerPort: 9090}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health/ready", Port: intstr.FromString("admin")}}},
			VolumeMounts:   []corev1.VolumeMount{{Name: "exports", MountPath: "/exports"}},
		}, {Name: "gateway", Image: image, SecurityContext: csc, Args: []string{"gateway"}, Env: env(gatewayEnv),
			Ports:          []corev1.ContainerPort{{Name: "https", ContainerPort: 8443}, {Name: "gw-admin", ContainerPort: 9091}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health/ready", Port: intstr.FromString("gw-admin")}}},
			VolumeMounts: []corev1.VolumeMount{{Name: "tls", MountPath: "/tls", ReadOnly: true},
				{Name: "auth", MountPath: "/auth", ReadOnly: true}},
		}}}})
	return pub, rp
}

// checkRestricted asserts what Docker says about a running container: user
// 65532, read-only root, no capabilities, no-new-privileges.
func checkRestricted(t *testing.T, container string) {
	t.Helper()
	out, err := dockerRun(time.Minute, "inspect", "--format",
		"{{.Config.User}}|{{.HostConfig.ReadonlyRootfs}}|{{.HostConfig.CapDrop}}|{{.HostConfig.SecurityOpt}}|{{.State.Running}}", container)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(out), "65532:65532|true|[ALL]|[no-new-privileges]|true"; got != want {
		t.Errorf("docker inspect %s: %s, want %s", container, got, want)
	}
}

// TestKubeletRunsPods checks the emulator against the Docker engine with
// hand-written pods: a job writes a claim that a second pod serves (the
// claim is shared), its two containers (origin and gateway) talk over the
// pod's localhost and are ready by their probes, run as 65532 on a
// read-only root, and a third pod reaches the pod by its Service name.
func TestKubeletRunsPods(t *testing.T) {
	requireDocker(t)
	repo, tag := buildImage(t)
	k := NewKubelet(t, "mirror")
	chartSecrets(t, k)
	_, up := startUpstream(t, k, repo+":"+tag)
	for _, c := range up.Containers {
		checkRestricted(t, c)
	}
	psc, csc := restricted()
	for _, tc := range []struct {
		url  string
		exit int
	}{
		{"http://upstream.$(NS).svc.cluster.local:9090/health/ready", 0},
		{"http://upstream:9090/health/ready", 0},
		{"http://nosuchservice:9090/health/ready", 1},
		// The gateway's admin port is a container port, not a Service port:
		// still reachable at the pod (Services are names, not a proxy).
		{"http://upstream:9091/health/ready", 0},
	} {
		res := k.RunJob(t, Pod{Name: "probe", Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, SecurityContext: psc, EnableServiceLinks: ptr(false), AutomountServiceAccountToken: ptr(false),
			Containers: []corev1.Container{{Name: "hc", Image: repo + ":" + tag, SecurityContext: csc,
				Env:  []corev1.EnvVar{{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}},
				Args: []string{"healthcheck", "--timeout", "3s", "--url", tc.url}}}}})
		if res.ExitCode != tc.exit {
			t.Errorf("healthcheck of %s from another pod: exit %d, want %d\n%v", tc.url, res.ExitCode, tc.exit, res.Logs)
		}
	}

	// Init containers run in order before the containers; a native sidecar
	// (restartPolicy Always) is started, passes its startupProbe, and is
	// reachable on the pod's localhost from the main container.
	image := repo + ":" + tag
	sidecarPod := func(initArgs []string) Pod {
		return Pod{Name: "with-sidecar", Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			SecurityContext: psc, EnableServiceLinks: ptr(false), AutomountServiceAccountToken: ptr(false),
			Volumes: []corev1.Volume{{Name: "exports", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "upstream-exports", ReadOnly: true}}}},
			InitContainers: []corev1.Container{
				{Name: "first", Image: image, SecurityContext: csc, Args: initArgs},
				{Name: "side", Image: image, SecurityContext: csc, RestartPolicy: ptr(corev1.ContainerRestartPolicyAlways),
					Args: []string{"origin", "--listen", "127.0.0.1:18080", "--admin-listen", "0.0.0.0:19090"},
					Env: []corev1.EnvVar{{Name: "CONCELIER__MIRROR__EXPORTROOT", Value: "/exports"}, {Name: "CONCELIER__MIRROR__ENABLED", Value: "true"},
						{Name: "CONCELIER__MIRROR__REQUIREAUTHENTICATION", Value: "false"}, {Name: "EXCITITOR__MIRROR__ENABLED", Value: "false"}},
					Ports:        []corev1.ContainerPort{{Name: "admin", ContainerPort: 19090}},
					StartupProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health/live", Port: intstr.FromString("admin")}}},
					VolumeMounts: []corev1.VolumeMount{{Name: "exports", MountPath: "/exports"}}},
			},
			Containers: []corev1.Container{{Name: "main", Image: image, SecurityContext: csc,
				Args: []string{"healthcheck", "--timeout", "3s", "--url", "http://127.0.0.1:19090/health/ready"}}}}}
	}
	res := k.RunJob(t, sidecarPod([]string{"version"}))
	if res.ExitCode != 0 || !strings.HasPrefix(res.Logs["first"], "stella-mirror ") {
		t.Errorf("pod with an init container and a native sidecar: exit %d\n%v", res.ExitCode, res.Logs)
	}
	if _, err := k.startPod(sidecarPod([]string{"no-such-command"}), true); err == nil || !strings.Contains(err.Error(), "initContainer first: exit 2") {
		t.Errorf("a failing init container: error %v, want one naming initContainer first and its exit status", err)
	}
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// renderFor renders values-mirror.yaml for the test's cluster: the local
// image, the test's upstream as the sync source, the pod CIDR as the
// origin's bypass network, plus extra --set pairs; it hands the rendered
// ConfigMaps, Services and claims to the Kubelet.
func renderFor(t *testing.T, k *Kubelet, repo, tag string, extra map[string]string) *Manifests {
	t.Helper()
	set := map[string]string{"image.repository": repo, "image.tag": tag,
		"sync.source": "https://upstream." + Namespace + ".svc.cluster.local:8443",
		"sync.caKey":  "upstream-ca.pem", "sync.basicAuthKey": "upstream-auth",
		"origin.bypassNetworks": "{" + k.PodCIDR + "}"}
	for key, v := range extra {
		set[key] = v
	}
	m := Render(t, []string{"charts/stella-mirror/values-mirror.yaml"}, set)
	for _, cm := range m.ConfigMaps {
		k.ConfigMaps[cm.Name] = cm
	}
	var svcs []corev1.Service
	for _, s := range k.Services {
		if s.Name == "upstream" {
			svcs = append(svcs, s)
		}
	}
	for _, s := range m.Services {
		svcs = append(svcs, *s)
	}
	k.Services = svcs
	for _, pvc := range m.PVCs {
		k.Claims[pvc.Name] = true
	}
	return m
}

// smoke runs `stella-mirror smoke` from the host against one site of a
// gateway pod (its https port, by the site's real name through
// --connect-to) with the origin check against the origin pod, and asserts
// that every check passes, the cache answers HIT, and the origin refuses
// the host (not in the pod CIDR) with a Bearer challenge.
func smoke(t *testing.T, site, gatewayIP, originIP, ca, pwFile string, pub string) {
	t.Helper()
	out, err := exec.Command(kubeletBin, "smoke", "--base", "https://mirror-"+site+".example.org:8443", "--domain", site,
		"--connect-to", net.JoinHostPort(gatewayIP, "8443"), "--user", "user-"+site, "--password-file", pwFile,
		"--cacert", ca, "--public-key", pub, "--origin", "http://"+net.JoinHostPort(originIP, "8080"), "--expect-cache").CombinedOutput()
	if err != nil {
		t.Fatalf("smoke %s against gateway %s: %v\n%s", site, gatewayIP, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 11 {
		t.Errorf("smoke %s: %d lines, want one per check (11):\n%s", site, len(lines), out)
	}
	for _, want := range []string{"PASS gateway-auth", "PASS index ", "PASS index-cache-control", "PASS manifest", "PASS bundle-jws",
		"PASS coherence ", "PASS excititor ", "PASS excititor-jws", "PASS cache-status", "PASS origin-auth", "SKIP budget"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("smoke %s: no %q line in:\n%s", site, want, out)
		}
	}
	if strings.Contains(string(out), "FAIL") {
		t.Errorf("smoke %s: a check failed:\n%s", site, out)
	}
	t.Logf("smoke %s via gateway %s: %d checks, exit 0", site, gatewayIP, len(lines))
}

// TestChartStartsLikeAKubelet renders the chart with values-mirror.yaml and
// starts its pods with the Docker engine the way a kubelet would: the sync
// CronJob's pod pulls the test's upstream into the exports claim, the
// origin and two gateway pods become ready by their own probes, and
// `stella-mirror smoke` passes for both sites on both gateways; the backup
// CronJob's pod writes a signed, encrypted archive; then with
// sync.mode=sidecar an origin pod syncs into its own emptyDir and the
// gateway in front of it passes smoke again.
func TestChartStartsLikeAKubelet(t *testing.T) {
	requireDocker(t)
	start := time.Now()
	repo, tag := buildImage(t)
	k := NewKubelet(t, Namespace)
	l := chartSecrets(t, k)
	syncPub, _ := startUpstream(t, k, repo+":"+tag)
	l.syncSecret(t, k, syncPub)
	ca, passwords, ageID := l.ca, l.passwords, l.ageID
	pubFile := filepath.Join(t.TempDir(), "fixture.pub.pem")
	if err := os.WriteFile(pubFile, syncPub, 0o644); err != nil {
		t.Fatal(err)
	}
	m := renderFor(t, k, repo, tag, nil)
	t.Logf("image, upstream, secrets and render: %.1fs", time.Since(start).Seconds())

	var origin *RunningPod
	var gateways []*RunningPod
	t.Run("cronjob mode", func(t *testing.T) {
		phase := time.Now()
		res := k.RunJob(t, PodFromCronJob(m.CronJob(Fullname+"-sync")))
		if res.ExitCode != 0 {
			t.Fatalf("sync job exit %d:\n%v", res.ExitCode, res.Logs)
		}
		exports := k.ClaimDir(Fullname + "-exports")
		if target, err := os.Readlink(filepath.Join(exports, "latest")); err != nil || target == "" {
			t.Fatalf("the sync job published no export (latest: %q, %v)", target, err)
		}
		origin = k.StartPod(t, PodFromDeployment(m.Deployment(Fullname+"-origin"), 0))
		for i := 0; i < 2; i++ {
			gateways = append(gateways, k.StartPod(t, PodFromDeployment(m.Deployment(Fullname+"-gateway"), i)))
		}
		t.Logf("sync job, origin and 2 gateways ready: %.1fs", time.Since(phase).Seconds())
		for _, gw := range gateways {
			for _, site := range []string{"primary", "community"} {
				smoke(t, site, gw.IP, origin.IP, ca, passwords[site], pubFile)
			}
		}
		checkRestricted(t, origin.Containers["origin"])
		for _, gw := range gateways {
			checkRestricted(t, gw.Containers["gateway"])
		}

		// gateway.cache.medium=Memory: the cache on a tmpfs emptyDir, sized
		// within the memory limit (the chart refuses a tmpfs above it).
		mm := renderFor(t, k, repo, tag, map[string]string{"gateway.cache.medium": "Memory", "gateway.cache.maxSizeMiB": "256"})
		gw := k.StartPod(t, PodFromDeployment(mm.Deployment(Fullname+"-gateway"), 2))
		gateways = append(gateways, gw)
		if typ, err := dockerRun(time.Minute, "volume", "inspect", "--format", "{{.Options.type}}", gw.Volumes["cache"]); err != nil || strings.TrimSpace(typ) != "tmpfs" {
			t.Errorf("medium Memory cache volume %q: type %q, %v", gw.Volumes["cache"], typ, err)
		}
		smoke(t, "primary", gw.IP, origin.IP, ca, passwords["primary"], pubFile)
	})
	if t.Failed() {
		return
	}

	t.Run("backup", func(t *testing.T) {
		res := k.RunJob(t, PodFromCronJob(m.CronJob(Fullname+"-backup")))
		if res.ExitCode != 0 {
			t.Fatalf("backup job exit %d:\n%v", res.ExitCode, res.Logs)
		}
		archives, _ := filepath.Glob(filepath.Join(k.ClaimDir(Fullname+"-backup"), "*.tar.gz.age"))
		if len(archives) != 1 {
			t.Fatalf("backup claim holds %q, want one .tar.gz.age archive\n%v", archives, res.Logs)
		}
		names := archiveNames(t, archives[0], ageID)
		for _, want := range []string{"/MANIFEST.json", "/MANIFEST.sig", "/SHA256SUMS",
			"/files/etc/stella-mirror/tls/primary/tls.crt", "/files/run/secrets/htpasswd/community.htpasswd",
			"/files/run/secrets/sync/signing.pub.pem", "/files/etc/stella-mirror/profile/gateway.env"} {
			if !slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, want) }) {
				t.Errorf("archive %s has no …%s; it holds:\n%s", filepath.Base(archives[0]), want, strings.Join(names, "\n"))
			}
		}
	})

	t.Run("sidecar mode", func(t *testing.T) {
		phase := time.Now()
		k.StopPod(t, origin)
		for _, gw := range gateways { // the three of cronjob mode
			k.StopPod(t, gw)
		}
		ms := renderFor(t, k, repo, tag, map[string]string{"sync.mode": "sidecar"})
		if ms.CronJob(Fullname+"-sync") != nil {
			t.Fatal("sync.mode=sidecar still renders the sync CronJob")
		}
		op := PodFromDeployment(ms.Deployment(Fullname+"-origin"), 0)
		if len(op.Spec.Containers)+len(op.Spec.InitContainers) < 2 {
			t.Fatalf("sidecar mode: the origin pod has no sync container: %+v", op.Spec.Containers)
		}
		origin := k.StartPod(t, op)
		gw := k.StartPod(t, PodFromDeployment(ms.Deployment(Fullname+"-gateway"), 0))
		t.Logf("sidecar origin (synced into its emptyDir) and a gateway ready: %.1fs", time.Since(phase).Seconds())
		if _, err := os.Readlink(filepath.Join(origin.Volumes["exports"], "latest")); err != nil {
			t.Errorf("the sync sidecar published nothing into the pod's exports emptyDir: %v", err)
		}
		for _, site := range []string{"primary", "community"} {
			smoke(t, site, gw.IP, origin.IP, ca, passwords[site], pubFile)
		}
		for _, c := range origin.Containers { // origin and its sync sidecar
			checkRestricted(t, c)
		}
	})
	t.Logf("total %.1fs", time.Since(start).Seconds())
}

// archiveNames decrypts a backup archive with the age identity and lists
// its entries.
func archiveNames(t *testing.T, file string, id *age.X25519Identity) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := age.Decrypt(f, id)
	if err != nil {
		t.Fatalf("age decrypt %s: %v", file, err)
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for i := 0; i < 10000; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("reading %s: %v", file, err)
		}
		names = append(names, h.Name)
	}
	t.Fatalf("%s: more than 10000 entries", file)
	return nil
}

// TestChartPodsWithinContract checks every pod the chart renders against
// the emulator's contract, without Docker: the value sets the tests start
// are accepted, and a value set that makes the chart use a feature outside
// the contract (ports below 1024 add a sysctl) is refused naming it.
func TestChartPodsWithinContract(t *testing.T) {
	mirror := []string{"charts/stella-mirror/values-mirror.yaml"}
	for _, tc := range []struct {
		name   string
		values []string
		set    map[string]string
		refuse string // "" accepted; else the refusal names this
	}{
		{"defaults", nil, nil, ""},
		{"values-mirror", mirror, nil, ""},
		{"values-mirror sidecar", mirror, map[string]string{"sync.mode": "sidecar"}, ""},
		{"values-mirror memory cache", mirror, map[string]string{"gateway.cache.medium": "Memory", "gateway.cache.maxSizeMiB": "512"}, ""},
		{"values-mirror port 443", mirror, map[string]string{"gateway.ports.https": "443", "gateway.ports.http": "80"}, "sysctls not emulated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Render(t, tc.values, tc.set)
			k := testKubelet(t)
			for _, s := range m.Services {
				k.Services = append(k.Services, *s)
			}
			var errs []string
			for _, w := range m.Workloads() {
				p := Pod{Name: w.Name, Namespace: Namespace, Labels: w.Labels, Spec: *w.Pod}
				err := validatePod(p)
				if err == nil {
					_, err = k.serviceAliases(p)
				}
				if err != nil {
					errs = append(errs, err.Error())
				}
			}
			got := strings.Join(errs, "\n")
			switch {
			case tc.refuse == "" && got != "":
				t.Errorf("refused:\n%s", got)
			case tc.refuse != "" && !strings.Contains(got, tc.refuse):
				t.Errorf("refusals %q, want one naming %q", got, tc.refuse)
			}
		})
	}
}

// TestEnvOverridesEnvFrom: as in the kubelet, an env entry replaces the
// value an envFrom source gave the same name (one variable, env's value),
// and a later envFrom source replaces an earlier one.
func TestEnvOverridesEnvFrom(t *testing.T) {
	k := testKubelet(t)
	k.ConfigMaps["second"] = &corev1.ConfigMap{Data: map[string]string{"ORIGIN__LISTEN": ":9999", "ONLY_SECOND": "2"}}
	p := basePod()
	c := p.Spec.Containers[0]
	c.EnvFrom = append(c.EnvFrom, corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "second"}}})
	env, vars, err := k.containerEnv(p, c, "172.18.0.5")
	if err != nil {
		t.Fatal(err)
	}
	if vars["ORIGIN__LISTEN"] != ":9999" || vars["ONLY_SECOND"] != "2" {
		t.Errorf("a later envFrom source does not win: %v", vars)
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: "ORIGIN__LISTEN", Value: "127.0.0.1:1"})
	env, vars, err = k.containerEnv(p, c, "172.18.0.5")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range env {
		if e.name == "ORIGIN__LISTEN" {
			n++
			if e.value != "127.0.0.1:1" {
				t.Errorf("env does not override envFrom: ORIGIN__LISTEN=%q", e.value)
			}
		}
	}
	if n != 1 || vars["ORIGIN__LISTEN"] != "127.0.0.1:1" {
		t.Errorf("ORIGIN__LISTEN passed %d times, value %q; want once, the env's", n, vars["ORIGIN__LISTEN"])
	}
}
