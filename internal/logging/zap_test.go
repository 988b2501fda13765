package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"go.uber.org/zap"
)

func TestZapForwardsToSlog(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	z := Zap(l.With("component", "certmagic")).Named("acme").With(zap.String("identifier", "mirror.example.org"))
	z.Debug("not shown")
	z.Error("could not get certificate from issuer", zap.Error(errors.New("boom")), zap.Int("attempt", 2))
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("want 1 line (debug filtered at info), got %d:\n%s", len(lines), buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal(lines[0], &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"level": "ERROR", "msg": "could not get certificate from issuer", "component": "certmagic",
		"logger": "acme", "identifier": "mirror.example.org", "error": "boom", "attempt": float64(2),
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v (line %s)", k, got[k], want, lines[0])
		}
	}
}
