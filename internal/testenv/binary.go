package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BinaryEnv names the stella-mirror binary the tests run when set (`make
// test` and `make faults` build it once and set it).
const BinaryEnv = "STELLA_MIRROR_BIN"

// Binary returns the stella-mirror binary for tests that run it as a
// process: $STELLA_MIRROR_BIN, else one built now (static, CGO_ENABLED=0)
// into a temporary directory that cleanup removes. For TestMain, where no
// *testing.T exists yet.
func Binary() (path string, cleanup func(), err error) {
	if b := os.Getenv(BinaryEnv); b != "" {
		return b, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "stella-mirror-bin-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "stella-mirror")
	cmd := exec.Command("go", "build", "-o", path, "github.com/stella-ops/stella-mirror/cmd/stella-mirror")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("building stella-mirror: %v\n%s", err, out)
	}
	return path, cleanup, nil
}

// MainWithBinary is a TestMain body: it sets *bin to Binary's result,
// runs the tests and removes a binary it built. Use it as
// os.Exit(testenv.MainWithBinary(m, &bin)).
func MainWithBinary(m interface{ Run() int }, bin *string) int {
	b, cleanup, err := Binary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	*bin = b
	return m.Run()
}
