package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/origin/origintest"
)

// TestSyncLogsJSONByDefault: sync's log is JSON lines with the fields
// origin and gateway use (time, level, msg, component, export_id) unless
// --log-format text is given, which still works.
func TestSyncLogsJSONByDefault(t *testing.T) {
	root, id, pub := syncFixture(t)
	o := origintest.New(t, root)
	srv := httptest.NewServer(o.Handler())
	defer srv.Close()

	var out, errb bytes.Buffer
	dst := t.TempDir()
	if code := run([]string{"sync", "--source", srv.URL, "--dest", dst, "--public-key", pub}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	published := false
	for _, l := range strings.Split(strings.TrimSpace(errb.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if m["component"] != "sync" || m["time"] == nil || m["level"] == nil || m["msg"] == nil {
			t.Errorf("common fields missing: %s", l)
		}
		if m["msg"] == "published" && m["export_id"] == id {
			published = true
		}
	}
	if !published {
		t.Errorf("no published line with export_id %s:\n%s", id, errb.String())
	}

	errb.Reset()
	dst2 := filepath.Join(t.TempDir(), "exports")
	if code := run([]string{"sync", "--source", srv.URL, "--dest", dst2, "--public-key", pub, "--log-format", "text"}, &out, &errb); code != 0 {
		t.Fatalf("text: exit %d: %s", code, errb.String())
	}
	if s := errb.String(); !strings.Contains(s, "level=INFO") || !strings.Contains(s, "component=sync") || strings.Contains(s, `{"time"`) {
		t.Errorf("--log-format text: %s", s)
	}
}

// TestSyncLogSchema: sync's result lines use the schema origin and gateway
// use (docs/operations.md "Log format"): a duration is duration_s, a
// number of seconds, and an error is "error", as in the gateway's and
// origin's lines. Before, "sync done" carried "duration":"168ms" and
// "sync failed" "err".
func TestSyncLogSchema(t *testing.T) {
	root, _, pub := syncFixture(t)
	o := origintest.New(t, root)
	srv := httptest.NewServer(o.Handler())
	defer srv.Close()

	lines := func(s string) []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("not a JSON line: %q", l)
			}
			out = append(out, m)
		}
		return out
	}
	var out, errb bytes.Buffer
	if code := run([]string{"sync", "--source", srv.URL, "--dest", t.TempDir(), "--public-key", pub}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	done := false
	for _, m := range lines(errb.String()) {
		if m["msg"] != "sync done" {
			continue
		}
		done = true
		if d, ok := m["duration_s"].(float64); !ok || d < 0 {
			t.Errorf("sync done: duration_s %v (%T), want a number of seconds: %v", m["duration_s"], m["duration_s"], m)
		}
		if _, ok := m["duration"]; ok {
			t.Errorf("sync done still has duration: %v", m)
		}
	}
	if !done {
		t.Fatalf("no sync done line:\n%s", errb.String())
	}

	// A source that answers 404 to everything: one "sync failed" line
	// with "error".
	gone := httptest.NewServer(http.NotFoundHandler())
	defer gone.Close()
	errb.Reset()
	if code := run([]string{"sync", "--source", gone.URL, "--dest", t.TempDir(), "--public-key", pub}, &out, &errb); code == 0 {
		t.Fatal("sync of a missing source succeeded")
	}
	failed := false
	for _, m := range lines(errb.String()) {
		if m["msg"] != "sync failed" {
			continue
		}
		failed = true
		if s, ok := m["error"].(string); !ok || s == "" {
			t.Errorf("sync failed: no error field: %v", m)
		}
		if _, ok := m["err"]; ok {
			t.Errorf("sync failed: err instead of error: %v", m)
		}
		if _, ok := m["duration_s"].(float64); !ok {
			t.Errorf("sync failed: duration_s missing: %v", m)
		}
	}
	if !failed {
		t.Fatalf("no sync failed line:\n%s", errb.String())
	}
}
