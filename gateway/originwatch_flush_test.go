package gateway

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// lastOf returns the msg of the last JSON line in s whose msg is one of
// msgs, and that line.
func lastOf(t *testing.T, s *syncBuffer, msgs ...string) (string, map[string]any) {
	t.Helper()
	var msg string
	var line map[string]any
	for _, l := range strings.Split(s.String(), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		for _, w := range msgs {
			if m["msg"] == w {
				msg, line = w, m
			}
		}
	}
	return msg, line
}

// TestOriginWatchLogEndsWithTheTrueState: when the limiter suppresses the
// line of the last change (the origin came back, stale serving ended),
// the log must not end on the previous state: once the limiter allows it,
// the current state is written with the count of suppressed lines. Before,
// a flapping origin that came back during suppression left "origin
// unreachable" as the log's last word for as long as it stayed up.
func TestOriginWatchLogEndsWithTheTrueState(t *testing.T) {
	logs := &syncBuffer{}
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func() { mu.Lock(); now = now.Add(authLogEvery); mu.Unlock() }
	w, err := newOriginWatch(http.DefaultTransport, slog.New(slog.NewJSONHandler(logs, nil)), prometheus.NewRegistry(), clock)
	if err != nil {
		t.Fatal(err)
	}
	var timers []func()
	w.after = func(_ time.Duration, f func()) { timers = append(timers, f) }
	fire := func() {
		fs := timers
		timers = nil
		for _, f := range fs {
			f()
		}
	}

	for i := 0; i < authLogBurst; i++ { // use up the burst
		w.failedReason("connect", "refused")
		w.reachable()
	}
	advance()
	w.failedReason("connect", "refused") // written: the one token
	w.reachable()                        // suppressed
	if msg, _ := lastOf(t, logs, "origin unreachable", "origin reachable again"); msg != "origin unreachable" {
		t.Fatalf("set-up: last origin line %q, want the suppression to have hidden the recovery", msg)
	}
	if len(timers) == 0 {
		t.Fatal("no flush scheduled for the suppressed line")
	}
	advance()
	fire()
	msg, line := lastOf(t, logs, "origin unreachable", "origin reachable again")
	if msg != "origin reachable again" || line["suppressed"] != float64(1) {
		t.Fatalf("last origin line %q %v, want origin reachable again with suppressed 1", msg, line)
	}

	// The state the log already states needs no extra line.
	before := logs.String()
	advance()
	w.failedReason("timeout", "deadline") // written
	w.reachable()                         // suppressed? no: tokens refilled one per advance
	w.failedReason("connect", "refused")  // suppressed: down again, as last written
	advance()
	advance()
	fire()
	if got := strings.Count(logs.String()[len(before):], "\n"); got > 3 {
		t.Errorf("%d lines after the second round, want at most 3:\n%s", got, logs.String()[len(before):])
	}
	if msg, _ := lastOf(t, logs, "origin unreachable", "origin reachable again"); msg != "origin unreachable" {
		t.Errorf("last origin line %q, want origin unreachable (the origin is down)", msg)
	}
}

// TestOriginWatchLateStaleAnswerAfterRecovery: a STALE answer that was
// served while the origin was down but is accounted (served runs after the
// response is written) only after the origin came back belongs to the
// period that ended: it must not start a new stale-serving period with its
// own "serving stale" and "stale serving ended" lines. Before, it did
// (seen as a flaky TestOriginOutageLogsAndMetrics: two "stale serving
// ended" lines, the second with duration 0 and cause "origin answered a
// fill").
func TestOriginWatchLateStaleAnswerAfterRecovery(t *testing.T) {
	logs := &syncBuffer{}
	now := time.Unix(1_700_000_000, 0)
	w, err := newOriginWatch(http.DefaultTransport, slog.New(slog.NewJSONHandler(logs, nil)), prometheus.NewRegistry(),
		func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	st := &site{name: "mirror-primary.example"}
	w.failedReason("connect", "refused")
	before := time.Now() // the late answer's request started while the origin was down
	w.served(outcome{st: st, path: "/a", status: http.StatusOK, cache: "STALE", start: before})
	w.reachable() // ends the period
	w.served(outcome{st: st, path: "/a", status: http.StatusOK, cache: "STALE", start: before})
	w.served(outcome{st: st, path: "/a", status: http.StatusOK, cache: "MISS", start: time.Now()})

	if n := len(logLines(t, logs, "serving stale")); n != 1 {
		t.Errorf("%d serving stale lines, want 1:\n%s", n, logs.String())
	}
	if n := len(logLines(t, logs, "stale serving ended")); n != 1 {
		t.Errorf("%d stale serving ended lines, want 1:\n%s", n, logs.String())
	}
	// A STALE answer to a request that started after the recovery is a new
	// period (the origin failed again without a failed exchange seen yet).
	w.served(outcome{st: st, path: "/b", status: http.StatusOK, cache: "STALE", start: time.Now()})
	if n := len(logLines(t, logs, "serving stale")); n != 2 {
		t.Errorf("%d serving stale lines after a new STALE answer, want 2:\n%s", n, logs.String())
	}
}
