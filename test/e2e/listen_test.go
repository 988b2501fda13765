package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// startListening starts cmd (a stella-mirror server subcommand logging
// JSON to stderr; its stdout is discarded) and waits until it has logged
// "listening" for each of endpoints, returning their addresses by
// endpoint name. When the test ends the process gets stop and, if it has
// not exited 30s later, SIGKILL.
func startListening(t *testing.T, cmd *exec.Cmd, stop os.Signal, endpoints ...string) map[string]string {
	t.Helper()
	name := strings.Join(cmd.Args[1:2], "")
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(stop)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addrs := make(chan map[string]string, 1)
	var log strings.Builder
	go func() {
		defer close(done)
		found := map[string]string{}
		sent := false
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			var rec struct{ Msg, Endpoint, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" {
				found[rec.Endpoint] = rec.Addr
			}
			if !sent && hasAll(found, endpoints) {
				addrs <- maps.Clone(found) // found keeps changing with later lines
				sent = true
			}
		}
		if !sent {
			addrs <- nil
		}
		cmd.Wait()
	}()
	select {
	case a := <-addrs:
		if a == nil {
			t.Fatalf("%s exited before listening; stderr:\n%s", name, log.String()) // written before nil was sent
		}
		return a
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not listening after 60s", name)
	}
	return nil
}

// hasAll reports whether found has a non-empty address for every endpoint.
func hasAll(found map[string]string, endpoints []string) bool {
	for _, e := range endpoints {
		if found[e] == "" {
			return false
		}
	}
	return true
}
