package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/stella-ops/stella-mirror/backup"
)

// killProfile writes a sync configuration whose bearer token is a known
// secret and an 8 GiB sparse file (no disk space) that keeps a backup busy
// streaming it for far longer than the test needs to signal it.
type killProfile struct {
	dir, config, big, out, secret, recipient string
}

func newKillProfile(t *testing.T) killProfile {
	t.Helper()
	dir := t.TempDir()
	p := killProfile{dir: dir, config: filepath.Join(dir, "sync.env"), big: filepath.Join(dir, "big.bin"),
		out: filepath.Join(dir, "backups"), secret: "s3cr3t-upstream-token-4f1c9a"}
	token := filepath.Join(dir, "upstream-token")
	if err := os.WriteFile(token, []byte(p.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := "SYNC__SOURCE=https://upstream.example\nSYNC__DEST=" + filepath.Join(dir, "exports") + "\nSYNC__BEARERTOKENFILE=" + token + "\n"
	if err := os.WriteFile(p.config, []byte(env), 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p.big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	p.recipient = id.Recipient().String()
	return p
}

// startBackup runs the real command (this test binary as stella-mirror)
// and returns once it has created its partial archive, with that path and
// a function that returns its stderr once it has exited.
func (p killProfile) startBackup(t *testing.T) (*exec.Cmd, string, func() string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "backup", "--config", p.config, "--include", p.big, "--out", p.out, "--age-recipient", p.recipient)
	cmd.Env = append(os.Environ(), "STELLA_MIRROR_TEST_RUN_MAIN=1")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close() // the child holds its own copy: EOF when it exits
	t.Cleanup(func() { r.Close() })
	cmd.Stderr, cmd.Stdout = w, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() }) // no-op once it exited
	w.Close()
	var log bytes.Buffer
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		log.WriteString(line)
		if partial, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "writing "); ok {
			// Keep draining stderr so the command never blocks on it.
			rest := make(chan struct{})
			go func() { io.Copy(&log, br); close(rest) }()
			t.Cleanup(func() { <-rest })
			return cmd, partial, func() string { <-rest; return log.String() }
		}
		if err != nil {
			break
		}
	}
	cmd.Wait()
	t.Fatalf("backup exited before writing its archive:\n%s", log.String())
	return nil, "", nil
}

// readingBig returns once process pid has read past the start of file big
// (its offset in /proc/PID/fdinfo). Bounded: fails after 30 s.
func readingBig(t *testing.T, pid int, big string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(fdDir)
		for _, e := range ents {
			if target, _ := os.Readlink(filepath.Join(fdDir, e.Name())); target != big {
				continue
			}
			info, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
			if pos, ok := strings.CutPrefix(strings.SplitN(string(info), "\n", 2)[0], "pos:"); ok && strings.TrimSpace(pos) != "0" {
				return
			}
		}
		runtime.Gosched()
	}
	t.Fatalf("process %d never read %s", pid, big)
}

// wait waits for the command, killing it if it runs on for a minute (a
// bound on the test, not a timing assertion).
func wait(t *testing.T, cmd *exec.Cmd) *os.ProcessState {
	t.Helper()
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	cmd.Wait()
	return cmd.ProcessState
}

// noSecretIn fails if any file under dir holds the secret in plaintext.
func noSecretIn(t *testing.T, dir, secret string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		names = append(names, path)
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds the secret in plaintext", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestBackupKilledLeavesNoPlaintext SIGKILLs a backup while it streams:
// the destination holds no plaintext, and the next run removes the partial
// archive and says so.
func TestBackupKilledLeavesNoPlaintext(t *testing.T) {
	p := newKillProfile(t)
	cmd, partial, logs := p.startBackup(t)
	if _, err := os.Stat(partial); err != nil {
		t.Fatalf("the partial archive named on stderr: %v", err)
	}
	// Kill it once it streams the big file: the token (saved before the
	// --include paths) went through the pipeline by then.
	readingBig(t, cmd.Process.Pid, p.big)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := wait(t, cmd)
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("backup was not killed mid-run: %v\n%s", st, logs())
	}
	names := noSecretIn(t, p.out, p.secret)
	t.Logf("left behind: %v", names)
	if _, err := os.Stat(partial); err != nil {
		t.Fatalf("the killed run's partial archive: %v (the test expects one to clean up)", err)
	}
	if archives, err := backup.ListArchives(p.out); err != nil || len(archives) != 0 {
		t.Errorf("a killed run left archives %v (%v)", archives, err)
	}

	// The next run (without the big file) removes it and says so.
	var stdout, stderr bytes.Buffer
	if code := run([]string{"backup", "--config", p.config, "--out", p.out, "--age-recipient", p.recipient}, &stdout, &stderr); code != 0 {
		t.Fatalf("next backup: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if want := "warning: removed " + partial + ", the unfinished output of an interrupted backup"; !strings.Contains(stderr.String(), want) {
		t.Errorf("next run's stderr lacks %q:\n%s", want, stderr.String())
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Errorf("the partial archive is still there: %v", err)
	}
	noSecretIn(t, p.out, p.secret)
}

// TestBackupSIGTERMStops sends SIGTERM (and SIGINT) to a backup while it
// streams: it exits non-zero, says so and leaves no partial archive.
func TestBackupSIGTERMStops(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := newKillProfile(t)
			cmd, partial, logs := p.startBackup(t)
			start := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			st := wait(t, cmd)
			t.Logf("stopped %s after the signal", time.Since(start).Round(time.Millisecond))
			if st.Success() || st.ExitCode() != 1 {
				t.Errorf("exit %v, want status 1", st)
			}
			if log := logs(); !strings.Contains(log, "interrupted") || !strings.Contains(log, "was removed") {
				t.Errorf("stderr does not say the run was interrupted:\n%s", log)
			}
			ents, err := os.ReadDir(p.out)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				t.Errorf("left in %s: %s", p.out, e.Name())
			}
			if _, err := os.Stat(partial); !os.IsNotExist(err) {
				t.Errorf("partial archive %s: %v", partial, err)
			}
		})
	}
}
