package faults

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// bin is the stella-mirror binary under test: STELLA_MIRROR_BIN (what
// `make test` and `make faults` build), else built once per package run.
var bin string

func TestMain(m *testing.M) {
	os.Exit(testenv.MainWithBinary(m, &bin))
}

// full reports whether the whole suite runs (`make faults`).
func full() bool { return os.Getenv("STELLA_MIRROR_FAULTS") == "full" && !testing.Short() }

// iterations is n for the full suite, 3 for the quick cases.
func iterations(n int) int {
	if full() {
		return n
	}
	return 3
}

// requireTool skips the test when tool is missing, and fails it when CI is set.
func requireTool(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		testenv.Missing(t, "%s is not installed (scripts/test-deps installs it)", tool)
	}
	return p
}

// exitCode is the exit status of a finished command (-1 when it was
// killed by a signal).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -2
}

// procsMentioning returns the pids (not this process) whose command line
// contains s, with their command lines.
func procsMentioning(s string) map[int]string {
	found := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(s)) {
			continue
		}
		// A zombie (already dead, waiting for its parent) writes nothing.
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i > 0 && len(st) > i+2 && st[i+2] == 'Z' {
				continue
			}
		}
		found[pid] = strings.ReplaceAll(string(bytes.TrimRight(b, "\x00")), "\x00", " ")
	}
	return found
}

// orphans waits (bounded: 1 s, polling /proc) for every process whose
// command line mentions dir to go away, after the process that started
// them was killed and reaped: a child that dies with its parent (parent-
// death signal, process group) is gone by then, one that goes on writing
// is not. It returns those still alive then, and SIGKILLs them so that
// the next case starts clean (they are this test's descendants). seen is
// how many were alive right after the kill.
func orphans(dir string) (left []string, seen int) {
	deadline := time.Now().Add(time.Second)
	for {
		alive := procsMentioning(dir)
		if seen == 0 {
			seen = len(alive)
		}
		if len(alive) == 0 {
			return nil, seen
		}
		if time.Now().After(deadline) {
			for pid, cmd := range alive {
				left = append(left, fmt.Sprintf("pid %d: %s", pid, cmd))
				syscall.Kill(pid, syscall.SIGKILL)
			}
			return left, seen
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockFree reports whether the sync lock of root can be taken now (and
// releases it at once).
func lockFree(root string) error {
	f, err := os.OpenFile(filepath.Join(root, ".sync.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("flock %s: %w", f.Name(), err)
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
