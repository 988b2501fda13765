package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// units are the files this directory ships.
var units = []string{
	"stella-mirror-sync@.service",
	"stella-mirror-sync@.timer",
	"stella-mirror-origin.service",
	"stella-mirror-gateway.service",
	"stella-mirror-backup.service",
	"stella-mirror-backup.timer",
}

// TestUnitsVerify runs `systemd-analyze verify` on every unit (the
// templates instantiated as @test) with ExecStart pointing at an existing
// binary, and fails on any message about our units.
func TestUnitsVerify(t *testing.T) {
	analyze := testenv.Tool(t, "systemd-analyze", "systemd")
	bin := os.Getenv("STELLA_MIRROR_BIN")
	if bin == "" {
		bin = "/bin/true"
	}
	dir := t.TempDir()
	// Probe: systemd-analyze must be able to run here at all.
	probe := filepath.Join(dir, "probe.service")
	os.WriteFile(probe, []byte("[Service]\nType=oneshot\nExecStart=/bin/true\n"), 0o644)
	if out, err := exec.Command(analyze, "verify", "--man=no", probe).CombinedOutput(); err != nil {
		testenv.Missing(t, "systemd-analyze cannot run in this environment (%v): %s", err, out)
	}
	var args []string
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(data), "/usr/local/bin/stella-mirror", bin)
		for _, name := range []string{u, strings.Replace(u, "@.", "@test.", 1)} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		args = append(args, filepath.Join(dir, strings.Replace(u, "@.", "@test.", 1)))
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "stella-mirror") {
			t.Errorf("systemd-analyze: %s", line)
		}
	}
}

// TestUnitsHardened checks the settings the operations guide promises.
func TestUnitsHardened(t *testing.T) {
	want := map[string][]string{
		"stella-mirror-sync@.service": {"Type=oneshot", "ProtectSystem=strict", "ReadWritePaths=/srv/stella-mirror/exports",
			"NoNewPrivileges=yes", "PrivateTmp=yes", "LoadCredential=", "SuccessExitStatus=75"},
		"stella-mirror-sync@.timer":     {"OnCalendar=*:0/5", "Persistent=true", "RandomizedDelaySec="},
		"stella-mirror-origin.service":  {"ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes"},
		"stella-mirror-gateway.service": {"ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "LoadCredential=htpasswd:"},
		"stella-mirror-backup.service": {"Type=oneshot", "ProtectSystem=strict", "ReadWritePaths=/var/backups/stella-mirror",
			"NoNewPrivileges=yes", "PrivateTmp=yes", "PrivateNetwork=yes", "CapabilityBoundingSet=CAP_DAC_READ_SEARCH", "UMask=0077",
			"ExecStart=/usr/local/bin/stella-mirror backup --out /var/backups/stella-mirror --keep-daily 30 --keep-monthly 12 $BACKUP_ARGS"},
		"stella-mirror-backup.timer": {"OnCalendar=*-*-* 02:00:00", "Persistent=true", "RandomizedDelaySec=", "Unit=stella-mirror-backup.service"},
	}
	for unit, lines := range want {
		data, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if !strings.Contains(string(data), "\n"+l) {
				t.Errorf("%s lacks %q", unit, l)
			}
		}
	}
}
