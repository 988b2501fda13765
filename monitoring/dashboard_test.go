package monitoring

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

const dashboardFile = "grafana/stella-mirror.json"

// dashboardRows are the rows the dashboard must have, in order.
var dashboardRows = []string{"Sync", "Origin", "Gateway", "Cache", "TLS"}

type dashPanel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *dsRef      `json:"datasource"`
	Targets    []dsTarget  `json:"targets"`
	Panels     []dashPanel `json:"panels"` // a collapsed row's
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dsTarget struct {
	Datasource *dsRef `json:"datasource"`
	Expr       string `json:"expr"`
	RefID      string `json:"refId"`
}

type dashboard struct {
	Title         string      `json:"title"`
	UID           string      `json:"uid"`
	SchemaVersion int         `json:"schemaVersion"`
	Panels        []dashPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// grafanaVars are Grafana's interval variables, replaced by a duration
// before parsing (they stand where PromQL wants one).
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

func loadDashboard(t *testing.T) (*dashboard, []dashPanel) {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(data) {
		t.Fatalf("%s is not valid JSON", dashboardFile)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var all []dashPanel
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return &d, all
}

// dashboardExprs returns every target expression with Grafana's interval
// variables replaced.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	_, panels := loadDashboard(t)
	var out []string
	for _, p := range panels {
		for _, tg := range p.Targets {
			out = append(out, grafanaVars.Replace(tg.Expr))
		}
	}
	return out
}

// TestDashboard: valid JSON of the Grafana 10+ schema, the data source a
// variable every panel and target uses, one row per component, unique
// panel ids, and every expression parses.
func TestDashboard(t *testing.T) {
	d, panels := loadDashboard(t)
	if d.SchemaVersion < 38 { // Grafana 10.0 writes 38
		t.Errorf("schemaVersion %d, want Grafana 10+ (>= 38)", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: want both", d.UID, d.Title)
	}
	hasDS := slices.ContainsFunc(d.Templating.List, func(v struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		Query any    `json:"query"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	})
	if !hasDS {
		t.Error("no templating variable datasource of type datasource (query prometheus)")
	}
	ids := map[int]string{}
	var rows []string
	exprs := 0
	for _, p := range panels {
		if p.ID <= 0 {
			t.Errorf("panel %q has id %d", p.Title, p.ID)
		}
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			rows = append(rows, p.Title)
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want uid ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q target %s: datasource %+v, want uid ${datasource}", p.Title, tg.RefID, tg.Datasource)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			exprs++
			if _, err := metricNames(grafanaVars.Replace(tg.Expr)); err != nil {
				t.Errorf("panel %q target %s does not parse: %v\n%s", p.Title, tg.RefID, err, tg.Expr)
			}
		}
	}
	if !slices.Equal(rows, dashboardRows) {
		t.Errorf("rows %q, want %q", rows, dashboardRows)
	}
	if exprs < 20 {
		t.Errorf("%d expressions; the dashboard looks truncated", exprs)
	}
}
