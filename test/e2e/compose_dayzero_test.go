package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitLogLine follows `compose logs -f service` until a JSON line with
// msg appears, and returns it; the follow process ends with the timeout
// or when the line was seen (event-driven: no polling, no sleep).
func (s *stack) waitLogLine(t *testing.T, service, msg string, timeout time.Duration) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := append(append([]string{}, s.tool.argv...), "-p", s.project,
		"-f", filepath.Join(s.root, "compose", "docker-compose.mirror.yaml"),
		"--env-file", filepath.Join(s.root, "compose", "env", "mirror.env.example"),
		"logs", "-f", "--no-color", "--no-log-prefix", service)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), s.env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '{'); i > 0 {
			line = line[i:]
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			return m
		}
	}
	t.Fatalf("no %q line in the %s log within %s", msg, service, timeout)
	return nil
}

// originOutage stops the origin container and starts it again: the
// gateway (whose health check probes the origin every second) logs
// "origin unreachable" and then "origin reachable again" with the
// outage's duration, in JSON with the common fields, and its metrics
// (read inside the container with `stella-mirror status --metrics`) say
// origin_up 0 with an unreachable count, then origin_up 1.
func (s *stack) originOutage(t *testing.T) {
	s.mustCompose(2*time.Minute, "stop", "origin")
	down := s.waitLogLine(t, "gateway", "origin unreachable", 90*time.Second)
	if down["level"] != "WARN" || down["component"] != "gateway" || down["reason"] == nil {
		t.Errorf("origin unreachable line: %v", down)
	}
	m := s.gatewayMetrics(t)
	if !strings.Contains(m, "\nstella_mirror_gateway_origin_up 0\n") || !strings.Contains(m, "stella_mirror_gateway_origin_unreachable_total{reason=") {
		t.Errorf("metrics during the outage lack origin_up 0 and an unreachable count:\n%s", grepLines(m, "origin_"))
	}
	s.mustCompose(2*time.Minute, "start", "origin")
	up := s.waitLogLine(t, "gateway", "origin reachable again", 2*time.Minute)
	if d, ok := up["down_duration_s"].(float64); !ok || d <= 0 {
		t.Errorf("origin reachable again line: %v, want down_duration_s > 0", up)
	}
	if m := s.gatewayMetrics(t); !strings.Contains(m, "\nstella_mirror_gateway_origin_up 1\n") {
		t.Errorf("metrics after the outage lack origin_up 1:\n%s", grepLines(m, "origin_"))
	}
}

// gatewayMetrics reads the gateway's /metrics inside its container (the
// admin listener is on the container's loopback).
func (s *stack) gatewayMetrics(t *testing.T) string {
	t.Helper()
	out, err := s.compose(time.Minute, "exec", "-T", "gateway", "/stella-mirror", "status", "--metrics")
	if err != nil {
		t.Fatalf("compose exec gateway stella-mirror status --metrics: %v\n%s", err, out)
	}
	return "\n" + out
}

// grepLines returns the lines of text that contain sub.
func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
