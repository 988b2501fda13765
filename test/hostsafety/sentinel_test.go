package hostsafety

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestWithSentinel checks scripts/with-sentinel, which `make test` runs
// `go test` under: a run that leaves its sentinel (a process named nginx)
// alone keeps its exit status; a run that ends the sentinel fails naming
// it, whatever its own status; the sentinel never outlives the script.
// Here the commands end the sentinel by the pid the script exports, which
// is what `pkill -x nginx` would do to it (and to every other nginx).
func TestWithSentinel(t *testing.T) {
	script, err := filepath.Abs("../../scripts/with-sentinel")
	if err != nil {
		t.Fatal(err)
	}
	pidRe := regexp.MustCompile(`named nginx \(pid (\d+)`)
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		stopped bool
	}{
		{"leaves it alone", []string{"true"}, 0, false},
		{"own failure kept", []string{"sh", "-c", "exit 3"}, 3, false},
		{"sees its name", []string{"sh", "-c", `test "$(cat /proc/$STELLA_MIRROR_SENTINEL_PID/comm)" = nginx`}, 0, false},
		{"stopped", []string{"sh", "-c", `kill "$STELLA_MIRROR_SENTINEL_PID"`}, 1, true},
		{"killed, own failure kept", []string{"sh", "-c", `kill -9 "$STELLA_MIRROR_SENTINEL_PID"; exit 4`}, 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(script, tc.args...).CombinedOutput()
			code := 0
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, out)
			}
			if got := strings.Contains(string(out), "was stopped during the run"); got != tc.stopped {
				t.Errorf("reports stopped %v, want %v\n%s", got, tc.stopped, out)
			}
			m := pidRe.FindSubmatch(out)
			if m == nil {
				t.Fatalf("no sentinel pid in the output:\n%s", out)
			}
			pid, _ := strconv.Atoi(string(m[1]))
			// The script stopped and reaped it: no process named nginx
			// has its pid now (read from /proc; nothing is signalled).
			if procComm(pid) == "nginx" {
				t.Errorf("sentinel pid %d still exists after the script", pid)
			}
		})
	}
}

// procComm is the command name of pid, or "" when it cannot be read.
func procComm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
