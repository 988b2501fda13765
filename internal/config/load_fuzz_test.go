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

// TestYAMLCycles: documents whose merge keys refer to a mapping that
// contains them. FuzzLoad found it: a self-merge overflowed the stack (the
// process died).
func TestYAMLCycles(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"merge of itself", "leaves: &a\n  s: x\n  <<: *a\n", "LEAVES: merge key (<<) merges the mapping it is in (PATH:3)"},
		{"merge of itself in a list", "leaves: &a\n  s: x\n  <<: [*a]\n", "LEAVES: merge key (<<) merges the mapping it is in (PATH:3)"},
		{"merge cycle of two", "a: &a\n  b: &b\n    <<: *a\n  <<: *b\n", "merge key (<<) merges the mapping it is in"},
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
