package cache

import (
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// TestCurl: a real client (curl) sees a failed fill as a failed transfer,
// not a complete 200, and sees MISS then HIT on a good object.
func TestCurl(t *testing.T) {
	curl := testenv.Tool(t, "curl", "curl")
	clk := newClock()
	o := newOrigin(t, clk)
	body := pattern(256<<10, 12)
	o.set("/good", object{body: body, cacheControl: immutableCC})
	o.set("/broken", object{body: body, cacheControl: immutableCC})
	o.hook = func(w http.ResponseWriter, r *http.Request, obj object) {
		w.WriteHeader(http.StatusOK)
		if r.URL.Path == "/broken" {
			w.Write(obj.body[:len(obj.body)/2])
			w.(http.Flusher).Flush()
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close() // the origin dies mid-body
			}
			return
		}
		w.Write(obj.body)
	}
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)

	run := func(path string) (string, error) {
		out, err := exec.Command(curl, "-sS", "--max-time", "30", "-o", "/dev/null", "-D", "-", p.URL+path).CombinedOutput()
		return string(out), err
	}
	out, err := run("/broken")
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("curl of a broken fill succeeded (err %v):\n%s", err, out)
	}
	t.Logf("curl of a broken fill: exit status %d (%s)", ee.ExitCode(), strings.TrimSpace(out))
	for i, want := range []string{"MISS", "HIT"} {
		out, err := run("/good")
		if err != nil {
			t.Fatalf("curl %d: %v\n%s", i, err, out)
		}
		if !strings.Contains(out, "X-Cache-Status: "+want) || !strings.Contains(out, "200") {
			t.Errorf("curl %d: want X-Cache-Status %s in\n%s", i, want, out)
		}
		c.bg.Wait()
	}
}
