package monitoring

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

const (
	alertsFile     = "prometheus/alerts.yml"
	alertsTestFile = "prometheus/alerts_test.yml"
	operationsDoc  = "../docs/operations.md"
	runbookBase    = "https://github.com/stella-ops/stella-mirror/blob/main/docs/operations.md#"
)

// needTool returns the path of a tool, skipping the test when it is
// missing (failing when CI is set: .ci/run installs it).
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	return testenv.Tool(t, name, pkg)
}

// TestPromtool runs `promtool check rules` and `promtool test rules` on
// the shipped rules and their unit tests.
func TestPromtool(t *testing.T) {
	promtool := needTool(t, "promtool", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", alertsFile},
		{"test", "rules", alertsTestFile},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			out, err := exec.Command(promtool, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			if !strings.Contains(string(out), "SUCCESS") {
				t.Fatalf("promtool %s did not report SUCCESS:\n%s", strings.Join(args, " "), out)
			}
		})
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var rules []rule
	for _, g := range rf.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s holds no rules", alertsFile)
	}
	return rules
}

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	s := strings.ToLower(strings.TrimSpace(heading))
	s = regexp.MustCompile(`[^\p{L}\p{N} _-]`).ReplaceAllString(s, "")
	return strings.ReplaceAll(s, " ", "-")
}

func docAnchors(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			anchors[githubAnchor(strings.TrimLeft(h, "#"))] = true
		}
	}
	return anchors
}

// TestAlertRulesComplete: every alert parses, has a severity, a summary, a
// description and a runbook_url that is a heading of docs/operations.md,
// and unit tests that see it fire and not fire.
func TestAlertRulesComplete(t *testing.T) {
	rules := loadRules(t)
	anchors := docAnchors(t)
	tested := alertTests(t)
	var names []string
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		t.Run(r.Alert, func(t *testing.T) {
			if slices.Contains(names, r.Alert) {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			names = append(names, r.Alert)
			if _, err := metricNames(r.Expr); err != nil {
				t.Errorf("expr does not parse: %v\n%s", err, r.Expr)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("severity %q, want critical, warning or info", s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("no %s annotation", a)
				}
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookBase)
			if !ok || !anchors[anchor] {
				t.Errorf("runbook_url %q is not %s<a heading of docs/operations.md>", r.Annotations["runbook_url"], runbookBase)
			}
			if tc := tested[r.Alert]; !tc.firing || !tc.silent {
				t.Errorf("%s: want promtool tests where it fires and where it does not (firing %v, not firing %v)", alertsTestFile, tc.firing, tc.silent)
			}
		})
	}
	if len(names) < 15 {
		t.Errorf("%d alerts, want the 15 of issue 18 at least", len(names))
	}
}

type coverage struct{ firing, silent bool }

// alertTests reads alerts_test.yml: for each alert, whether some
// evaluation expects it to fire and some expects it not to.
func alertTests(t *testing.T) map[string]coverage {
	t.Helper()
	data, err := os.ReadFile(alertsTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(data, &tf); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tf.RuleFiles, filepath.Base(alertsFile)) {
		t.Fatalf("%s does not load %s", alertsTestFile, alertsFile)
	}
	out := map[string]coverage{}
	for _, tc := range tf.Tests {
		for _, a := range tc.AlertRuleTest {
			c := out[a.Alertname]
			if len(a.ExpAlerts) > 0 {
				c.firing = true
			} else {
				c.silent = true
			}
			out[a.Alertname] = c
		}
	}
	return out
}
