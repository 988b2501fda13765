package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestNewComponent: JSON by default, with the common fields; the
// component is added once, and a logger that names its own component
// keeps it (no duplicate key); text still works.
func TestNewComponent(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewComponent(&buf, "", "info", "sync")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("published", KeyExportID, "20261207T120000Z", KeyDuration, 1.5)
	l.With(KeyComponent, "cache").Warn("own component")
	l.WithGroup("g").Info("grouped", "k", "v")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	want := []string{"sync", "cache", "sync"}
	for i, line := range lines {
		if n := strings.Count(line, `"component"`); n != 1 {
			t.Errorf("line %d has component %d times: %s", i, n, line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d is not JSON: %s", i, line)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d lacks %s: %s", i, k, line)
			}
		}
		if m[KeyComponent] != want[i] {
			t.Errorf("line %d component %v, want %s", i, m[KeyComponent], want[i])
		}
	}
	if !strings.Contains(lines[0], `"export_id":"20261207T120000Z"`) || !strings.Contains(lines[0], `"duration_s":1.5`) {
		t.Errorf("common fields: %s", lines[0])
	}

	buf.Reset()
	l, err = NewComponent(&buf, "text", "info", "sync")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("nothing new")
	if got := buf.String(); !strings.Contains(got, "level=INFO") || !strings.Contains(got, "component=sync") {
		t.Errorf("text line: %q", got)
	}
	if _, err := NewComponent(&buf, "xml", "info", "sync"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("bad format: %v", err)
	}
}
