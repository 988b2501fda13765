package helm

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestProbesAnswerOnTheAdminListener runs the origin and the gateway with
// the chart's rendered environments (listeners moved to free loopback
// ports, the Secrets' files and an export laid out as the pods see them)
// and sends every probe of their containers, as the kubelet would, to the
// listener the probe's port names: each answers 200.
func TestProbesAnswerOnTheAdminListener(t *testing.T) {
	bin := chartBinary(t)
	m := Render(t, []string{mirrorValues}, nil)
	p := newPodFS(t, bin, m)

	// The loopback port standing in for each container port, per component.
	originPorts := map[string]int{"http": freeLoopbackPort(t), "admin": freeLoopbackPort(t)}
	gatewayPorts := map[string]int{"https": freeLoopbackPort(t), "http": freeLoopbackPort(t), "admin": freeLoopbackPort(t)}

	originEnv := copyMap(p.env(t, m, "origin-env"))
	originEnv["ORIGIN__LISTEN"] = fmt.Sprintf("127.0.0.1:%d", originPorts["http"])
	originEnv["ORIGIN__ADMINLISTEN"] = fmt.Sprintf("127.0.0.1:%d", originPorts["admin"])
	originLogs := p.start(t, originEnv, "origin")

	gatewayEnv := copyMap(p.env(t, m, "gateway-env"))
	gatewayEnv["GATEWAY__LISTEN"] = fmt.Sprintf("127.0.0.1:%d", gatewayPorts["https"])
	gatewayEnv["GATEWAY__HTTPLISTEN"] = fmt.Sprintf("127.0.0.1:%d", gatewayPorts["http"])
	gatewayEnv["GATEWAY__ADMINLISTEN"] = fmt.Sprintf("127.0.0.1:%d", gatewayPorts["admin"])
	gatewayEnv["GATEWAY__ORIGIN"] = fmt.Sprintf("http://127.0.0.1:%d", originPorts["http"])
	gatewayEnv["GATEWAY__ORIGINSTATUSURL"] = fmt.Sprintf("http://127.0.0.1:%d/status.json", originPorts["admin"])
	gatewayLogs := p.start(t, gatewayEnv, "gateway")

	for _, tc := range []struct {
		deployment, container string
		ports                 map[string]int
		logs                  fmt.Stringer
	}{
		{Fullname + "-origin", "origin", originPorts, originLogs},
		{Fullname + "-gateway", "gateway", gatewayPorts, gatewayLogs},
	} {
		c := findContainer(&m.Deployment(tc.deployment).Spec.Template.Spec, tc.container)
		probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
		for _, name := range []string{"startup", "liveness", "readiness"} {
			pr := probes[name]
			if pr == nil || pr.HTTPGet == nil {
				t.Errorf("%s: no %s httpGet probe", tc.container, name)
				continue
			}
			var portName string
			for _, cp := range c.Ports {
				if (pr.HTTPGet.Port.StrVal != "" && cp.Name == pr.HTTPGet.Port.StrVal) || cp.ContainerPort == pr.HTTPGet.Port.IntVal {
					portName = cp.Name
				}
			}
			local, ok := tc.ports[portName]
			if !ok {
				t.Errorf("%s %s probe: port %s is none of the container's listeners", tc.container, name, pr.HTTPGet.Port.String())
				continue
			}
			url := fmt.Sprintf("http://127.0.0.1:%d%s", local, pr.HTTPGet.Path)
			if ok, d := waitStatus(url, 200); !ok {
				t.Errorf("%s %s probe %s (container port %s): %s\nlogs:\n%s", tc.container, name, pr.HTTPGet.Path, portName, d, tc.logs.String())
			} else {
				t.Logf("%s %s probe: GET %s on the %s listener answers 200", tc.container, name, pr.HTTPGet.Path, portName)
			}
		}
	}
}

func copyMap(in map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}
