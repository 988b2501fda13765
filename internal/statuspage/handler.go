package statuspage

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"time"
)

//go:embed status.html
var pageHTML string

var page = template.Must(template.New("status").Funcs(template.FuncMap{
	"age":   humanDuration,
	"bytes": humanBytes,
	"pct":   func(f float64) string { return fmt.Sprintf("%.1f %%", f*100) },
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"since": func(now, t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return humanDuration(now.Sub(t).Seconds()) + " ago"
	},
	"resultClass": func(r string) string {
		switch r {
		case "published", "unchanged":
			return "ok"
		case "":
			return "warn"
		}
		return "bad"
	},
	"ageClass": func(sec float64) string {
		switch {
		case sec > 24*3600:
			return "bad"
		case sec > 15*60:
			return "warn"
		}
		return "ok"
	},
	"daysClass": func(d int) string {
		switch {
		case d < 7:
			return "bad"
		case d < 14:
			return "warn"
		}
		return "ok"
	},
}).Parse(pageHTML))

// Handler serves the status page: GET /status (HTML) and GET
// /status.json (the same Status as JSON). get builds the Status per
// request; it must be safe for concurrent use and honour ctx. Mount it for
// both paths; any other path is 404.
func Handler(get func(ctx context.Context) Status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		st := get(r.Context())
		st.Fill()
		var buf bytes.Buffer
		switch r.URL.Path {
		case "/status.json":
			enc := json.NewEncoder(&buf)
			enc.SetIndent("", "  ")
			if err := enc.Encode(st); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
		case "/status":
			if err := page.Execute(&buf, st); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			// Nothing outside the page itself is loaded or run.
			w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Write(buf.Bytes())
	})
}

// humanDuration writes seconds as "3d 4h", "2h 5m", "4m 10s" or "12s".
func humanDuration(sec float64) string {
	if sec < 0 {
		return "in " + humanDuration(-sec)
	}
	s := int64(math.Round(sec))
	d, h, m := s/86400, s%86400/3600, s%3600/60
	switch {
	case d > 0:
		return fmt.Sprintf("%dd %dh", d, h)
	case h > 0:
		return fmt.Sprintf("%dh %dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm %ds", m, s%60)
	}
	return fmt.Sprintf("%ds", s)
}

// humanBytes writes n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
