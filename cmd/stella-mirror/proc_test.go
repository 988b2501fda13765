package main

import (
	"crypto/x509"
	"path/filepath"
	"time"

	"bufio"
	"bytes"
	"encoding/json"
	"github.com/stella-ops/stella-mirror/internal/devcert"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// mainProc is this test binary run as stella-mirror
// (STELLA_MIRROR_TEST_RUN_MAIN=1) in a process of its own, its stderr
// read line by line as it comes: the text is kept (at most 1 MiB) and
// every JSON log record is handed to the caller.
type mainProc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{} // closed once it exited; then code is set
	code int
}

// start starts `stella-mirror args...` with env besides PATH, HOME and
// the test binary's switch. record is called, in order, for every JSON
// log record of its stderr (from one goroutine, without p.mu held); eof
// once stderr has ended, before the exit is waited for. The process is
// killed, if still running, when the test ends. p must be new.
func (p *mainProc) start(t *testing.T, args, env []string, record func(logRecord), eof func()) {
	t.Helper()
	p.done = make(chan struct{})
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append([]string{"STELLA_MIRROR_TEST_RUN_MAIN=1", "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			if p.log.Len() < 1<<20 {
				p.log.WriteString(sc.Text() + "\n")
			}
			p.mu.Unlock()
			var r logRecord
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				record(r)
			}
		}
		if eof != nil {
			eof()
		}
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill() // a no-op once it exited
		<-p.done
	})
}

// stderr is what the process wrote to stderr so far.
func (p *mainProc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// siteCert writes a certificate and key for host, issued by a new test
// CA, into a new temporary directory and returns their paths and the
// CA's pool (for the clients).
func siteCert(t *testing.T, host string) (cert, key string, roots *x509.CertPool) {
	t.Helper()
	ca, err := devcert.NewCA("cmd test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(devcert.LeafOptions{Names: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := leaf.WriteFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	return cert, key, ca.Pool()
}
