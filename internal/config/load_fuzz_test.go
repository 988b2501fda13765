package config

import (
	"strings"
	"testing"
)

// fuzzCfg has the shape of a real configuration (Cfg) and one field of
// every leaf kind (Leaves).
type fuzzCfg struct {
	Cfg
	Leaves Leaves
}

// TestYAMLCycles: documents whose aliases or merge keys refer to a node
// that contains them. FuzzLoad found both: a self-merge overflowed the
// stack (the process died), and "a: &a [*a]" ran for minutes building
// ever longer keys until the node budget ran out.
func TestYAMLCycles(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"merge of itself", "leaves: &a\n  s: x\n  <<: *a\n", "LEAVES: merge key (<<) merges the mapping it is in (PATH:3)"},
		{"merge of itself in a list", "leaves: &a\n  s: x\n  <<: [*a]\n", "LEAVES: merge key (<<) merges the mapping it is in (PATH:3)"},
		{"merge cycle of two", "a: &a\n  b: &b\n    <<: *a\n  <<: *b\n", "merge key (<<) merges the mapping it is in"},
		{"alias in its own list", "leaves:\n  refreshToken: &a [1, *a]\n", "LEAVES__REFRESHTOKEN__1: alias refers to a node that contains it (PATH:2)"},
		{"alias in its own mapping", "leaves: &a\n  nested: *a\n", "LEAVES__NESTED: alias refers to a node that contains it (PATH:2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.yaml)
			var c fuzzCfg
			err := Load(&c, path, nil)
			if want := strings.ReplaceAll(tt.want, "PATH", path); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Load: %v; want an error containing %q", err, want)
			}
		})
	}
}
