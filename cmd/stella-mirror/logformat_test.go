package main

import (
	"bytes"
	"encoding/json"
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
