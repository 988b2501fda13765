package helm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

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
		{"service NodePort", func(p *Pod, k *Kubelet) {
			k.Services = []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "origin"}, Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "origin"},
				Ports: []corev1.ServicePort{{Port: 8080}}}}}
		}, "type NodePort not emulated"},
		{"service externalTrafficPolicy", func(p *Pod, k *Kubelet) {
			k.Services = []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "origin"}, Spec: corev1.ServiceSpec{
				ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal, Selector: map[string]string{"app": "origin"},
				Ports: []corev1.ServicePort{{Port: 8080}}}}}
		}, "externalTrafficPolicy not emulated"},
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

func TestMain(m *testing.M) {
	os.Exit(testenv.MainWithBinary(m, &kubeletBin))
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

// buildImage builds the project's FROM scratch image from the binary under
// test with compose/build-image.sh, under a tag of the test's own.
func buildImage(t *testing.T) (repo, tag string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	repo, tag = "stella-mirror-kubelet-test", hex.EncodeToString(rnd[:])
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(root, "compose", "build-image.sh"), kubeletBin, repo+":"+tag, "kubelet-test").CombinedOutput()
	if err != nil {
		t.Fatalf("build-image.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = dockerRun(time.Minute, "rmi", "-f", repo+":"+tag) })
	t.Logf("image %s:%s built in %.1fs", repo, tag, time.Since(start).Seconds())
	return repo, tag
}

// restricted is the security context every pod of the tests runs with, the
// chart's own: non-root 65532, read-only root, no capabilities.
func restricted() (*corev1.PodSecurityContext, *corev1.SecurityContext) {
	return &corev1.PodSecurityContext{RunAsUser: ptr[int64](65532), RunAsGroup: ptr[int64](65532), RunAsNonRoot: ptr(true),
			FSGroup: ptr[int64](65532), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		&corev1.SecurityContext{ReadOnlyRootFilesystem: ptr(true), AllowPrivilegeEscalation: ptr(false),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
}

// startUpstream is the test's upstream mirror, run by the emulator too: a
// job writes a signed fixture export (seed 7) into the claim
// "upstream-exports", then an origin pod serves it without authentication
// behind the Service "upstream" (port 8080, admin 9090). It returns the
// fixture's public key (PEM) and the origin pod.
func startUpstream(t *testing.T, k *Kubelet, image string) ([]byte, *RunningPod) {
	t.Helper()
	k.Claims["upstream-exports"] = true
	psc, csc := restricted()
	vol := corev1.Volume{Name: "exports", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "upstream-exports"}}}
	fixture := Pod{Name: "upstream-fixture", Labels: map[string]string{"job": "fixture"}, Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever, SecurityContext: psc, Volumes: []corev1.Volume{vol},
		Containers: []corev1.Container{{Name: "fixture", Image: image, SecurityContext: csc,
			Args:         []string{"fixture", "--out", "/exports", "--seed", "7", "--bundle-size", "256KiB", "--vex-size", "64KiB"},
			VolumeMounts: []corev1.VolumeMount{{Name: "exports", MountPath: "/exports"}}}}}}
	res := k.RunJob(fixture)
	if res.ExitCode != 0 {
		t.Fatalf("fixture job exit %d:\n%v", res.ExitCode, res.Logs)
	}
	pub, err := os.ReadFile(filepath.Join(k.ClaimDir("upstream-exports"), "fixture-signing.pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var env []corev1.EnvVar
	for k, v := range map[string]string{"ORIGIN__LISTEN": "0.0.0.0:8080", "ORIGIN__ADMINLISTEN": "0.0.0.0:9090"} {
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	for _, p := range []string{"CONCELIER", "EXCITITOR"} {
		root := "CONCELIER__MIRROR__EXPORTROOT"
		if p == "EXCITITOR" {
			root = "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT"
		}
		env = append(env, corev1.EnvVar{Name: p + "__MIRROR__ENABLED", Value: "true"}, corev1.EnvVar{Name: root, Value: "/exports"},
			corev1.EnvVar{Name: p + "__MIRROR__REQUIREAUTHENTICATION", Value: "false"})
		for i, d := range []string{"primary", "community"} {
			env = append(env, corev1.EnvVar{Name: fmt.Sprintf("%s__MIRROR__DOMAINS__%d__ID", p, i), Value: d},
				corev1.EnvVar{Name: fmt.Sprintf("%s__MIRROR__DOMAINS__%d__REQUIREAUTHENTICATION", p, i), Value: "false"})
		}
	}
	sort.Slice(env, func(i, j int) bool { return env[i].Name < env[j].Name })
	vol.PersistentVolumeClaim.ReadOnly = true
	k.Services = append(k.Services, corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "upstream", Namespace: k.Namespace},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "upstream"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 8080, TargetPort: intstr.FromString("http")}, {Name: "admin", Port: 9090}}}})
	rp := k.StartPod(Pod{Name: "upstream-0", Labels: map[string]string{"app": "upstream"}, Spec: corev1.PodSpec{
		SecurityContext: psc, Volumes: []corev1.Volume{vol},
		Containers: []corev1.Container{{Name: "origin", Image: image, SecurityContext: csc, Args: []string{"origin"}, Env: env,
			Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "admin", ContainerPort: 9090}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health/ready", Port: intstr.FromString("admin")}}},
			VolumeMounts:   []corev1.VolumeMount{{Name: "exports", MountPath: "/exports"}}}}}})
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
// claim is shared), the server is ready by its probe, runs as 65532 on a
// read-only root, and a third pod reaches it by its Service name.
func TestKubeletRunsPods(t *testing.T) {
	requireDocker(t)
	repo, tag := buildImage(t)
	k := NewKubelet(t, "mirror")
	_, up := startUpstream(t, k, repo+":"+tag)
	checkRestricted(t, up.Containers["origin"])
	psc, csc := restricted()
	for _, tc := range []struct {
		host string
		exit int
	}{{"upstream.$(NS).svc.cluster.local", 0}, {"upstream", 0}, {"nosuchservice", 1}} {
		res := k.RunJob(Pod{Name: "probe", Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, SecurityContext: psc,
			Containers: []corev1.Container{{Name: "hc", Image: repo + ":" + tag, SecurityContext: csc,
				Env:  []corev1.EnvVar{{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}},
				Args: []string{"healthcheck", "--timeout", "3s", "--url", "http://" + tc.host + ":9090/health/ready"}}}}})
		if res.ExitCode != tc.exit {
			t.Errorf("healthcheck of %s from another pod: exit %d, want %d\n%v", tc.host, res.ExitCode, tc.exit, res.Logs)
		}
	}
}
