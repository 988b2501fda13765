package backup

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// TestNoComponentDependencies: package backup depends on what it checks
// only through the functions it is given (Options.Load,
// RestoreOptions.References and Validate), never on a component.
func TestNoComponentDependencies(t *testing.T) {
	gobin := testenv.Tool(t, "go", "golang-go")
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"/gateway", "/origin", "/mirrorsync", "/deploy/", "/backup/profile"} {
			if strings.HasPrefix(dep, "github.com/stella-ops/stella-mirror") && strings.Contains(dep, banned) {
				t.Errorf("package backup depends on %s", dep)
			}
		}
	}
}
