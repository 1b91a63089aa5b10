package monitoring

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	rulesFile     = "rules/herald.rules.yml"
	rulesTestFile = "rules/herald.rules.test.yml"
)

// promtool is the promtool binary: $PROMTOOL (`make test` sets it), or the
// version tools/go.mod pins, which `go run ./deploy/local promtool` builds
// once per machine. It is never skipped for want of one: these tests are the
// only thing standing between a broken rule file and a pager that never
// rings.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	cmd := exec.CommandContext(t.Context(), "go", "run", "herald/deploy/local", "promtool")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("build promtool from tools/go.mod: %v\n%s", err, stderr)
	}
	return strings.TrimSpace(string(out))
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), promtool(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestPromtoolCheckRules(t *testing.T) {
	runPromtool(t, "check", "rules", rulesFile)
}

func TestPromtoolTestRules(t *testing.T) {
	runPromtool(t, "test", "rules", rulesTestFile)
}

// ruleFile is the Prometheus rule file format, decoded strictly so that a
// misspelt key (annotation: for annotations:) fails here.
type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []struct {
			Record      string            `json:"record,omitempty"`
			Alert       string            `json:"alert,omitempty"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

// ruleTests is the part of promtool's test file format read here.
type ruleTests struct {
	Tests []struct {
		Name          string `json:"name"`
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		t.Fatalf("decode %s: %v", rulesFile, err)
	}
	return f
}

// TestRuleConventions checks what promtool does not: every alert can be
// routed and acted on, and every expression reads only series that exist.
func TestRuleConventions(t *testing.T) {
	f := loadRules(t)
	known := Series(Herald(), PubSub())
	recordName := regexp.MustCompile(`^[a-z_]+:[a-z_]+:[a-z0-9_]+$`)
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				if !recordName.MatchString(r.Record) {
					t.Errorf("recording rule %s is not named level:metric:operations", r.Record)
				}
				known[r.Record] = nil // recorded without labels
			}
		}
	}
	runbook := regexp.MustCompile(`^docs/operations\.md#[a-z0-9-]+$`)
	alerts := 0
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			name := r.Record + r.Alert
			if err := Check(r.Expr, known); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			if r.Alert == "" {
				continue
			}
			alerts++
			if s := r.Labels["severity"]; s != "page" && s != "ticket" {
				t.Errorf("%s: severity %q, want page or ticket", name, s)
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", name, a)
				}
			}
			if u := r.Annotations["runbook_url"]; !runbook.MatchString(u) {
				t.Errorf("%s: runbook_url %q does not point at a section of docs/operations.md", name, u)
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts in the rule file")
	}
}

// TestEveryAlertIsTestedBothWays checks the promtool tests show each alert
// firing in at least one case and staying quiet in another.
func TestEveryAlertIsTestedBothWays(t *testing.T) {
	b, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var tests ruleTests
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatalf("decode %s: %v", rulesTestFile, err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	var alerts []string
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts = append(alerts, r.Alert)
			if !fires[r.Alert] {
				t.Errorf("%s: no test case where it fires", r.Alert)
			}
			if !quiet[r.Alert] {
				t.Errorf("%s: no test case where it stays quiet", r.Alert)
			}
		}
	}
	for name := range fires {
		if !slices.Contains(alerts, name) {
			t.Errorf("%s is tested but not defined", name)
		}
	}
	for name := range quiet {
		if !slices.Contains(alerts, name) {
			t.Errorf("%s is tested but not defined", name)
		}
	}
}
